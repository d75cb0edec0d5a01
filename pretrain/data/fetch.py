"""Making the presets' datasets available (``python -m pretrain.fetch_data`` is its command line): Fashion-MNIST
from Debian's ``dataset-fashion-mnist`` or torchvision's download (:func:`fashion_mnist`), and the ImageNet-100
subset (CMC's 100 classes, ``imagenet100.txt``) of an ImageNet folder as symlinks (:func:`imagenet100`)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import torchvision.datasets as tvd
from torchvision.datasets.folder import IMG_EXTENSIONS

from pretrain.base.errors import UserError
from pretrain.data.datasets import FASHION_MNIST_DIRS, REPO, find_fashion_mnist, load_fashion_mnist

IMAGENET100_LIST = Path(__file__).resolve().parent / "imagenet100.txt"
WNID = re.compile(r"n\d{8}")
SPLITS = ("train", "val")


def fashion_mnist() -> int:
    try:
        d = find_fashion_mnist("")
    except UserError:
        print("Fashion-MNIST: not installed by apt; downloading with torchvision into data/ ...")
        try:
            tvd.FashionMNIST(str(REPO / "data"), train=True, download=True)
            tvd.FashionMNIST(str(REPO / "data"), train=False, download=True)
        except Exception as e:  # noqa: BLE001 - network problems of any kind
            raise UserError(f"Fashion-MNIST download failed ({e}); install Debian's dataset-fashion-mnist "
                            f"or put the idx files in one of: {', '.join(FASHION_MNIST_DIRS)}") from None
        d = find_fashion_mnist("")
    n_train = len(load_fashion_mnist(str(d), True))
    n_test = len(load_fashion_mnist(str(d), False))
    print(f"Fashion-MNIST: {n_train} train + {n_test} test images in {d}")
    return 0


# -- ImageNet-100 -------------------------------------------------------------------------------------------

def imagenet100_classes(path: Path = IMAGENET100_LIST) -> list[str]:
    """The 100 WordNet ids of ImageNet-100 (CMC's list), in the file's order."""
    wnids = [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    bad = [w for w in wnids if not WNID.fullmatch(w)]
    if bad or len(wnids) != 100 or len(set(wnids)) != 100:
        raise UserError(f"{path}: expected 100 distinct WordNet ids, got {len(set(wnids))} "
                        f"({len(bad)} malformed)")
    return wnids


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def _count_images(d: Path) -> int:
    with os.scandir(d) as it:
        return sum(1 for e in it if e.name.lower().endswith(IMG_EXTENSIONS) and e.is_file())


def _check_source(src: Path, wnids: list[str]) -> None:
    if not src.is_dir():
        raise UserError(f"imagenet100: --from {src} is not a directory")
    for split in SPLITS:
        d = src / split
        if not d.is_dir():
            raise UserError(f"imagenet100: expected {d}/<wnid>/<image> (ImageNet in ImageFolder layout)")
        with os.scandir(d) as it:
            entries = list(it)
        class_dirs = {e.name for e in entries if e.is_dir()}
        if split == "val" and not class_dirs & set(wnids) and any(e.is_file() for e in entries):
            raise UserError(f"imagenet100: {d} holds images, not class folders: sort the validation images into "
                            f"{d}/<wnid>/ first (ImageFolder layout, as train/)")
        missing = [w for w in wnids if w not in class_dirs]
        if missing:
            raise UserError(f"imagenet100: {len(missing)} of the 100 classes are missing in {d}: {_few(missing)}")


def _check_target(dst: Path, src: Path, wnids: set[str]) -> None:
    """``dst`` may not exist, be empty, or hold (part of) this very link tree; anything else is an error."""
    if not dst.exists() and not dst.is_symlink():
        return
    if not dst.is_dir():
        raise UserError(f"imagenet100: --to {dst} exists and is not a directory")
    other = [e.name for e in dst.iterdir() if e.name not in SPLITS or e.is_symlink() or not e.is_dir()]
    for split in SPLITS:
        d = dst / split
        if not d.is_dir() or d.is_symlink():
            continue
        for e in d.iterdir():
            if not (e.name in wnids and e.is_symlink()
                    and Path(os.readlink(e)) == src / split / e.name):
                other.append(f"{split}/{e.name}")
    if other:
        raise UserError(f"imagenet100: --to {dst} exists with other contents ({_few(sorted(other), 3)}); "
                        f"pass an empty or new directory")


def imagenet100(src_arg: str | None, dst_arg: str | None) -> int:
    if not src_arg:
        raise UserError("imagenet100: pass the ImageNet folder with --from DIR (train/ and val/ with one "
                        "folder per class)")
    if not dst_arg:
        raise UserError("imagenet100: pass the output folder with --to DIR")
    wnids = imagenet100_classes()
    src = Path(src_arg).expanduser().resolve()
    dst = Path(dst_arg).expanduser().absolute()
    _check_source(src, wnids)
    _check_target(dst, src, set(wnids))
    counts, made = {}, 0
    for split in SPLITS:
        (dst / split).mkdir(parents=True, exist_ok=True)
        n = 0
        for w in wnids:
            target, link = src / split / w, dst / split / w
            images = _count_images(target)
            if images == 0:
                raise UserError(f"imagenet100: {target} holds no images")
            n += images
            if not link.is_symlink():
                os.symlink(target, link, target_is_directory=True)
                made += 1
        counts[split] = n
    state = f"{made} links made" if made else "already complete, nothing changed"
    print(f"ImageNet-100: {len(wnids)} classes, {counts['train']} train + {counts['val']} val images in {dst} "
          f"(symlinks to {src}; {state})")
    return 0

"""Datasets: ImageFolder (ImageNet layout), CIFAR-10/100, STL-10, Fashion-MNIST, and a synthetic set for unit
tests. Every pretraining sample comes with its dataset index (the memory bank needs it).

Fixed-size datasets are held as one uint8 tensor (N, C, H, W), so the batched augmentation can run on the
training device; ImageFolder images are decoded per image in the workers.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pretrain.base.errors import UserError
from pretrain.base.provenance import REPO

# Debian's dataset-fashion-mnist, then torchvision's download (make data) under the repository's data/
FASHION_MNIST_DIRS = ["/usr/share/datasets/fashion-mnist", str(REPO / "data" / "FashionMNIST" / "raw")]

IMAGENET_STATS = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
STATS = {
    "imagefolder": IMAGENET_STATS,
    "stl10": IMAGENET_STATS,
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]),    # official MoCo CIFAR demo
    "cifar100": ([0.5071, 0.4865, 0.4409], [0.2673, 0.2564, 0.2762]),
    "fashion_mnist": ([0.2860], [0.3530]),
    "synthetic": ([0.5, 0.5, 0.5], [0.25, 0.25, 0.25]),
}


@dataclass
class Split:
    """A fixed-size split: uint8 images (N, C, H, W) and integer labels (N,)."""
    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self):
        return len(self.labels)


class TensorImages(torch.utils.data.Dataset):
    """(image, index) or (transform(image), index) from a :class:`Split`."""

    def __init__(self, split: Split, transform=None, with_labels: bool = False):
        self.split, self.transform, self.with_labels = split, transform, with_labels

    def __len__(self):
        return len(self.split)

    def __getitem__(self, i):
        x = self.split.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return (x, int(self.split.labels[i])) if self.with_labels else (x, i)


# -- Fashion-MNIST (idx files, as the Debian package dataset-fashion-mnist installs them) -------------------

def _read_idx(path: Path, ndim_expected: int) -> np.ndarray:
    """An idx file (LeCun's MNIST format: magic 0 0 <type> <ndim>, the dims, the values) of unsigned bytes with
    ``ndim_expected`` dimensions (3 for images N x H x W, 1 for labels); anything else is one UserError."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise UserError(f"{path}: not an idx file")
    if data[2] != 0x08:
        raise UserError(f"{path}: idx values of type 0x{data[2]:02x}, expected unsigned bytes (0x08)")
    ndim = data[3]
    if ndim != ndim_expected:
        raise UserError(f"{path}: an idx file of {ndim} dimension(s), expected {ndim_expected} "
                        f"({'images N x H x W' if ndim_expected == 3 else 'labels N'})")
    if len(data) < 4 + 4 * ndim:
        raise UserError(f"{path}: truncated idx header")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise UserError(f"{path}: truncated idx file ({arr.size} of {int(np.prod(dims))} values)")
    return arr.reshape(dims)


def find_fashion_mnist(root: str) -> Path:
    candidates = [root] if root else FASHION_MNIST_DIRS
    for c in candidates:
        p = Path(c)
        for q in (p, p / "FashionMNIST" / "raw"):
            if (q / "train-images-idx3-ubyte.gz").exists() or (q / "train-images-idx3-ubyte").exists():
                return q
    where = root or " or ".join(FASHION_MNIST_DIRS)
    raise UserError(f"Fashion-MNIST not found in {where} (install Debian's dataset-fashion-mnist or run "
                    f"'make data', or pass --data DIR)")


def load_fashion_mnist(root: str, train: bool) -> Split:
    d = find_fashion_mnist(root)
    pre = "train" if train else "t10k"

    def pick(name):
        p = d / f"{pre}-{name}-ubyte.gz"
        return p if p.exists() else d / f"{pre}-{name}-ubyte"

    x = _read_idx(pick("images-idx3"), 3)
    y = _read_idx(pick("labels-idx1"), 1)
    if len(x) != len(y):
        raise UserError(f"{d}: {len(x)} images but {len(y)} labels")
    return Split(torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))


# -- torchvision datasets (for users who have them; nothing is downloaded here) ---------------------------

def _need_dir(root: str, name: str) -> Path:
    if not root:
        raise UserError(f"{name}: pass the dataset root with --data DIR")
    p = Path(root)
    if not p.is_dir():
        raise UserError(f"{name}: data path does not exist: {p}")
    return p


def load_cifar(root: str, train: bool, hundred: bool) -> Split:
    import torchvision.datasets as tvd
    name = "cifar100" if hundred else "cifar10"
    p = _need_dir(root, name)
    try:
        ds = (tvd.CIFAR100 if hundred else tvd.CIFAR10)(str(p), train=train, download=False)
    except RuntimeError as e:
        raise UserError(f"{name}: {e} (expected torchvision's layout under {p})") from None
    x = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return Split(x, torch.tensor(ds.targets, dtype=torch.long))


def load_stl10(root: str, split: str) -> Split:
    import torchvision.datasets as tvd
    p = _need_dir(root, "stl10")
    try:
        ds = tvd.STL10(str(p), split=split, download=False)
    except RuntimeError as e:
        raise UserError(f"stl10: {e} (expected torchvision's layout under {p})") from None
    return Split(torch.from_numpy(ds.data), torch.from_numpy(ds.labels.astype(np.int64)))


# -- synthetic (unit tests only) ----------------------------------------------------------------------------

def make_synthetic(n: int, train: bool, size: int = 32, channels: int = 3, classes: int = 10) -> Split:
    """Class prototypes (smooth random patterns) plus per-image noise and shifts: learnable, deterministic."""
    g = torch.Generator().manual_seed(1234)
    protos = torch.nn.functional.interpolate(torch.rand(classes, channels, 4, 4, generator=g), size=(size, size),
                                             mode="bilinear", align_corners=False)
    g.manual_seed(1 if train else 2)
    y = torch.arange(n) % classes
    shift = torch.randint(-3, 4, (n, 2), generator=g)
    x = protos[y] + 0.15 * torch.randn(n, channels, size, size, generator=g)
    x = torch.stack([torch.roll(xi, (int(s[0]), int(s[1])), (1, 2)) for xi, s in zip(x, shift)])
    return Split((x.clamp(0, 1) * 255).to(torch.uint8), y)


# -- ImageFolder ------------------------------------------------------------------------------------------

def pil_loader(path: str) -> Image.Image:
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            return img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        # DecompressionBombError: more than twice PIL's MAX_IMAGE_PIXELS (a bomb, or a huge scan)
        raise UserError(f"cannot read image {path}: {' '.join(str(e).split())}") from None


class IndexedImageFolder(torch.utils.data.Dataset):
    def __init__(self, root: Path, transform, with_labels: bool = False):
        import torchvision.datasets as tvd
        try:
            self.ds = tvd.ImageFolder(str(root), loader=pil_loader)
        except (FileNotFoundError, RuntimeError) as e:
            raise UserError(f"imagefolder {root}: {' '.join(str(e).split())}") from None
        self.transform, self.with_labels = transform, with_labels

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        path, y = self.ds.samples[i]
        x = self.transform(pil_loader(path))
        return (x, y) if self.with_labels else (x, i)


def imagefolder_dirs(root: str) -> tuple[Path, Path]:
    p = _need_dir(root, "imagefolder")
    train, val = p / "train", p / "val"
    if not train.is_dir():
        raise UserError(f"imagefolder: expected {train}/<class>/<image> (ImageNet layout)")
    return train, val


# -- entry points -----------------------------------------------------------------------------------------

#: images of the validation split (``eval_split: val``): the LAST VAL_IMAGES of the fixed random order of the
#: training set, so they are disjoint from every ``subset`` (its first images) that leaves room for them
VAL_IMAGES = 10000


def _fixed_order(n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))


def subset_indices(n: int, subset: int) -> torch.Tensor:
    """The first ``subset`` images of a fixed random order (the same for every run and seed)."""
    if not subset or subset >= n:
        return torch.arange(n)
    return _fixed_order(n)[:subset].sort().values


def val_indices(n: int, subset: int) -> torch.Tensor:
    """The validation images of a training set of ``n``: the last :data:`VAL_IMAGES` of the fixed random order,
    never among the first ``subset`` (the pretraining images) and never in the test set."""
    if not subset or subset + VAL_IMAGES > n:
        raise UserError(f"eval_split val: the {VAL_IMAGES} validation images must come from training images outside "
                        f"the pretraining subset, but subset {subset or n} + {VAL_IMAGES} > the {n} training images; "
                        f"set a smaller subset")
    return _fixed_order(n)[n - VAL_IMAGES:].sort().values


def load_split(cfg, train: bool) -> Split:
    """A fixed-size dataset split (not imagefolder)."""
    d = cfg.dataset
    if d == "fashion_mnist":
        s = load_fashion_mnist(cfg.data, train)
    elif d in ("cifar10", "cifar100"):
        s = load_cifar(cfg.data, train, d == "cifar100")
    elif d == "stl10":
        s = load_stl10(cfg.data, "train" if train else "test")
    elif d == "synthetic":
        s = make_synthetic(max(cfg.subset, 64) if train else 200, bool(train), size=32, channels=cfg.in_chans)
    else:
        raise UserError(f"load_split: {d} is not a fixed-size dataset")
    if len(s) == 0:
        raise UserError(f"{d}: the dataset is empty")
    return s


def stats(cfg):
    mean, std = STATS[cfg.dataset]
    if len(mean) != cfg.in_chans:
        if len(mean) == 1:
            mean, std = mean * cfg.in_chans, std * cfg.in_chans
        else:
            raise UserError(f"{cfg.dataset} images have {len(mean)} channels but in_chans={cfg.in_chans}")
    return mean, std


def pretrain_split(cfg) -> Split:
    """The images used for pretraining (STL-10: train + unlabeled), after ``subset``."""
    if cfg.dataset == "stl10":
        a, b = load_stl10(cfg.data, "train"), load_stl10(cfg.data, "unlabeled")
        s = Split(torch.cat([a.images, b.images]), torch.cat([a.labels, b.labels]))
    else:
        s = load_split(cfg, True)
    idx = subset_indices(len(s), cfg.subset)
    s = Split(s.images[idx], s.labels[idx])
    if s.images.shape[1] != cfg.in_chans:
        raise UserError(f"{cfg.dataset} images have {s.images.shape[1]} channels but in_chans={cfg.in_chans}")
    return s


def eval_splits(cfg) -> tuple[Split, Split]:
    """(train, test) labelled splits for kNN and the linear protocol (train after ``subset``); with
    ``eval_split: val`` the scored images are the validation split (:func:`val_indices`) instead of the test set."""
    if cfg.dataset == "stl10":
        full = load_stl10(cfg.data, "train")
    else:
        full = load_split(cfg, True)
    idx = subset_indices(len(full), cfg.subset)
    tr = Split(full.images[idx], full.labels[idx])
    if cfg.eval_split == "val":
        v = val_indices(len(full), cfg.subset)
        te = Split(full.images[v], full.labels[v])
    else:
        te = load_stl10(cfg.data, "test") if cfg.dataset == "stl10" else load_split(cfg, False)
    if cfg.knn_subset:
        te = Split(te.images[:cfg.knn_subset], te.labels[:cfg.knn_subset])
    return tr, te


def worker_init(worker_id: int) -> None:
    # one thread per worker: the workers share the cores with the training step
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"

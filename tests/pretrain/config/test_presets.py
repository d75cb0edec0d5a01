"""Presets against their sources: cifar10 = the official CIFAR-10 demo (facebookresearch/moco, branch
colab-notebook, colab/moco_cifar10_demo.ipynb), tiny = the recipe the tiny runs were made with, imagenet100 =
CMC's class list, built by ``python -m pretrain.fetch_data imagenet100``; and both presets run end to end."""
import math
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import PY, ROOT, TINY_V1
from pretrain import fetch_data as fetch_cli
from pretrain.data import fetch as fetch_data
from pretrain.config import config_hash, load_config
from pretrain.runtime.schedule import cosine_lr, lr_at

# -- cifar10 = the official demo ------------------------------------------------------------------------------

# The demo's values, read from the notebook (cell numbers of its JSON "cells" list):
DEMO = {
    # cell 4, argparse defaults and the ipynb overrides (args.epochs = 200, args.cos = True, symmetric False)
    "arch": "resnet18", "lr": 0.06, "epochs": 200, "cos": True, "batch_size": 512, "weight_decay": 5e-4,
    "moco_dim": 128, "moco_k": 4096, "moco_m": 0.99, "moco_t": 0.1, "bn_splits": 8, "knn_k": 200, "knn_t": 0.1,
    # cell 15: torch.optim.SGD(model.parameters(), lr=args.lr, weight_decay=args.wd, momentum=0.9);
    # for epoch in range(1, args.epochs + 1): train(...); test(model.encoder_q, ...) after every epoch
    "momentum": 0.9, "cos_first_epoch": 1, "knn_monitor": True, "knn_every": 1,
    # cell 13: feature = F.normalize(net(data)) with net = model.encoder_q (ModelBase incl. its fc -> 128)
    "knn_feature": "head",
    # cell 8 ModelBase: resnet18(num_classes=128), conv1 -> Conv2d(3, 64, 3, stride 1, padding 1), MaxPool dropped
    "cifar_stem": True, "in_chans": 3, "width": 64, "mlp": False,
    # cell 10 ModelMoCo: queue of K keys, momentum encoder, _batch_shuffle_single_gpu
    "mechanism": "moco",
    # cell 6 train_transform: RandomResizedCrop(32) (torchvision's default scale 0.08-1), RandomHorizontalFlip,
    # RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), RandomGrayscale(p=0.2), no blur
    "image_size": 32, "aug_plus": True, "blur": False, "crop_scale_min": 0.08,
    # cell 6: CIFAR10 train (50,000) / test (10,000), no subset
    "dataset": "cifar10", "subset": 0, "knn_subset": 0,
}
DEMO_MEAN_STD = ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010])       # cell 6 transforms.Normalize


def demo_adjust_learning_rate(lr, epoch, epochs, cos=True, schedule=()):
    """cell 12, adjust_learning_rate, as the notebook has it (called with epoch = 1..args.epochs)."""
    if cos:
        lr *= 0.5 * (1. + math.cos(math.pi * epoch / epochs))
    else:
        for milestone in schedule:
            lr *= 0.1 if epoch >= milestone else 1.
    return lr


def test_cifar10_preset_is_the_demo():
    c = load_config("cifar10")
    got = {k: getattr(c, k) for k in DEMO}
    assert got == DEMO
    assert (c.effective_lr, c.lr_scaling, c.shuffle_bn) == (0.06, "none", "auto")
    from pretrain.data.datasets import STATS
    assert STATS["cifar10"] == DEMO_MEAN_STD
    from pretrain.models.shuffle_bn import resolve_mode
    assert resolve_mode(c.shuffle_bn, 1) == "split"                # one process: SplitBatchNorm + key shuffle


def test_cifar10_model_and_augmentation_are_the_demos():
    import torch.nn as nn
    import torchvision.transforms as T
    from pretrain.data.augment import pil_transform
    from pretrain.models.encoder import encoder_for
    from pretrain.models.shuffle_bn import SplitBatchNorm, convert_bn
    c = load_config("cifar10")
    enc = encoder_for(c)
    assert (enc.conv1.in_channels, enc.conv1.out_channels, enc.conv1.kernel_size, enc.conv1.stride,
            enc.conv1.padding, enc.conv1.bias) == (3, 64, (3, 3), (1, 1), (1, 1), None)
    assert isinstance(enc.maxpool, nn.Identity)
    assert isinstance(enc.fc, nn.Linear) and (enc.fc.in_features, enc.fc.out_features) == (512, 128)
    enc = convert_bn(enc, "split", c.bn_splits, 1, torch.device("cpu"))
    bns = [m for m in enc.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(isinstance(m, SplitBatchNorm) and m.num_splits == 8 for m in bns)
    # the per-image pipeline of this config is the demo's train_transform (flip placed last: it commutes
    # with the pixel-wise colour operations)
    from pretrain.data.datasets import stats
    tf = pil_transform(c.image_size, c.aug_plus, *stats(c), crop_scale=(c.crop_scale_min, 1.0), blur=c.blur)
    crop, jitter, gray, flip, _, norm = tf.transforms
    assert isinstance(crop, T.RandomResizedCrop) and crop.size == (32, 32) and crop.scale == (0.08, 1.0)
    assert crop.ratio == pytest.approx((3 / 4, 4 / 3))
    assert isinstance(jitter, T.RandomApply) and jitter.p == 0.8
    cj = jitter.transforms[0]
    assert (cj.brightness, cj.contrast, cj.saturation, cj.hue) == ((0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1))
    assert isinstance(gray, T.RandomGrayscale) and gray.p == 0.2
    assert isinstance(flip, T.RandomHorizontalFlip) and flip.p == 0.5
    assert (list(norm.mean), list(norm.std)) == DEMO_MEAN_STD


def test_cifar10_schedule_is_the_demos_adjust_learning_rate():
    c = load_config("cifar10")
    # our epochs are 0-based: epoch e is the demo's epoch e + 1
    ours = [lr_at(c, e) for e in range(c.epochs)]
    demo = [demo_adjust_learning_rate(0.06, e, 200) for e in range(1, 201)]
    assert ours == pytest.approx(demo, rel=1e-12, abs=1e-15)
    assert round(ours[0], 6) == 0.059996 and round(ours[1], 6) == 0.059985   # the notebook's log, epochs 1 and 2
    assert ours[-1] == pytest.approx(0.0, abs=1e-15)
    # main_moco numbers its epochs from 0: the first epoch at the full lr (imagenet-v2, tiny)
    v2 = load_config("imagenet-v2")
    assert v2.cos_first_epoch == 0 and lr_at(v2, 0) == 0.03
    assert lr_at(v2, 100) == pytest.approx(cosine_lr(0.03, 100, 200)) == pytest.approx(0.015)
    assert cosine_lr(1.0, 0, 10, first_epoch=1) == pytest.approx(0.5 * (1 + math.cos(math.pi / 10)))
    # the step schedule is unaffected by cos_first_epoch
    step = load_config("imagenet", {"cos_first_epoch": 1})
    assert [lr_at(step, e) for e in (0, 119, 120, 160)] == pytest.approx([0.03, 0.03, 0.003, 0.0003])


# -- tiny is the piloted design --------------------------------------------------------------------------------

# The tiny design (ablations/README.md, "The tiny design" and "The budget design"), literally. The recipe
# of the first tiny sets (the demo's m 0.99, crops 0.2-1, stride-1 stem, fp32, 6 epochs) is TINY_V1 (tests/conftest.py).
TINY = {
    'dataset': 'fashion_mnist', 'data': '', 'subset': 10000, 'image_size': 28, 'augment_on': 'batched',
    'workers': 0, 'aug_plus': False, 'crop_scale_min': 0.85, 'blur': True, 'arch': 'resnet18', 'cifar_stem': True,
    'stem_stride': 2, 'in_chans': 1, 'width': 8, 'moco_dim': 128, 'mlp': False, 'mechanism': 'moco',
    'moco_k': 4096, 'moco_m': 0.999, 'moco_t': 0.1, 'bank_m': 0.5, 'bank_init': 'features', 'shuffle_bn': 'auto',
    'bn_splits': 8,
    'epochs': 5, 'batch_size': 128, 'lr': 0.06, 'lr_ref_batch': 128, 'lr_scaling': 'linear', 'momentum': 0.9,
    'weight_decay': 0.0005, 'schedule': [120, 160], 'cos': True, 'cos_first_epoch': 0, 'precision': 'fp32',
    'channels_last': False, 'compile': 'off', 'knn_monitor': True, 'knn_every': 0, 'knn_k': 200, 'knn_t': 0.1,
    'knn_feature': 'backbone', 'knn_subset': 0, 'eval_split': 'test', 'seed': 0, 'device': 'auto', 'threads': 0,
    'dist_timeout_min': 60, 'max_steps': 0, 'fail_on_nan': True, 'fail_loss_frac': 0.0, 'fail_below_init': False,
    'fail_loss_rise': 0.0,
}


def test_tiny_is_the_piloted_design():
    assert load_config("tiny").to_dict() == TINY
    old = load_config("tiny", TINY_V1)
    assert config_hash(old, 1) == "f8b3b805044b"        # the first set's default run (fig3 MoCo K = 4096, seed 0)
    c = load_config("tiny")
    assert [lr_at(c, e) for e in range(c.epochs)] == pytest.approx(
        [0.06 * 0.5 * (1 + math.cos(math.pi * e / 5)) for e in range(5)])


def test_imagenet_presets_have_no_knn_monitor_visibly():
    for name in ("imagenet", "imagenet-v2"):
        text = (ROOT / "pretrain" / "presets" / f"{name}.yaml").read_text()
        assert re.search(r"^knn_monitor: false", text, re.M), name
        c = load_config(name)
        assert (c.knn_monitor, c.crop_scale_min, c.blur, c.cos_first_epoch) == (False, 0.2, True, 0)


# -- ImageNet-100 -------------------------------------------------------------------------------------------

def test_imagenet100_list_is_cmcs_100_classes():
    wnids = fetch_data.imagenet100_classes()
    assert len(wnids) == len(set(wnids)) == 100
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    assert wnids[:3] == ["n02869837", "n01749939", "n02488291"] and wnids[-1] == "n02090622"
    head = [ln for ln in fetch_data.IMAGENET100_LIST.read_text().splitlines() if ln.startswith("#")]
    assert any("HobbitLong/CMC" in ln for ln in head)
    # shipped with the package
    assert '"data/imagenet100.txt"' in (ROOT / "pyproject.toml").read_text()


def test_imagenet100_preset():
    c = load_config("imagenet100")
    assert (c.dataset, c.arch, c.moco_k, c.moco_m, c.moco_t, c.mlp, c.aug_plus) == (
        "imagefolder", "resnet50", 16384, 0.999, 0.07, False, False)
    assert (c.lr, c.batch_size, c.momentum, c.weight_decay, c.epochs, c.schedule, c.cos) == (
        0.03, 256, 0.9, 1e-4, 200, [120, 160], False)
    assert (c.knn_monitor, c.knn_every, c.shuffle_bn, c.crop_scale_min) == (True, 10, "auto", 0.2)
    assert 256 * 64 == c.moco_k                                    # the keys of the last 64 batches


def _jpeg(path: Path, seed: int) -> None:
    from PIL import Image
    g = torch.Generator().manual_seed(seed)
    arr = (torch.rand(36, 36, 3, generator=g) * 255).to(torch.uint8).numpy()
    Image.fromarray(arr).save(path, quality=80)


EXTRA = "n09999999"                     # a class of the full ImageNet that is not in the subset


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory):
    """train/ and val/ with the 100 classes (1-2 36x36 JPEGs each) and one extra class."""
    root = tmp_path_factory.mktemp("imagenet")
    counts = {"train": 0, "val": 0}
    for i, w in enumerate(fetch_data.imagenet100_classes() + [EXTRA]):
        for split, n in (("train", 1 + i % 2), ("val", 1)):
            d = root / split / w
            d.mkdir(parents=True)
            for j in range(n):
                _jpeg(d / f"{w}_{j}.JPEG", 1000 * i + 10 * j + (split == "val"))
            counts[split] += n if w != EXTRA else 0
    return root, counts


def _tree(d: Path) -> list:
    return sorted((str(p.relative_to(d)), os.readlink(p) if p.is_symlink() else None, p.lstat().st_mtime_ns)
                  for p in d.rglob("*"))


def _fail(argv, capsys, match):
    with pytest.raises(SystemExit) as e:
        fetch_cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and re.search(match, err[0]), err


def test_fetch_imagenet100_links_the_class_folders(fake_imagenet, tmp_path, capsys):
    src, counts = fake_imagenet
    dst = tmp_path / "in100"
    assert fetch_cli.main(["imagenet100", "--from", str(src), "--to", str(dst)]) == 0
    out = capsys.readouterr().out
    assert f"100 classes, {counts['train']} train + {counts['val']} val images" in out and "200 links made" in out
    wnids = fetch_data.imagenet100_classes()
    for split in ("train", "val"):
        links = sorted((dst / split).iterdir())
        assert [p.name for p in links] == sorted(wnids)
        assert all(p.is_symlink() and Path(os.readlink(p)) == src.resolve() / split / p.name for p in links)
    assert not (dst / "train" / EXTRA).exists()
    import torchvision.datasets as tvd
    ds = tvd.ImageFolder(str(dst / "train"))
    assert len(ds.classes) == 100 and len(ds) == counts["train"]
    # idempotent: the same call again succeeds and changes nothing
    before = _tree(dst)
    assert fetch_cli.main(["imagenet100", "--from", str(src), "--to", str(dst)]) == 0
    assert "nothing changed" in capsys.readouterr().out and _tree(dst) == before
    # an interrupted earlier run is completed
    os.unlink(dst / "val" / wnids[5])
    assert fetch_cli.main(["imagenet100", "--from", str(src), "--to", str(dst)]) == 0
    assert "1 links made" in capsys.readouterr().out and _tree(dst)[0][:2] == before[0][:2]
    # --to holding something else
    (dst / "notes.txt").write_text("mine")
    _fail(["imagenet100", "--from", str(src), "--to", str(dst)], capsys, r"exists with other contents \(notes\.txt\)")
    os.unlink(dst / "notes.txt")
    os.unlink(dst / "train" / wnids[0])
    os.symlink(src / "val" / wnids[0], dst / "train" / wnids[0])               # a link to elsewhere
    _fail(["imagenet100", "--from", str(src), "--to", str(dst)], capsys, "other contents.*train/" + wnids[0])


def test_fetch_imagenet100_errors(fake_imagenet, tmp_path, capsys):
    src, _ = fake_imagenet
    _fail(["imagenet100", "--to", str(tmp_path / "x")], capsys, "pass the ImageNet folder with --from")
    _fail(["imagenet100", "--from", str(src)], capsys, "pass the output folder with --to")
    _fail(["imagenet100", "--from", str(tmp_path / "nope"), "--to", str(tmp_path / "x")], capsys,
          "is not a directory")
    _fail(["imagenet100", "--bogus"], capsys, "unrecognized arguments: --bogus")
    wnids = fetch_data.imagenet100_classes()
    # missing classes: how many and the first few
    part = tmp_path / "partial"
    for w in wnids[3:]:
        (part / "train" / w).mkdir(parents=True)
        (part / "val" / w).mkdir(parents=True)
    _fail(["imagenet100", "--from", str(part), "--to", str(tmp_path / "x")], capsys,
          f"3 of the 100 classes are missing in {part}/train: {wnids[0]}, {wnids[1]}, {wnids[2]}$")
    # val/ not sorted into class folders (ImageNet's tar unpacks flat)
    flat = tmp_path / "flat"
    for w in wnids:
        (flat / "train" / w).mkdir(parents=True)
    (flat / "val").mkdir()
    _jpeg(flat / "val" / "ILSVRC2012_val_00000001.JPEG", 0)
    _fail(["imagenet100", "--from", str(flat), "--to", str(tmp_path / "x")], capsys,
          "val holds images, not class folders: sort the validation images into")
    assert not (tmp_path / "x").exists()                       # nothing is made on an error


def test_fetch_data_cli(fake_imagenet, tmp_path, env, monkeypatch):
    # no arguments: Fashion-MNIST, as before (the Makefile's call)
    called = []
    monkeypatch.setattr(fetch_cli, "fashion_mnist", lambda: called.append(1) or 0)
    assert fetch_cli.main([]) == 0 and fetch_cli.main(["fashion_mnist"]) == 0 and called == [1, 1]
    # the real command line: one error line, exit code 2
    r = subprocess.run([PY, "-m", "pretrain.fetch_data", "imagenet100", "--to", str(tmp_path / "x")],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: imagenet100: pass the ImageNet")


# -- the presets run end to end -------------------------------------------------------------------------------

def test_imagenet100_preset_trains_on_the_linked_subset(fake_imagenet, tmp_path, capsys):
    from pretrain.engine.lifecycle import run
    src, _ = fake_imagenet
    dst = tmp_path / "in100"
    assert fetch_cli.main(["imagenet100", "--from", str(src), "--to", str(dst)]) == 0
    cfg = load_config("imagenet100", {"data": str(dst), "arch": "resnet18", "width": 8, "image_size": 32,
                                      "batch_size": 16, "moco_k": 64, "epochs": 1, "max_steps": 2, "workers": 0,
                                      "device": "cpu", "bn_splits": 2, "knn_monitor": False, "threads": 1})
    s = run(cfg, tmp_path / "run", progress=False)
    assert s["status"] == "done", s
    assert s["loss"] is not None and math.isfinite(s["loss"])


def test_cifar10_preset_trains_on_synthetic_cifar_shaped_data(tmp_path):
    from pretrain.engine.lifecycle import run
    cfg = load_config("cifar10", {"dataset": "synthetic", "subset": 256, "batch_size": 32, "moco_k": 64,
                                  "epochs": 1, "max_steps": 2, "width": 8, "device": "cpu", "threads": 1,
                                  "workers": 0, "knn_subset": 100})
    assert (cfg.aug_plus, cfg.blur, cfg.crop_scale_min, cfg.knn_monitor, cfg.knn_feature) == (
        True, False, 0.08, True, "head")
    s = run(cfg, tmp_path / "run", progress=False)
    assert s["status"] == "done", s
    assert math.isfinite(s["loss"]) and s["knn_acc"] is not None

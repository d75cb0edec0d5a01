"""Linear classification protocol on a frozen backbone."""
import json
import shutil
import socket
import subprocess

import numpy as np
import pytest
import torch

from conftest import PY, ROOT, synthetic_overrides
from pretrain.eval import lincls as L
from pretrain.config import load_config
from pretrain.base.errors import UserError
from pretrain.eval.protocol import LinclsConfig
from pretrain.eval.lincls import run as lincls
from pretrain.engine.lifecycle import run


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("pre")
    run(load_config("tiny", synthetic_overrides(epochs=1, max_steps=4)), d, progress=False)
    return d / "checkpoint.pth"


def test_linear_protocol_learns_on_frozen_features(ckpt):
    before = torch.load(ckpt, weights_only=False)["state_dict"]["encoder_q.layer1.0.conv1.weight"].clone()
    res = lincls(str(ckpt), LinclsConfig(epochs=30, schedule=[18, 24], batch_size=64, lr=1.0), progress=False)
    assert res["cache_features"] is True
    assert res["lincls_acc1"] > 30.0            # 10 synthetic classes: chance is 10%
    assert res["lincls_acc5"] >= res["lincls_acc1"]
    saved = json.loads((ckpt.parent / "lincls.json").read_text())
    assert saved["lincls_acc1"] == res["lincls_acc1"]
    assert torch.equal(torch.load(ckpt, weights_only=False)["state_dict"]["encoder_q.layer1.0.conv1.weight"], before)


def test_augmented_path_runs(ckpt, tmp_path):
    res = lincls(str(ckpt), LinclsConfig(epochs=2, batch_size=64, cache_features=False), out=str(tmp_path / "l.json"),
                 progress=False)
    assert 0 <= res["lincls_acc1"] <= 100 and res["cache_features"] is False


def test_wrong_architecture_is_refused(ckpt, tmp_path, env):
    ck = torch.load(ckpt, weights_only=False)
    ck["config"]["arch"] = "resnet50"
    torch.save(ck, tmp_path / "bad.pth")
    r = subprocess.run([PY, "-m", "pretrain.lincls", str(tmp_path / "bad.pth"), "--epochs", "1"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "do not fit resnet50" in r.stderr
    r = subprocess.run([PY, "-m", "pretrain.lincls", str(tmp_path / "missing.pth")], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error: checkpoint not found")


# -- the official augmented protocol on ImageFolder (main_lincls.py) ---------------------------------------

# three visually distinct classes (dominant colour and brightness); 15 val images: an odd count, so a padded
# (DistributedSampler) validation over 2 processes would count 16
COLOURS = {"a_dark_blue": (20, 20, 120), "b_green": (40, 200, 50), "c_light_red": (250, 200, 190)}
N_TRAIN, N_VAL = 12, 5
LC = dict(epochs=3, schedule=[2], batch_size=8)       # official lr 30, momentum 0.9, wd 0


def make_folder(root, n_train=N_TRAIN, n_val=N_VAL):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, rgb in COLOURS.items():
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = np.clip(np.array(rgb)[None, None] + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("inet") / "data")


@pytest.fixture(scope="module")
def if_ckpt(folder, tmp_path_factory):
    """A real imagefolder pretraining run (2 steps) of the pretrainer."""
    d = tmp_path_factory.mktemp("pre_if")
    cfg = load_config("imagenet", dict(dataset="imagefolder", data=str(folder), arch="resnet18", width=8,
                                       image_size=32, moco_k=32, batch_size=8, epochs=1, max_steps=2, workers=0,
                                       device="cpu", bn_splits=2, knn_monitor=False))
    run(cfg, d, progress=False)
    return d / "checkpoint.pth"


@pytest.fixture(scope="module")
def calibrated(if_ckpt, tmp_path_factory):
    """The same checkpoint with the query encoder's BN statistics estimated on the training images ("precise
    BN"): after 2 pretraining steps the running statistics are still near their init, so the features are
    ~100x too large for a stable classifier; calibrated, the linear protocol learns reliably."""
    cfg, enc, _ = L.load_backbone(str(if_ckpt))
    tr, _ = L.imagefolder_sets(cfg)
    for m in enc.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None                       # cumulative average
    torch.manual_seed(0)
    with torch.no_grad():
        enc.train()(torch.stack([tr[i][0] for i in range(len(tr))]))
    ck = torch.load(if_ckpt, weights_only=False)
    ck["state_dict"].update({"encoder_q." + k: v for k, v in enc.state_dict().items()})
    p = tmp_path_factory.mktemp("calib") / "checkpoint.pth"
    torch.save(ck, p)
    return p


def _strip(res):
    return {k: v for k, v in res.items() if k not in ("seconds", "resumed_at_epoch")}


def _history(path):
    return [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in path.read_text().splitlines()]


def test_imagefolder_protocol_on_a_pretrained_checkpoint(if_ckpt, folder, tmp_path):
    before = torch.load(if_ckpt, weights_only=False)["state_dict"]
    moved = tmp_path / "moved"                          # the dataset moved since pretraining: --data
    shutil.copytree(folder, moved)
    out = tmp_path / "res" / "lincls.json"
    res = lincls(str(if_ckpt), LinclsConfig(**LC), out=str(out), progress=False, device="cpu",
                 data_dir=str(moved))
    assert 0.0 <= res["lincls_acc1"] <= res["lincls_acc5"] <= 100.0
    assert res["lincls_best_acc1"] >= res["lincls_acc1"] and 1 <= res["lincls_best_epoch"] <= 3
    assert (res["classes"], res["train_images"], res["val_images"], res["world_size"]) == (3, 36, 15, 1)
    assert res["data"] == str(moved) and res["cache_features"] is False and res["epochs"] == 3
    assert json.loads(out.read_text()) == res
    hist = _history(out.parent / "lincls_metrics.jsonl")
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert [h["lr"] for h in hist] == pytest.approx([30, 30, 3])       # official lr 30, x0.1 from epoch index 2
    assert max(h["val_acc1"] for h in hist) == res["lincls_best_acc1"] and hist[-1]["val_acc1"] == res["lincls_acc1"]
    assert not (out.parent / "lincls_checkpoint.pth").exists()    # removed once the result is written
    after = torch.load(if_ckpt, weights_only=False)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_imagefolder_classifier_learns_and_is_deterministic(calibrated, tmp_path):
    a = lincls(str(calibrated), LinclsConfig(**LC), out=str(tmp_path / "a.json"), progress=False, device="cpu")
    b = lincls(str(calibrated), LinclsConfig(**LC), out=str(tmp_path / "b.json"), progress=False, device="cpu")
    assert a["lincls_acc1"] >= 80.0                    # chance is 33.3 % (measured: 100 % for seeds 0-3)
    assert _strip(a) == _strip(b)
    assert _history(tmp_path / "a_metrics.jsonl") == _history(tmp_path / "b_metrics.jsonl")


class _Killed(Exception):
    pass


def test_imagefolder_resume_is_bit_identical(calibrated, tmp_path, monkeypatch):
    full = lincls(str(calibrated), LinclsConfig(**LC), out=str(tmp_path / "full" / "lincls.json"),
                  progress=False, device="cpu")
    out = tmp_path / "cut" / "lincls.json"
    real, calls = L.evaluate, []

    def evaluate_then_die(*a, **kw):
        calls.append(1)
        if len(calls) == 3:                            # killed during epoch 3, after epoch 2's checkpoint
            raise _Killed()
        return real(*a, **kw)

    monkeypatch.setattr(L, "evaluate", evaluate_then_die)
    with pytest.raises(_Killed):
        lincls(str(calibrated), LinclsConfig(**LC), out=str(out), progress=False, device="cpu")
    monkeypatch.setattr(L, "evaluate", real)
    ck = torch.load(out.parent / "lincls_checkpoint.pth", weights_only=False)
    assert ck["epoch"] == 2 and not out.exists()
    with pytest.raises(UserError, match=r"another linear protocol run \(--lr differ"):
        lincls(str(calibrated), LinclsConfig(**{**LC, "lr": 1.0}), out=str(out), progress=False, device="cpu")
    res = lincls(str(calibrated), LinclsConfig(**LC), out=str(out), progress=False, device="cpu")
    assert res["resumed_at_epoch"] == 2 and _strip(res) == _strip(full)
    assert _history(out.parent / "lincls_metrics.jsonl") == _history(tmp_path / "full" / "lincls_metrics.jsonl")
    assert not (out.parent / "lincls_checkpoint.pth").exists()


def _fixed_classifier(ckpt, seed):
    cfg, enc, _ = L.load_backbone(str(ckpt))
    torch.manual_seed(seed)
    fc = torch.nn.Linear(64, 3)
    fc.weight.data.normal_(0, 1.0)
    return cfg, enc.eval(), fc


def _informative_seed(ckpt):
    """A random classifier that gets some, not all, val images right, with no near-ties (robust to the
    batch layout): then equal counts in 1 and 2 processes show that every image was counted once."""
    from pretrain.models.encoder import backbone_forward
    for seed in range(50):
        cfg, enc, fc = _fixed_classifier(ckpt, seed)
        _, val = L.imagefolder_sets(cfg)
        x, y = torch.stack([val[i][0] for i in range(len(val))]), torch.tensor([val[i][1] for i in range(len(val))])
        with torch.no_grad():
            logits = fc(backbone_forward(enc, x))
        top2 = logits.topk(2, 1).values
        right = int((logits.argmax(1) == y).sum())
        if 0 < right < len(y) and (top2[:, 0] - top2[:, 1]).min() > 0.05:
            return seed
    raise AssertionError("no informative random classifier")


def ddp_worker(rank, world, out, ckpt, seed):
    """In a process group the CALLER initialised (the ablation job's case): sharded eval + a full run."""
    import torch.distributed as dist
    cfg, enc, fc = _fixed_classifier(ckpt, seed)
    _, val = L.imagefolder_sets(cfg)
    counts = L.evaluate(enc, fc, val, 4, 0, torch.device("cpu"))
    res = lincls(str(ckpt), LinclsConfig(epochs=2, schedule=[1], batch_size=8), out=out + ".json",
                 progress=False, device="cpu")
    assert dist.is_initialized()                       # a group lincls did not create is left alone
    with pytest.raises(UserError, match="batch size 7 is not divisible by the 2 processes"):
        lincls(str(ckpt), LinclsConfig(epochs=1, batch_size=7), out=out + ".x.json", progress=False, device="cpu")
    torch.save({"counts": counts, "res": res}, f"{out}.{rank}")


def test_imagefolder_two_processes_in_an_existing_group(calibrated, tmp_path):
    import dist_workers as W
    out = str(tmp_path / "ddp")
    seed = _informative_seed(calibrated)
    W.launch(ddp_worker, 2, out, str(calibrated), seed)
    r0, r1 = torch.load(out + ".0", weights_only=False), torch.load(out + ".1", weights_only=False)
    cfg, enc, fc = _fixed_classifier(calibrated, seed)
    _, val = L.imagefolder_sets(cfg)
    one = L.evaluate(enc, fc, val, 4, 0, torch.device("cpu"))
    assert one[2] == 15 and 0 < one[0] < 15          # the fixed classifier gets some, not all, right
    assert r0["counts"] == r1["counts"] == one        # 2-process eval = 1-process eval, every image once
    assert r0["res"] == r1["res"] and r0["res"]["world_size"] == 2 and r0["res"]["val_images"] == 15
    assert json.loads((tmp_path / "ddp.json").read_text()) == r0["res"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_imagefolder_torchrun_cli(calibrated, tmp_path, env):
    out = tmp_path / "lincls.json"
    cmd = [PY, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "pretrain.lincls", str(calibrated), "--epochs", "2", "--schedule", "1", "--batch-size", "8",
           "--output", str(out), "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert (res["world_size"], res["val_images"], res["train_images"]) == (2, 15, 36)
    assert res["lincls_acc1"] >= 80.0 and r.stdout.count("linear protocol: top-1") == 1   # rank 0 prints
    assert len(_history(tmp_path / "lincls_metrics.jsonl")) == 2


def test_imagefolder_bad_output_and_data_fail_before_training(calibrated, folder, tmp_path, env):
    (tmp_path / "a_file").write_text("x")
    r = subprocess.run([PY, "-m", "pretrain.lincls", str(calibrated), "--output",
                        str(tmp_path / "a_file" / "lincls.json")], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error: cannot write") and len(r.stderr.splitlines()) == 1
    assert "linear protocol" not in r.stdout
    with pytest.raises(UserError, match="is a directory"):
        lincls(str(calibrated), LinclsConfig(**LC), out=str(tmp_path), progress=False, device="cpu")
    no_val = tmp_path / "no_val"
    shutil.copytree(folder / "train", no_val / "train")
    with pytest.raises(UserError, match="needs .*val"):
        lincls(str(calibrated), LinclsConfig(**LC), out=str(tmp_path / "x.json"), data_dir=str(no_val),
               progress=False, device="cpu")
    with pytest.raises(UserError, match="cache-features needs a fixed-size"):
        lincls(str(calibrated), LinclsConfig(**LC, cache_features=True), out=str(tmp_path / "x.json"),
               progress=False, device="cpu")
    assert not list(tmp_path.glob("x*"))

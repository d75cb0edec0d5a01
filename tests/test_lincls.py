"""Linear classification protocol on a frozen backbone."""
import json
import subprocess

import pytest
import torch

from conftest import PY, ROOT, synthetic_overrides
from pretrain.config import load_config
from pretrain.lincls import LinclsConfig, run as lincls
from pretrain.train import run


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

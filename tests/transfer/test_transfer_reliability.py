"""transfer/ loses nothing: the converter replaces its output only with a verified .pkl,
transfer run ids follow the config's content (and the weights'), and a checkpoint's ResNet is told
by one rule (``transfer.arch.infer_arch``) in the converter and in the trainer.

Checkpoints here are torchvision-shaped state dicts whose tensors are broadcast scalars (a few
bytes on disk each), so building them takes no time; only the two CLI conversions build
detectron2's R50-C4 model (about 20 s on 2 CPU cores in all).
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
CONFIGS = REPO / "transfer" / "configs"

from test_transfer import _cli, _need_detectron2  # noqa: E402,F401  # pyflakes: ignore  (the detectron2 requirement, the CLI runner)


def _error_lines(stderr: str) -> list[str]:
    """stderr lines that are not library warnings (torch/detectron2 emit FutureWarnings)."""
    return [l for l in stderr.splitlines() if l.strip() and "warn" not in l.lower()]


def _encoder(arch: str) -> dict:
    """torchvision ``arch``'s state dict with torchvision names; tensor i is the scalar i + 1
    broadcast to its shape (so every tensor differs, and saving it costs bytes, not megabytes)."""
    import torch
    import torchvision

    with torch.device("meta"):
        model = getattr(torchvision.models, arch)()
    return {k: torch.full((), i + 1, dtype=v.dtype).expand(v.shape)
            for i, (k, v) in enumerate(model.state_dict().items())}


def _checkpoint(path: Path, arch: str, declared: str | None = None) -> Path:
    """A mocobench-style checkpoint (``encoder_q.*`` and ``encoder_k.*``) of torchvision ``arch``;
    ``declared``: the ``arch`` it names (None: none, as in checkpoints of other tools)."""
    import torch

    enc = _encoder(arch)
    sd = {f"encoder_{e}.{k}": v for e in "qk" for k, v in enc.items()}
    obj = {"state_dict": sd, "epoch": 1}
    if declared:
        obj["arch"] = declared
    torch.save(obj, path)
    return path


# --------------------------------------------------------------------------- 1: verified output

def test_failed_verification_leaves_previous_output(tmp_path):
    """The .pkl replaces OUT only once detectron2 has loaded it cleanly: a failing verification
    (a config whose stem has 32 channels, so the 64-channel checkpoint cannot load) leaves the
    previous OUT byte-identical and no temporary file; a passing one replaces OUT."""
    ck = _checkpoint(tmp_path / "r50.pth", "resnet50", "resnet50")
    out = tmp_path / "moco.pkl"
    before = pickle.dumps({"model": {"stem.conv1.weight": np.ones((64, 3, 7, 7), np.float32)},
                           "__author__": "an earlier, verified conversion", "matching_heuristics": True})
    out.write_bytes(before)
    bad = tmp_path / "stem32.yaml"
    bad.write_text(f"_BASE_: {CONFIGS / 'pascal_voc_R_50_C4_24k_moco.yaml'}\n"
                   "MODEL:\n  RESNETS:\n    STEM_OUT_CHANNELS: 32\n")

    r = _cli("transfer.convert", ck, out, "--config", bad)
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-3000:])
    lines = _error_lines(r.stderr)
    assert len(lines) == 1, r.stderr[-3000:]
    # the stem conv (64 x 3 x 7 x 7 in the file, 32 x 3 x 7 x 7 in the model), its norm (4
    # tensors) and res2.0's conv1 / shortcut (64 / 256 x 32 x 1 x 1) do not fit: 7 tensors
    assert lines == [
        f"error: detectron2 did not load the conversion of {ck} cleanly into stem32.yaml: "
        "7 unused (res2.0.conv1.weight, res2.0.shortcut.weight, stem.conv1.norm.bias, ...); "
        "7 missing (backbone.res2.0.conv1.weight, backbone.res2.0.shortcut.weight, "
        "backbone.stem.conv1.norm.bias, ...); 7 mismatched (backbone.stem.conv1.weight, "
        f"backbone.stem.conv1.norm.weight, backbone.stem.conv1.norm.bias, ...); {out} left unchanged"]
    assert "wrote" not in r.stdout
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moco.pkl", "r50.pth", "stem32.yaml"]

    r = _cli("transfer.convert", ck, out)  # the default config: verifies, then replaces
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"wrote {out}: 318 tensors (resnet50, query encoder)" in r.stdout
    assert "265 backbone tensors matched, 0 unused, 0 missing, 0 mismatched" in r.stdout
    with open(out, "rb") as f:
        model = pickle.load(f)["model"]
    assert len(model) == 318 and model["stem.conv1.weight"].shape == (64, 3, 7, 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moco.pkl", "r50.pth", "stem32.yaml"]


def test_verification_reads_a_temporary_file_beside_the_output(tmp_path, monkeypatch, capsys):
    """verify() is given a temporary *.pkl in OUT's folder while OUT still holds its old bytes;
    refused: OUT unchanged (or not created), the temporary file removed, one error line, exit 2."""
    from transfer import convert

    ck = _checkpoint(tmp_path / "r50.pth", "resnet50")  # no arch: recognised from the weights
    out = tmp_path / "moco.pkl"
    previous = pickle.dumps({"model": {}, "__author__": "MOCO", "matching_heuristics": True})  # an earlier one
    out.write_bytes(previous)
    seen = []

    def refuse(pkl, config, depth):
        seen.append((Path(pkl), out.read_bytes(), depth))
        assert pickle.load(open(pkl, "rb"))["__author__"] == "MOCO"
        return {"matched": 264, "unused": [], "missing": ["backbone.stem.conv1.weight"],
                "mismatched": []}

    monkeypatch.setattr(convert, "verify", refuse)
    assert convert.main([str(ck), str(out)]) == 2
    (tmp,), old, depth = zip(*seen)
    assert tmp.parent == tmp_path and tmp.name.startswith(".moco.pkl.") and tmp.suffix == ".pkl"
    assert old == (previous,) and depth == (50,)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: detectron2 did not load the conversion of {ck} cleanly into "
                   f"pascal_voc_R_50_C4_24k_moco.yaml: 1 missing (backbone.stem.conv1.weight); "
                   f"{out} left unchanged"]
    assert out.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["moco.pkl", "r50.pth"]

    fresh = tmp_path / "sub" / "fresh.pkl"
    assert convert.main([str(ck), str(fresh)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"; {fresh} not written")
    assert not fresh.exists() and list(fresh.parent.iterdir()) == []


# --------------------------------------------------------------------------- 2: run ids

def test_run_id_follows_config_content(tmp_path):
    """An edited config (or an edited _BASE_ of it, or rewritten weights) is a new run id; the same
    content (rewritten, touched) keeps the id.  launch.plan, which skips ids already done, agrees."""
    from transfer.launch import plan
    from transfer.train import run_id

    base = tmp_path / "Base.yaml"
    base.write_text((CONFIGS / "Base-RCNN-C4-BN.yaml").read_text())
    cfg = tmp_path / "voc.yaml"
    text = "_BASE_: Base.yaml\nSOLVER:\n  MAX_ITER: 24000\n"
    cfg.write_text(text)
    weights = tmp_path / "w.pkl"
    weights.write_bytes(b"weights v1")
    opts = ["SOLVER.BASE_LR", "0.01"]

    rid = run_id(cfg, opts, weights, 0)
    assert len(rid) == 12 and int(rid, 16) >= 0
    assert plan([cfg], [weights], 1, opts)[0]["run_id"] == rid
    cfg.write_text(text)  # same content, new mtime
    os.utime(cfg, (1, 1))
    assert run_id(cfg, opts, weights, 0) == rid

    cfg.write_text(text.replace("24000", "12000"))  # edited config: same name, a new run
    edited = run_id(cfg, opts, weights, 0)
    assert edited != rid
    assert plan([cfg], [weights], 1, opts)[0]["run_id"] == edited
    cfg.write_text(text)
    assert run_id(cfg, opts, weights, 0) == rid

    base.write_text(base.read_text().replace("BASE_LR: 0.02", "BASE_LR: 0.04"))  # edited _BASE_
    assert run_id(cfg, opts, weights, 0) not in (rid, edited)
    base.write_text((CONFIGS / "Base-RCNN-C4-BN.yaml").read_text())
    assert run_id(cfg, opts, weights, 0) == rid

    weights.write_bytes(b"weights v2")  # a checkpoint rewritten at the same path
    assert run_id(cfg, opts, weights, 0) != rid
    weights.write_bytes(b"weights v1")
    assert run_id(cfg, opts, weights, 0) == rid
    # the other settings still count
    assert len({rid, run_id(cfg, opts, weights, 1), run_id(cfg, [], weights, 0),
                run_id(cfg, opts, weights, 0, eval_only=True)}) == 4


# --------------------------------------------------------------------------- 3: one arch rule

@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_infer_arch_from_weights(arch):
    from transfer.arch import infer_arch

    assert infer_arch(_encoder(arch), {}) == arch
    assert infer_arch(_encoder(arch), {"config": {"arch": arch}}) == arch


def test_declared_arch_contradicted_by_weights():
    from transfer.arch import ArchError, infer_arch

    with pytest.raises(ArchError) as e:
        infer_arch(_encoder("resnet18"), {"arch": "resnet50"}, "ck.pth")
    assert str(e.value) == ("ck.pth: arch 'resnet50' in the checkpoint, but its weights are a "
                            "resnet18 (2-2-2-2 basic blocks)")
    enc = {k: v for k, v in _encoder("resnet50").items() if not k.startswith("layer3.5.")}
    with pytest.raises(ArchError) as e:
        infer_arch(enc, {}, "ck.pth")
    assert str(e.value) == ("ck.pth: no 'arch' in the checkpoint and its weights are no "
                            "torchvision ResNet-18/34/50/101/152 (3-4-5-3 bottleneck blocks)")


@pytest.mark.parametrize("arch", ["resnet18", "resnet34"])
def test_basic_block_resnet_without_arch_is_one_error_in_convert_and_train(arch, tmp_path,
                                                                            monkeypatch, capsys):
    """A ResNet-18/34 checkpoint without ``arch``: both the converter and the trainer recognise
    it (a ResNet-34 has 6 res4 blocks like a ResNet-50, and must not be taken for one) and refuse it with the
    same error line."""
    from transfer import convert

    ck = _checkpoint(tmp_path / f"{arch}.pth", arch)
    expected = [f"error: {ck}: arch '{arch}' (no 'arch' in the checkpoint; recognised from its "
                "weights) not supported for detection (bottleneck ResNets: resnet50, resnet101, "
                "resnet152)"]
    out = tmp_path / "out.pkl"
    assert convert.main([str(ck), str(out), "--no-verify"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == expected
    assert not out.exists()

    rc = _train_r50(tmp_path, monkeypatch, ck)
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines() == expected
    assert not (tmp_path / "run" / "backbone.pkl").exists()
    assert not (tmp_path / "results.csv").exists()


def test_deeper_resnet_without_arch_against_r50_config_is_one_error(tmp_path, monkeypatch, capsys):
    """A ResNet-101 checkpoint without ``arch`` against an R-50 config: one error line naming both
    depths and the override, before anything is converted."""
    ck = _checkpoint(tmp_path / "r101.pth", "resnet101")
    rc = _train_r50(tmp_path, monkeypatch, ck)
    assert rc == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {ck} is a resnet101, synthetic_voc_R_50_C4_moco.yaml builds ResNet-50 "
        "(add --opts MODEL.RESNETS.DEPTH 101)"]
    assert not (tmp_path / "run" / "backbone.pkl").exists()


def _train_r50(tmp_path, monkeypatch, ck) -> int:
    """``transfer.train`` with the synthetic VOC R-50 C4 config and ``ck`` as weights (its exit code)."""
    from transfer import datasets, train
    (tmp_path / "VOC_synthetic").mkdir()
    monkeypatch.setenv("MOCOBENCH_RESULTS", str(tmp_path / "results.csv"))
    datasets.register_synthetic(str(tmp_path))
    try:
        return train.main(["--config", str(CONFIGS / "synthetic_voc_R_50_C4_moco.yaml"),
                           "--weights", str(ck), "--output", str(tmp_path / "run")])
    finally:
        datasets.register_synthetic()


def test_plain_import_detectron2_works_in_the_venv(tmp_path):
    """After `make setup`, `import detectron2` works in the venv without transfer.compat (detectron2's own tools,
    a user's script): the .pth hook puts the aliases first, the unpacked sdist on the path, and the _C stand-in
    where there are no compiled ops."""
    import sysconfig
    pth = Path(sysconfig.get_paths()["purelib"]) / "mocobench_detectron2.pth"
    assert pth.is_file(), f"{pth} missing: run transfer/setup_detectron2.sh (make setup)"
    code = ("import sys, numpy as np, detectron2, detectron2.modeling, detectron2.engine\n"
            "from detectron2 import _C\n"
            "from PIL import Image\n"
            "print(detectron2.__version__, getattr(_C, 'MOCOBENCH_STAND_IN', False), Image.LINEAR == Image.BILINEAR)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([PY, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    version, stand_in, linear = r.stdout.split()
    assert version == "0.6" and linear == "True"
    from transfer.compat import ensure_detectron2
    assert stand_in == str(ensure_detectron2() == "pypi-sdist")


def test_importing_transfer_train_patches_nothing():
    """Importing transfer.train leaves numpy and PIL as they are (they are patched when detectron2 is imported)."""
    code = ("import numpy as np\nfrom PIL import Image\nhad = hasattr(Image, 'LINEAR')\n"
            "import transfer.train\nprint(had, hasattr(Image, 'LINEAR'), 'detectron2' in __import__('sys').modules)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([PY, "-c", code], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["False", "False", "False"]

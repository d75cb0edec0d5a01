"""Files the suite reads are untrusted: a checkpoint never runs code, an output never replaces an input or a
user's own file, and a result file counts only for the protocol and checkpoint it records."""
import json
import os
import pathlib
import re
import subprocess

import pytest
import torch
import torchvision

from conftest import PY, ROOT, synthetic_overrides
from pretrain.runtime import checkpoint as C
from pretrain.base import rundir
from pretrain.config import load_config
from pretrain.base.errors import UserError
from pretrain.base.fileio import refuse_overwrite, same_file
from pretrain.eval.protocol import LinclsConfig, result_for
from pretrain.eval.lincls import run as lincls
from pretrain.base.rundir import RunDir
from pretrain.engine.lifecycle import run


class Payload:
    """Unpickling it touches ``marker`` (a harmless stand-in for any command)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    summary = run(load_config("tiny", synthetic_overrides(epochs=1, max_steps=4)), d, progress=False)
    return d, summary


def _cli(*args, env=None):
    e = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([PY, "-m", *args], capture_output=True, text=True, cwd=ROOT, env=e, timeout=600)


def _one_error(r) -> str:
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    return lines[0]


def _evil_copy(ck_path, dest, marker):
    ck = C.load(ck_path)
    ck["note"] = Payload(marker)
    torch.save(ck, dest)
    assert not marker.exists()
    return dest


# -- code runs from a file --------------------------------------------------------------------------------

def test_our_checkpoints_load_with_tensors_and_plain_data_only(trained):
    d, _ = trained
    assert torch.serialization.get_unsafe_globals_in_checkpoint(d / "checkpoint.pth") != []   # numpy's RNG state
    ck = C.load(d / "checkpoint.pth")
    assert ck["format"] == C.FORMAT and set(ck["rng"]) >= {"torch", "python", "numpy"}
    C.set_rng_state(ck["rng"])


def test_a_payload_is_refused_in_process(trained, tmp_path):
    marker = tmp_path / "ran"
    evil = _evil_copy(trained[0] / "checkpoint.pth", tmp_path / "evil.pth", marker)
    with pytest.raises(UserError, match=r"pickled Python object .*refused without running it"):
        C.load(evil)
    assert not marker.exists()


@pytest.mark.parametrize("entry", ["resume", "lincls", "knn", "export", "convert"])
def test_a_payload_never_runs_from_any_entry_point(trained, tmp_path, entry):
    d, _ = trained
    marker = tmp_path / "ran"
    if entry == "resume":
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        (run_dir / rundir.LOCK).touch()
        _evil_copy(d / "checkpoint.pth", run_dir / "checkpoint.pth", marker)
        args = ["pretrain", "--preset", "tiny", *[f"--{k.replace('_', '-')}={v}" for k, v in
                                                  synthetic_overrides(epochs=2, max_steps=4).items()],
                "--no-progress", "--output", str(run_dir), "--resume"]
    else:
        evil = _evil_copy(d / "checkpoint.pth", tmp_path / "evil.pth", marker)
        args = {"lincls": ["pretrain.lincls", str(evil), "--epochs", "1", "--output", str(tmp_path / "l.json")],
                "knn": ["pretrain.knn", "--checkpoint", str(evil)],
                "export": ["pretrain.export", str(evil), str(tmp_path / "o.pth.tar")],
                "convert": ["transfer.convert", str(evil), str(tmp_path / "o.pkl"), "--no-verify"]}[entry]
    line = _one_error(_cli(*args))
    assert "pickled Python object" in line and "refused without running it" in line
    assert not marker.exists()
    assert not any(p.name in ("l.json", "o.pth.tar", "o.pkl") for p in tmp_path.iterdir())


def test_a_module_as_state_dict_is_one_clear_line(tmp_path):
    p = tmp_path / "module.pth"
    torch.save({"state_dict": torchvision.models.resnet18(), "arch": "resnet18"}, p)
    with pytest.raises(UserError, match=r"torchvision\.models\.resnet\.ResNet.*state_dict\(\)"):
        C.load(p)
    line = _one_error(_cli("pretrain.lincls", str(p), "--preset", "tiny", "--epochs", "1"))
    assert "torchvision.models.resnet.ResNet" in line


def test_an_official_checkpoint_still_loads(tmp_path):
    enc = torchvision.models.resnet18(num_classes=128)
    torch.save({"epoch": 200, "arch": "resnet18",
                "state_dict": {f"module.encoder_q.{k}": v for k, v in enc.state_dict().items()},
                "optimizer": torch.optim.SGD(enc.parameters(), lr=0.03, momentum=0.9).state_dict()},
               tmp_path / "moco.pth.tar")
    ck = C.load(tmp_path / "moco.pth.tar")
    assert set(C.query_encoder_state(ck)) == set(enc.state_dict())


# -- outputs that destroy inputs ---------------------------------------------------------------------------

def test_refuse_overwrite_sees_symlinks_and_hard_links(tmp_path):
    src = tmp_path / "in.pth"
    src.write_bytes(b"x")
    (tmp_path / "sym").symlink_to(src)
    os.link(src, tmp_path / "hard")
    for out in (src, tmp_path / "sym", tmp_path / "hard", tmp_path / "." / "in.pth"):
        assert same_file(out, src)
        with pytest.raises(UserError, match="is the input"):
            refuse_overwrite([out], [src])
    refuse_overwrite([tmp_path / "new.json"], [src], ours=lambda p: False)      # a new file: fine
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a file this command writes"):
        refuse_overwrite([tmp_path / "notes.txt"], [src], ours=lambda p: False)
    refuse_overwrite([tmp_path / "notes.txt"], [src], ours=lambda p: True)


def test_lincls_export_convert_never_replace_their_input(trained, tmp_path):
    d, _ = trained
    ck = d / "checkpoint.pth"
    before = ck.read_bytes()
    (tmp_path / "link.pth").symlink_to(ck)
    assert "is the input" in _one_error(_cli("pretrain.lincls", str(ck), "--epochs", "1", "--output", str(ck)))
    assert "is the input" in _one_error(_cli("pretrain.lincls", str(ck), "--epochs", "1", "--output",
                                             str(tmp_path / "link.pth")))
    assert "is the input" in _one_error(_cli("transfer.convert", str(ck), str(ck), "--no-verify"))
    assert "is the input" in _one_error(_cli("pretrain.export", str(ck), str(tmp_path / "link.pth")))
    assert ck.read_bytes() == before and (tmp_path / "link.pth").is_symlink()


def test_outputs_never_replace_a_users_file(trained, tmp_path):
    d, _ = trained
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    for args in (["pretrain.lincls", str(d / "checkpoint.pth"), "--epochs", "1", "--output", str(notes)],
                 ["pretrain.export", str(d / "checkpoint.pth"), str(notes)],
                 ["transfer.convert", str(d / "checkpoint.pth"), str(notes), "--no-verify"]):
        assert "not a file this command writes" in _one_error(_cli(*args))
    assert notes.read_text() == "mine"


def test_a_users_folder_is_not_a_run_directory(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.yaml").write_text("lr: 42\n")
    cfg = load_config("tiny", synthetic_overrides(epochs=1, max_steps=2))
    with pytest.raises(UserError, match="not a run directory"):
        run(cfg, mine, progress=False)
    assert sorted(p.name for p in mine.iterdir()) == ["config.yaml"]
    assert (mine / "config.yaml").read_text() == "lr: 42\n"
    assert not rundir.is_run_dir(mine) and rundir.is_run_dir(tmp_path / "missing")
    grid_dir = tmp_path / "grid"
    grid_dir.mkdir()
    (grid_dir / "job.json").write_text("{}")                   # the launcher records the job before it starts
    assert rundir.is_run_dir(grid_dir)


def test_an_existing_run_directory_resumes_and_reruns(trained):
    d, summary = trained
    assert (d / rundir.LOCK).exists()
    again = run(load_config("tiny", synthetic_overrides(epochs=1, max_steps=4)), d, progress=False)
    assert again["run_id"] == summary["run_id"] and again["knn_acc"] == summary["knn_acc"]


# -- results that are not what they say -------------------------------------------------------------------

def test_a_result_counts_only_for_its_protocol_and_checkpoint(trained, tmp_path):
    d, _ = trained
    lc = LinclsConfig(epochs=2, batch_size=64)
    out = tmp_path / "lincls.json"
    res = lincls(str(d / "checkpoint.pth"), lc, out=str(out), progress=False)
    assert res["lincls_config"] == {**vars(lc), "cache_features": True} and len(res["backbone"]) == 64
    assert result_for(out, lc, d / "checkpoint.pth") == res
    assert result_for(out, LinclsConfig(epochs=2, batch_size=64, cache_features=True)) == res
    assert result_for(out, LinclsConfig(epochs=2, batch_size=64, lr=0.1)) is None
    assert result_for(out, LinclsConfig()) is None
    other = tmp_path / "other.pth"                             # another backbone
    ck = C.load(d / "checkpoint.pth")
    ck["state_dict"] = {k: v + 1 if v.is_floating_point() else v for k, v in ck["state_dict"].items()}
    torch.save(ck, other)
    assert result_for(out, lc, other) is None
    hand = tmp_path / "hand.json"
    hand.write_text(json.dumps({"lincls_acc1": 99.9, "lincls_acc5": 100.0, "epochs": 2, "lr": 30.0}))
    assert result_for(hand, lc) is None


def test_the_grid_row_never_reads_a_hand_written_result(trained):
    from ablations.rows import lincls_result, row_from_run_dir
    d, summary = trained
    RunDir(d).lincls.write_text(json.dumps({"lincls_acc1": 99.9, "lincls_acc5": 100.0, "epochs": 1, "lr": 0.1}))
    try:
        cfg = load_config("tiny", synthetic_overrides(epochs=1, max_steps=4))
        row = row_from_run_dir("g", "tiny", summary["run_id"], d, cfg)
        assert row["status"] == "done" and "lincls_acc1" not in row
        assert lincls_result(d, cfg) is None
    finally:
        RunDir(d).lincls.unlink()


def test_knn_of_a_checkpoint_is_the_runs_own(trained):
    d, summary = trained
    r = _cli("pretrain.knn", "--checkpoint", str(d / "checkpoint.pth"), "--threads", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    m = re.search(r"checkpoint\.pth, .*?: ([0-9.]+)%", r.stdout)
    assert m and float(m.group(1)) == round(summary["knn_acc"], 2), r.stdout

"""The one home for file writes (pretrain/base/fileio.py) and for a run directory's file names (RunDir)."""
import re
import subprocess

import pytest

from pretrain.base import fileio, provenance
from pretrain.base.rundir import RunDir


def test_atomic_path_replaces_only_after_the_check_and_leaves_no_temp(tmp_path):
    out = tmp_path / "a.pkl"
    out.write_bytes(b"old")

    def refuse(tmp):
        assert tmp.read_bytes() == b"new" and out.read_bytes() == b"old"     # checked before the rename
        raise ValueError("bad file")
    with pytest.raises(ValueError, match="bad file"):
        fileio.atomic_write_bytes(out, b"new", check=refuse)
    assert out.read_bytes() == b"old" and fileio.stale_temps(tmp_path) == []
    fileio.atomic_write_bytes(out, b"new", check=lambda tmp: None)
    assert out.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.pkl"]
    with fileio.atomic_path(tmp_path / "fig.png", suffix=".png") as tmp:
        assert tmp.name.startswith(".fig.png.") and tmp.name.endswith(".tmp.png")   # matplotlib reads the suffix
        tmp.write_bytes(b"png")
    assert (tmp_path / "fig.png").read_bytes() == b"png"


def test_a_killed_writer_leaves_a_temp_that_stale_temps_finds(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with fileio.atomic_path(tmp_path / "checkpoint.pth") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert fileio.stale_temps(tmp_path) == [] and not (tmp_path / "checkpoint.pth").exists()
    (tmp_path / ".checkpoint.pth.abc123.tmp").write_bytes(b"x")      # what kill -9 leaves (no finally ran)
    (tmp_path / ".fig.png.abc123.tmp.png").write_bytes(b"x")
    assert [p.name for p in fileio.stale_temps(tmp_path)] == [".checkpoint.pth.abc123.tmp",
                                                               ".fig.png.abc123.tmp.png"]


def test_atomic_dir_swaps_a_whole_folder(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with fileio.atomic_dir(out) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("generation failed")
    assert [p.name for p in out.iterdir()] == ["old.txt"] and len(list(tmp_path.iterdir())) == 1
    with fileio.atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"] and len(list(tmp_path.iterdir())) == 1


def test_one_git_sha_format(tmp_path):
    sha = provenance.git_sha()
    if (provenance.REPO / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", sha), sha
    else:                                                            # an unpacked archive
        assert sha == "unknown"
    assert provenance.git_sha(tmp_path) == "unknown"                 # not a checkout


def test_dirty_means_the_suites_code_changed(tmp_path):
    """An edit to a test or a script leaves a result's commit clean; an edit to the code computing it does not."""
    def git(*a):
        subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)
    for f in ("pretrain/x.py", "tests/test_x.py", "scripts/s.py"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("a = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    clean = provenance.git_sha(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{12}", clean)
    (tmp_path / "tests/test_x.py").write_text("a = 2\n")
    (tmp_path / "scripts/s.py").write_text("a = 2\n")
    assert provenance.git_sha(tmp_path) == clean
    (tmp_path / "pretrain/x.py").write_text("a = 2\n")
    assert provenance.git_sha(tmp_path) == clean + "-dirty"


def test_one_provenance_stamp():
    """host, commit and UTC time of a result, in one format wherever a row or summary is written."""
    st = provenance.stamp()
    assert list(st) == ["host", "git_sha", "finished_at"]
    assert st["host"] == provenance.host() and st["git_sha"] == provenance.git_sha()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", st["finished_at"]), st["finished_at"]


def test_run_dir_names_its_files(tmp_path):
    r = RunDir(tmp_path)
    assert [p.name for p in (r.config, r.checkpoint, r.metrics, r.summary, r.lincls, r.job, r.error_log)] == [
        "config.yaml", "checkpoint.pth", "metrics.jsonl", "summary.json", "lincls.json", "job.json", "error.log"]
    assert r.read_summary() is None and r.epochs_logged() == 0
    r.metrics.write_text('{"epoch": 1}\n{"epoch": 2}\n')
    r.summary.write_text('{"status": "diverged"}')
    assert r.epochs_logged() == 2 and r.read_summary() == {"status": "diverged"}
    kept = r.set_aside_summary("diverged", 123)
    assert kept.name == "summary.diverged.123.json" and not r.summary.exists()

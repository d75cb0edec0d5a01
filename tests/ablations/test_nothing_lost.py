"""Nothing lost, nothing trained twice: one owner per run directory, state-free dry runs, a results
table that is refused rather than rewritten, stale temp files cleaned, clear one-line errors for broken files."""
import json
import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import PY, ROOT, synthetic_overrides
from conftest_ablations import write_grid, wait_until
from ablations import launcher as L
from ablations import submission as SUB
from ablations import results
from ablations.__main__ import main as ablations_cli
from ablations.job import GridJob
from pretrain.base import rundir
from pretrain.__main__ import main as cli
from pretrain.config import load_config
from pretrain.base.errors import UserError
from pretrain.engine.lifecycle import run

FAST = synthetic_overrides(epochs=1, max_steps=2)


def args_of(d):
    out = []
    for k, v in d.items():
        out += ["--" + k.replace("_", "-"), str(v)]
    return out


def hold_lock(run_dir: Path, seconds: float = 60) -> subprocess.Popen:
    """Another process that owns ``run_dir`` (as a live run does) until killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from pretrain.base import rundir
        with rundir.lock({str(run_dir)!r}):
            print("held", flush=True)
            time.sleep({seconds})
    """)
    p = subprocess.Popen([PY, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


# -- a run directory has one owner -------------------------------------------------------------------------------
def test_second_process_on_a_held_run_directory_is_one_error_and_touches_nothing(tmp_path, capsys):
    owner = hold_lock(tmp_path)
    try:
        assert "pid" in (rundir.owner(tmp_path) or "") and str(owner.pid) in rundir.owner(tmp_path)
        with pytest.raises(SystemExit) as e:
            cli(["--preset", "tiny", *args_of(FAST), "--output", str(tmp_path), "--no-progress"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"is in use by pid {owner.pid}" in err
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]          # no config.yaml, no checkpoint
    finally:
        owner.kill()
        owner.wait()
    assert rundir.owner(tmp_path) is None                     # the kernel drops the lock of a killed owner
    assert cli(["--preset", "tiny", *args_of(FAST), "--output", str(tmp_path), "--no-progress"]) == 0


def test_two_real_runs_on_one_output_one_trains_one_refused(tmp_path, env):
    """The user's case: two `python -m pretrain` on one --output, started 0.5 s apart."""
    argv = [PY, "-m", "pretrain", "--preset", "tiny", *args_of(synthetic_overrides(epochs=30)),
            "--output", str(tmp_path / "r"), "--no-progress"]
    a = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: rundir.owner(tmp_path / "r"), 60, "the first run to take the lock", poll_s=0.1)
    b = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    _, a_err = a.communicate(timeout=300)
    assert a.returncode == 0, a_err[-2000:]
    assert b.returncode == 2 and "is in use by pid" in b.stderr and "Traceback" not in b.stderr
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["status"] == "done" and s["epochs_done"] == 30


def test_lock_is_reentrant_in_one_process_and_released(tmp_path):
    with rundir.lock(tmp_path):
        with rundir.lock(tmp_path):                 # a grid job holds it around run(), which takes it again
            assert "this process" in rundir.owner(tmp_path)
        assert "this process" in rundir.owner(tmp_path)
    assert rundir.owner(tmp_path) is None


def test_relaunched_grid_skips_a_run_another_process_trains(tmp_path, monkeypatch, capsys):
    """A killed launcher's job still trains: the relaunch sees the owner and does not submit the run again."""
    gfile = write_grid(tmp_path / "g.yaml", "t_owner", [{"moco_m": [0.99]}])
    monkeypatch.setenv("MOCOBENCH_RESULTS", str(tmp_path / "results.csv"))
    monkeypatch.setenv("MOCOBENCH_SUBMITIT", str(tmp_path / "submitit"))
    _, planned = L.plan(str(gfile), "tiny", tmp_path / "runs")
    owner = hold_lock(planned[0].run_dir)
    try:
        _, planned = L.plan(str(gfile), "tiny", tmp_path / "runs")
        assert planned[0].state == "running" and f"pid {owner.pid}" in planned[0].note
        rc = ablations_cli(["run", str(gfile), "--preset", "tiny", "--executor", "debug", "--runs-dir",
                            str(tmp_path / "runs")])
        out = capsys.readouterr().out
        assert rc == 0 and "nothing to submit" in out and "running" in out
        assert not (planned[0].run_dir / "summary.json").exists()           # not trained by the relaunch
    finally:
        owner.kill()
        owner.wait()


def test_a_job_whose_run_another_process_holds_waits_and_takes_its_result(tmp_path, monkeypatch):
    """A grid launched twice 1 s apart: the second job waits for the first and trains nothing."""
    gfile = write_grid(tmp_path / "g.yaml", "t_twice", [{"moco_m": [0.99]}])
    _, planned = L.plan(str(gfile), "tiny", tmp_path / "runs")
    p = planned[0]
    res = str(tmp_path / "results.csv")
    job = GridJob("t_twice", "tiny", p.cfg, str(p.run_dir), p.spec.eval, res, "sha", p.run_id)
    code = textwrap.dedent("""
        import pickle, sys
        job = pickle.loads(bytes.fromhex(sys.argv[1]))
        print(job()["status"], flush=True)
    """)
    import pickle
    first = subprocess.Popen([PY, "-c", code, pickle.dumps(job).hex()], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wait_until(lambda: rundir.owner(p.run_dir), 60, "the first job to own the run", poll_s=0.05)
    from pretrain.engine import lifecycle as T

    def no_training(*a, **k):
        raise AssertionError("the second job trained the run again")
    monkeypatch.setattr(T.Trainer, "__init__", no_training)
    t = time.monotonic()
    row = GridJob("t_twice", "tiny", p.cfg, str(p.run_dir), p.spec.eval, res, "sha", p.run_id)()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0 and out.strip() == "done", err[-2000:]
    assert row["status"] == "done" and time.monotonic() - t > 0.5
    s = json.loads((p.run_dir / "summary.json").read_text())
    assert row["knn_acc"] == s["knn_acc"] and row["run_id"] == p.run_id
    df = results.read(res)
    assert len(df) == 1 and df["status"].tolist() == ["done"]


# -- dry runs change nothing ---------------------------------------------------------------------------------------
def test_dry_run_with_retry_failed_keeps_the_failed_summary(tmp_path, monkeypatch):
    gfile = write_grid(tmp_path / "g.yaml", "t_dry", [{"moco_m": [0.0]}])
    monkeypatch.setenv("MOCOBENCH_RESULTS", str(tmp_path / "results.csv"))
    _, planned = L.plan(str(gfile), "tiny", tmp_path / "runs")
    d = planned[0].run_dir
    d.mkdir(parents=True)
    cfg = load_config("tiny", planned[0].spec.overrides)
    from pretrain.config import eval_settings
    summary = {"status": "diverged", "reason": "diverged: loss is nan", "run_id": planned[0].run_id,
               "eval": eval_settings(cfg)}
    (d / "summary.json").write_text(json.dumps(summary))
    before = sorted(p.name for p in d.iterdir())
    rc = ablations_cli(["run", str(gfile), "--preset", "tiny", "--executor", "local", "--dry-run",
                        "--no-bench", "--retry-failed", "--runs-dir", str(tmp_path / "runs")])
    assert rc == 0 and sorted(p.name for p in d.iterdir()) == before
    assert json.loads((d / "summary.json").read_text()) == summary
    assert not (tmp_path / "results.csv").exists()
    # submitting sets it aside (kept, renamed), so the job trains it again
    _, planned = L.plan(str(gfile), "tiny", tmp_path / "runs", retry_failed=True)
    assert planned[0].retry_failed and planned[0].state == "todo"
    SUB.set_aside_failed(planned[0])
    assert not (d / "summary.json").exists() and len(list(d.glob("summary.diverged.*.json"))) == 1


# -- the results table is refused, never rewritten ---------------------------------------------------------------
def test_results_path_that_is_not_a_results_table_is_refused_untouched(tmp_path, monkeypatch, capsys):
    foo = tmp_path / "foo.csv"
    foo.write_text("foo,bar\n1,2\n")
    with pytest.raises(UserError, match=r"foo.csv is not a mocobench results table \(unknown column\(s\) foo, bar"):
        results.upsert([{"grid": "g", "run_id": "a" * 12, "status": "done"}], foo)
    monkeypatch.setenv("MOCOBENCH_RESULTS", str(foo))
    gfile = write_grid(tmp_path / "g.yaml", "t_foo", [{"moco_m": [0.99]}])
    rc = ablations_cli(["run", str(gfile), "--preset", "tiny", "--executor", "debug", "--runs-dir",
                        str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "is not a mocobench results table" in err
    assert foo.read_text() == "foo,bar\n1,2\n" and not (tmp_path / "runs").exists()     # nothing trained


@pytest.mark.parametrize("content,what", [
    (b"\x80\x81\xfe" * 50, "UnicodeDecodeError"),
    (b"grid,run_id,status,knn_acc\ng,abc,finished??,70\n", "line 2: status 'finished??'"),
    (b"grid,run_id,status,knn_acc\ng,abc,done,seventy\n", "line 2: knn_acc is 'seventy', not a number"),
    (b"grid,run_id\ng,abc\n", "no status column"),
])
def test_corrupt_or_garbage_results_are_one_line(tmp_path, content, what):
    p = tmp_path / "r.csv"
    p.write_bytes(content)
    with pytest.raises(UserError, match="is not a mocobench results table") as e:
        results.read(p)
    assert what in str(e.value)
    r = subprocess.run([PY, "-m", "reports", "--quiet", "--results", str(p), "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and what in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o" / "index.html").exists()
    assert p.read_bytes() == content


def test_reports_refuse_a_csv_without_the_results_columns(tmp_path):
    p = tmp_path / "foo.csv"
    p.write_text("foo,bar\n1,2\n")
    r = subprocess.run([PY, "-m", "reports", "--quiet", "--results", str(p), "--out", str(tmp_path / "o")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "unknown column(s) foo, bar" in r.stderr and not (tmp_path / "o").exists()


def test_unwritable_results_table_is_one_line_before_any_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOCOBENCH_RESULTS", "/proc/mocobench/results.csv")
    gfile = write_grid(tmp_path / "g.yaml", "t_ro", [{"moco_m": [0.99]}])
    rc = ablations_cli(["run", str(gfile), "--preset", "tiny", "--executor", "debug", "--runs-dir",
                        str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "/proc/mocobench/results.csv" in err
    assert not (tmp_path / "runs").exists()
    with pytest.raises(UserError, match="cannot write the results table"):
        results.upsert([{"grid": "g", "run_id": "a" * 12, "status": "done"}], "/proc/mocobench/results.csv")


def test_older_table_without_new_columns_still_reads(tmp_path):
    p = tmp_path / "old.csv"
    p.write_text("grid,run_id,status,reason,moco_m,knn_acc\ntable1_momentum,abc,failed,diverged: loss is nan,0.0,10.0\n")
    df = results.read(p)
    assert df.loc[0, "status"] == "diverged" and float(df.loc[0, "knn_acc"]) == 10.0 and "knn_init" in df


# -- stale temp files --------------------------------------------------------------------------------------------
def test_stale_checkpoint_temp_is_removed_on_start(tmp_path):
    cfg = load_config("tiny", synthetic_overrides(epochs=2, max_steps=2))
    run(cfg, tmp_path, progress=False)
    (tmp_path / "summary.json").unlink()
    stale = tmp_path / ".checkpoint.pth.k1ll3d.tmp"          # what kill -9 during atomic_save leaves
    stale.write_bytes(b"\0" * 1_000_000)
    assert run(cfg, tmp_path, progress=False)["status"] == "done"
    assert not stale.exists() and (tmp_path / "checkpoint.pth").is_file()


def test_stale_results_temp_is_removed_by_the_next_writer(tmp_path):
    p = tmp_path / "results.csv"
    stale = tmp_path / ".results.csv.99999.tmp"
    stale.write_text("half a table")
    results.upsert([{"grid": "g", "run_id": "a" * 12, "status": "done"}], p)
    assert not stale.exists() and len(results.read(p)) == 1


# -- clear errors instead of tracebacks --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["file", "under_a_file", "proc"])
def test_output_that_cannot_be_a_run_directory_is_one_line(tmp_path, kind, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    out = {"file": f, "under_a_file": f / "run", "proc": Path("/proc/mocobench/run")}[kind]
    with pytest.raises(SystemExit) as e:
        cli(["--preset", "tiny", *args_of(FAST), "--output", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and str(out) in err
    assert f.read_text() == "x"


def test_checkpoint_without_rng_is_one_line(tmp_path, capsys):
    cfg = load_config("tiny", synthetic_overrides(epochs=2, max_steps=2))
    run(cfg, tmp_path, progress=False)
    (tmp_path / "summary.json").unlink()
    ck = torch.load(tmp_path / "checkpoint.pth", weights_only=False)
    ck.pop("rng")
    ck["epoch"] = 1
    torch.save(ck, tmp_path / "checkpoint.pth")
    with pytest.raises(SystemExit) as e:
        cli(["--preset", "tiny", *args_of(synthetic_overrides(epochs=2, max_steps=2)), "--output", str(tmp_path),
             "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "no 'rng'" in err


def test_truncated_summary_under_resume_is_one_line(tmp_path, capsys):
    cfg = load_config("tiny", FAST)
    run(cfg, tmp_path, progress=False)
    s = (tmp_path / "summary.json").read_text()
    (tmp_path / "summary.json").write_text(s[: len(s) // 2])
    with pytest.raises(SystemExit) as e:
        cli(["--preset", "tiny", *args_of(FAST), "--output", str(tmp_path), "--resume", "--no-progress"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "summary.json: unreadable summary" in err


def test_wall_time_of_earlier_launches_is_kept_on_resume(tmp_path):
    """The cost table counts a preempted run's earlier launches: wall_s continues from the checkpoint's."""
    run(load_config("tiny", synthetic_overrides(epochs=1, max_steps=2)), tmp_path, progress=False)
    (tmp_path / "summary.json").unlink()
    ck = torch.load(tmp_path / "checkpoint.pth", weights_only=False)
    ck["history"][0]["wall_s"] = 1000.0                     # as if the first launch had taken 1000 s
    torch.save(ck, tmp_path / "checkpoint.pth")
    s = run(load_config("tiny", synthetic_overrides(epochs=2, max_steps=2)), tmp_path, progress=False)
    hist = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert hist[0]["wall_s"] == 1000.0 and 1000.0 < hist[1]["wall_s"] < 1000.0 + 120
    assert s["wall_s"] == hist[1]["wall_s"] and s["epochs_done"] == 2

"""Untrusted input to the grid launcher and its results table: each bad input is one ``error:`` line and exit
code 2 before anything is submitted (grid-file typos, malformed flags, a sweep that expands to nothing, the
``MOCOBENCH_*`` paths naming the wrong kind of file), a table reached through a link is written where the link
points, a cut-off last line and a run's repeated rows are never counted, and Ctrl-C of a local grid is one
``interrupted:`` line and exit code 130 with its jobs stopped and resumable."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/ helpers, any import mode
from conftest_ablations import REPO  # noqa: E402

from ablations import results  # noqa: E402
from ablations.grid import expand, load_grid  # noqa: E402
from pretrain.base.errors import UserError  # noqa: E402

pytestmark = pytest.mark.timeout(300)
# the cheapest tiny run (a few seconds): scripts/hostile_common.py SHORT as grid values
TINY = "{epochs: 1, max_steps: 2, subset: 512, moco_k: 256, knn_subset: 256, threads: 1}"


def _grid(tmp_path: Path, sweep="  - moco_m: [0.99]\n", preset="{}", extra="", name="ga") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\n{extra}sweep:\n{sweep}fixed: {TINY}\nseeds: 1\npresets:\n  tiny: {preset}\n")
    return p


def _env(tmp_path: Path, **kw) -> dict:
    return {**os.environ, "MOCOBENCH_RUNS": str(tmp_path / "runs"), "MOCOBENCH_RESULTS": str(tmp_path / "results.csv"),
            "MOCOBENCH_SUBMITIT": str(tmp_path / "submitit"), "PYTHONWARNINGS": "ignore", **kw}


def _cli(tmp_path, *argv, env=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "ablations", *argv], cwd=REPO, env=env or _env(tmp_path),
                          capture_output=True, text=True, timeout=timeout)


def _refused(r, *words) -> str:
    """Exit code 2, stderr exactly one ``error:`` line (no traceback), naming ``words``."""
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _debug_run(tmp_path, grid, env=None):
    r = _cli(tmp_path, "run", str(grid), "--preset", "tiny", "--executor", "debug", env=env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return r


# -- the results table -------------------------------------------------------------------------------------------
def test_a_table_reached_through_a_link_is_written_where_the_link_points(tmp_path):
    shared = tmp_path / "shared" / "results.csv"
    shared.parent.mkdir()
    shared.write_text("grid,run_id,status,knn_acc\nother,0123456789ab,done,70.5\n")
    link = tmp_path / "link.csv"
    link.symlink_to(shared)
    _debug_run(tmp_path, _grid(tmp_path), env=_env(tmp_path, MOCOBENCH_RESULTS=str(link)))
    assert link.is_symlink() and link.resolve() == shared.resolve()
    rows = _rows(shared)
    assert {r["grid"] for r in rows} == {"other", "ga"} and len(rows) == 2
    assert not list(tmp_path.glob(".link.csv.*")) and not (tmp_path / "link.csv.lock").exists()  # beside the target


def test_a_cut_off_last_line_is_no_result_and_the_next_write_repairs_it(tmp_path, capsys):
    table = tmp_path / "torn.csv"
    # a writer killed mid-row: "..., done, 4096, 71.2" cut after the first digit of K
    table.write_text("grid,run_id,status,moco_k,knn_acc\n"
                     "table1_momentum,aaaaaaaaaaaa,done,4096,71.2\n"
                     "table1_momentum,bbbbbbbbbbbb,done,4")
    df = results.read(table)
    assert list(df["run_id"]) == ["aaaaaaaaaaaa"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "cut off" in err[0]
    # the same with a newline but a short row (a second writer appended the newline), and a cut quoted field
    for torn in ("table1_momentum,bbbbbbbbbbbb,done,4\n", 'table1_momentum,bbbbbbbbbbbb,done,4096,"7'):
        table.write_text("grid,run_id,status,moco_k,knn_acc\ntable1_momentum,aaaaaaaaaaaa,done,4096,71.2\n" + torn)
        assert list(results.read(table)["run_id"]) == ["aaaaaaaaaaaa"]
    assert capsys.readouterr().err.count("warning: ") == 2
    table.write_text("grid,run_id,status,moco_k,knn_acc\n"
                     "table1_momentum,aaaaaaaaaaaa,done,4096,71.2\n"
                     "table1_momentum,bbbbbbbbbbbb,done,4")
    r = _debug_run(tmp_path, _grid(tmp_path), env=_env(tmp_path, MOCOBENCH_RESULTS=str(table)))
    assert "Traceback" not in r.stderr
    assert sum(ln.startswith("warning: ") for ln in r.stderr.splitlines()) == 1      # once per process
    text = table.read_text()
    assert text.endswith("\n") and "bbbbbbbbbbbb" not in text
    assert {r["run_id"] for r in _rows(table)} >= {"aaaaaaaaaaaa"} and len(_rows(table)) == 2
    # a complete table is read without a warning
    results.read(table)
    assert capsys.readouterr().err == ""


def test_a_runs_repeated_rows_count_once_and_the_next_write_keeps_one(tmp_path, capsys):
    table = tmp_path / "dup.csv"
    table.write_text("grid,run_id,status,moco_m,seed,knn_acc\n"
                     "table1_momentum,aaaaaaaaaaaa,done,0.99,0,71.2\n"
                     "table1_momentum,aaaaaaaaaaaa,done,0.99,0,72.0\n"
                     "fig3_mechanisms,aaaaaaaaaaaa,done,0.99,0,72.0\n"      # the same run in another grid: its own row
                     "table1_momentum,cccccccccccc,done,0.9,0,60.0\n"
                     "table1_momentum,cccccccccccc,pending,0.9,0,\n")       # a later non-result never replaces a result
    df = results.read(table)
    assert len(df) == 3
    t1 = df[df["grid"] == "table1_momentum"].set_index("run_id")
    assert float(t1.at["aaaaaaaaaaaa", "knn_acc"]) == 72.0                   # the last row
    assert t1.at["cccccccccccc", "status"] == "done"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: ") and "more than one row" in err[0]
    results.upsert([{"grid": "table1_momentum", "run_id": "aaaaaaaaaaaa", "status": "done", "knn_acc": 73.0}],
                   table, key=("grid", "run_id"))
    rows = [r for r in _rows(table) if r["grid"] == "table1_momentum"]
    assert sorted(r["run_id"] for r in rows) == ["aaaaaaaaaaaa", "cccccccccccc"]
    assert [float(r["knn_acc"]) for r in rows if r["run_id"] == "aaaaaaaaaaaa"] == [73.0]


def test_the_report_reads_the_table_through_the_same_reader(tmp_path, capsys):
    from reports.data import load_results
    table = tmp_path / "dup.csv"
    table.write_text("grid,run_id,status,mechanism,moco_m,seed,knn_acc\n"
                     "table1_momentum,aaaaaaaaaaaa,done,moco,0.99,0,71.2\n"
                     "table1_momentum,aaaaaaaaaaaa,done,moco,0.99,0,72.0\n"
                     "table1_momentum,bbbbbbbbbbbb,done,moco,0.9,0,6")
    df = load_results(table).df
    assert list(df["run_id"]) == ["aaaaaaaaaaaa"]


# -- grid files --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset,sweep,words", [
    ("{drop_k_above: subst}", None, ["drop_k_above", "'subst'"]),
    ("{drop: {moco_m: 0.99}}", None, ["drop must be a list"]),
    ("{drop: [moco_m]}", None, ["drop[0]", "mapping"]),
    ("{map: {epochs: 5}}", None, ["map: epochs", "mapping"]),
    ("{eval: [knn, linear]}", None, ["unknown eval linear"]),
    ("{seeds: 0}", None, ["seeds"]),
    ("{}", "  - moco_m: []\n", ["sweep[0]: moco_m", "empty list"]),
    ("{}", "  - zip: {moco_k: [256, 512], batch_size: [256]}\n", ["equal lengths"]),
    ("{}", "  - zip: {moco_k: 256}\n", ["zip: moco_k", "list"]),
    ("{}", "  - moco_m\n", ["sweep[0]", "mapping"]),
    ("{drop: [{moco_m: 0.99}]}", None, ["nothing would run", "drop"]),
])
def test_a_grid_file_typo_is_one_error_line(tmp_path, preset, sweep, words):
    g = _grid(tmp_path, preset=preset, **({"sweep": sweep} if sweep else {}))
    r = _cli(tmp_path, "run", str(g), "--preset", "tiny", "--executor", "local", "--dry-run", "--no-bench")
    _refused(r, *words)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results.csv").exists()


def test_eval_as_one_name_is_a_list_of_that_name():
    """``eval: lincls`` is ``[lincls]`` (as a single value in a sweep is a list of one), never split into letters."""
    from ablations.grid import check_grid
    g = {"name": "g", "eval": "lincls", "sweep": [{"moco_m": 0.99}], "presets": {"tiny": {"eval": "knn"}}}
    check_grid(g, "g.yaml")
    assert g["eval"] == ["lincls"] and g["presets"]["tiny"]["eval"] == ["knn"]
    with pytest.raises(UserError, match="unknown eval knn, lincls"):
        check_grid({**g, "eval": "knn, lincls"}, "g.yaml")


def test_eval_as_one_name_runs_the_linear_protocol(tmp_path):
    g = _grid(tmp_path, extra="eval: lincls\n")
    [spec] = expand(load_grid(str(g)), "tiny")
    assert spec.eval == ["knn", "lincls"]


def test_the_paper_grids_pass_the_schema():
    from ablations.grid import grid_names
    for n in grid_names():
        g = load_grid(n)
        for p in g["presets"]:
            assert expand(g, p, seeds=1)


# -- flags ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,words", [
    (["--set", "moco_k=[256"], ["--set moco_k", "not a YAML value"]),
    (["--parallel", "0"], ["--parallel", ">= 1", "got 0"]),
    (["--parallel", "-2"], ["--parallel", "got -2"]),
    (["--time", "0"], ["--time"]),
    (["--mem-gb", "nan"], ["--mem-gb"]),
    (["--max-wait-min", "-1"], ["--max-wait-min", "> 0"]),
    (["--max-wait-min", "nan"], ["--max-wait-min"]),
    (["--seeds", "x"], ["--seeds"]),
])
def test_a_bad_flag_is_one_error_line(tmp_path, argv, words):
    r = _cli(tmp_path, "run", str(_grid(tmp_path)), "--preset", "tiny", "--executor", "local", *argv)
    _refused(r, *words)
    assert not (tmp_path / "submitit").exists() and not (tmp_path / "results.csv").exists()


def test_a_bad_profile_value_is_one_error_line(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text("parallel: -1\n")
    r = _cli(tmp_path, "run", str(_grid(tmp_path)), "--preset", "tiny", "--executor", "local", "--profile", str(prof))
    _refused(r, "parallel")


# -- environment ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("var,kind", [("MOCOBENCH_RUNS", "file"), ("MOCOBENCH_SUBMITIT", "file"),
                                      ("MOCOBENCH_RESULTS", "dir"), ("MOCOBENCH_RUNS", "under a file"),
                                      ("MOCOBENCH_RESULTS", "under a file")])
def test_a_mocobench_path_of_the_wrong_kind_names_the_variable(tmp_path, var, kind):
    f = tmp_path / "thing"
    if kind == "dir":
        f.mkdir()
        target = f
    else:
        f.write_text("a file\n")
        target = f / "x" if kind == "under a file" else f
    r = _cli(tmp_path, "run", str(_grid(tmp_path)), "--preset", "tiny", "--executor", "local",
             env=_env(tmp_path, **{var: str(target)}))
    _refused(r, f"${var}")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "submitit").exists()
    if kind != "dir":
        assert f.read_text() == "a file\n"


def test_the_report_names_a_results_variable_that_is_a_folder(tmp_path):
    d = tmp_path / "dir"
    d.mkdir()
    r = subprocess.run([sys.executable, "-m", "reports", "--out", str(tmp_path / "out")], cwd=REPO,
                       env=_env(tmp_path, MOCOBENCH_RESULTS=str(d)), capture_output=True, text=True, timeout=240)
    _refused(r, "$MOCOBENCH_RESULTS")


# -- Ctrl-C --------------------------------------------------------------------------------------------------------
def _job_processes(tag: str) -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                if tag in (p / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def test_ctrl_c_of_a_local_grid_is_one_line_exit_130_and_the_grid_resumes(tmp_path):
    """Ctrl-C in a terminal: SIGINT to the foreground process group (the launcher, submitit's controllers and
    their tasks). The launcher stops the jobs and says so in one line; no traceback of submitit's controller
    reaches the terminal; nothing trains on; no row says 'running'; the next run trains the grid."""
    g = _grid(tmp_path, sweep="  - moco_m: [0.99, 0.9]\n")
    env = _env(tmp_path)
    argv = [sys.executable, "-m", "ablations", "run", str(g), "--preset", "tiny", "--executor", "local",
            "--parallel", "2"]
    p = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    t0 = time.monotonic()
    try:
        while len(list((tmp_path / "submitit").rglob("*_submitted.pkl"))) < 2 and time.monotonic() - t0 < 60:
            assert p.poll() is None, p.communicate()
            time.sleep(0.1)
        time.sleep(1.0)
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and "ga (local)" not in ln]  # tqdm's bar
    assert len(lines) == 1 and lines[0].startswith("interrupted: ") and "cancelled" in lines[0], err
    assert _job_processes(str(tmp_path / "submitit")) == []                 # nothing trains on
    statuses = {r["status"] for r in _rows(tmp_path / "results.csv")}
    assert "running" not in statuses, statuses
    r = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(r["status"] for r in _rows(tmp_path / "results.csv")) == ["done", "done"]

"""Hostile inputs against the grid launcher (``python -m ablations``) and its results table: a table reached
through a symbolic link, a table whose last line was cut off mid-row, a run's row written twice, grid-file
typos, malformed ``--set`` values and launch flags, a sweep that expands to nothing, ``eval`` as one name, the
``MOCOBENCH_*`` folders pointing at the wrong kind of file, and Ctrl-C of a local grid. Merged into
``scripts/hostile_inputs.py``'s cases; each runs the real command in a scratch folder, so the same cases measure
an older checkout too (``--repo``)."""
from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from hostile_common import PY, Ctx, _res, refused


def _grid(c: Ctx, name="ga", sweep="  - moco_m: [0.99]\n", preset="{}", extra="") -> Path:
    """A one-run grid of the cheapest tiny config (a few seconds with the debug executor)."""
    p = c.tmp / f"{name}.yaml"
    p.write_text(f"name: {name}\n{extra}sweep:\n{sweep}fixed: {{epochs: 1, max_steps: 2, subset: 512, moco_k: 256, "
                 f"knn_subset: 256, threads: 1}}\nseeds: 1\npresets:\n  tiny: {preset}\n")
    return p


def _ablations(c: Ctx, *argv, env=None, timeout=600):
    return c.run(["-m", "ablations", *argv], env=env, timeout=timeout)


def _dry(c: Ctx, grid: Path, *extra, env=None):
    return _ablations(c, "run", str(grid), "--preset", "tiny", "--executor", "local", "--dry-run", "--no-bench",
                      *extra, env=env)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _planned(r) -> str:
    n = sum(1 for ln in r.stdout.splitlines() if re.match(r"^\s+[0-9a-f]{12}\s+todo\s", ln))
    return {0: f"{n} run(s) planned", 2: "refused"}.get(r.returncode, "crashed")


# -- the results table -----------------------------------------------------------------------------------------
def results_symlink(c: Ctx):
    shared = c.tmp / "shared" / "results.csv"
    shared.parent.mkdir()
    shared.write_text("grid,run_id,status,knn_acc\nother,0123456789ab,done,70.5\n")
    link = c.tmp / "link.csv"
    link.symlink_to(shared)
    r = _ablations(c, "run", str(_grid(c)), "--preset", "tiny", "--executor", "debug",
                   env={"MOCOBENCH_RESULTS": str(link)})
    rows = _rows(shared)
    kept = "link kept" if link.is_symlink() else "link REPLACED by a file"
    return _res(r, f"{kept}; shared table has {len(rows)} row(s) "
                   f"({'the run in it' if any(x['grid'] == 'ga' for x in rows) else 'the run NOT in it'})")


def results_torn_line(c: Ctx):
    table = c.tmp / "torn.csv"
    # a writer killed mid-row: "..., done, 4096, 71.2" cut after the 4th field's first digit
    table.write_text("grid,run_id,status,moco_k,knn_acc\n"
                     "table1_momentum,aaaaaaaaaaaa,done,4096,71.2\n"
                     "table1_momentum,bbbbbbbbbbbb,done,4")
    r = _ablations(c, "run", str(_grid(c)), "--preset", "tiny", "--executor", "debug",
                   env={"MOCOBENCH_RESULTS": str(table)})
    rows = _rows(table)
    torn = [x for x in rows if x["run_id"] == "bbbbbbbbbbbb"]
    state = (f"torn row KEPT as a {torn[0]['status']} run (K = {torn[0]['moco_k']})" if torn
             else "torn row dropped")
    return _res(r, f"{state}; {'ends with a newline' if table.read_text().endswith(chr(10)) else 'final newline MISSING'}")


def results_duplicate_rows(c: Ctx):
    table = c.tmp / "dup.csv"
    table.write_text("grid,run_id,status,moco_m,seed,knn_acc\n"
                     "table1_momentum,aaaaaaaaaaaa,done,0.99,0,71.2\n"
                     "table1_momentum,aaaaaaaaaaaa,done,0.99,0,72.0\n")
    r = _ablations(c, "run", str(_grid(c)), "--preset", "tiny", "--executor", "debug",
                   env={"MOCOBENCH_RESULTS": str(table)})
    n = sum(x["run_id"] == "aaaaaaaaaaaa" for x in _rows(table))
    return _res(r, f"the run has {n} row(s) after the write" + (" (counted TWICE as two seeds)" if n > 1 else ""))


# -- grid files ---------------------------------------------------------------------------------------------------
def grid_drop_k_above_typo(c: Ctx):
    r = _dry(c, _grid(c, preset="{drop_k_above: subst}"))
    return refused(r, _planned(r))


def grid_drop_not_a_list(c: Ctx):
    r = _dry(c, _grid(c, preset="{drop: {moco_m: 0.99}}"))
    return refused(r, _planned(r))


def grid_sweep_empty_list(c: Ctx):
    r = _dry(c, _grid(c, sweep="  - moco_m: []\n"))
    return refused(r, _planned(r))


def grid_everything_dropped(c: Ctx):
    r = _dry(c, _grid(c, preset="{drop: [{moco_m: 0.99}]}"))
    return refused(r, _planned(r))


def grid_eval_string(c: Ctx):
    g = _grid(c, extra="eval: lincls\n")
    r = _ablations(c, "run", str(g), "--preset", "tiny", "--executor", "debug")
    lin = list((c.tmp / "runs").glob("ga/tiny/*/lincls.json"))
    return _res(r, "linear protocol ran (eval [knn, lincls])" if lin else "linear protocol NOT run")


# -- flags ---------------------------------------------------------------------------------------------------------
def set_malformed_yaml(c: Ctx):
    r = _dry(c, _grid(c), "--set", "moco_k=[256")
    return refused(r, _planned(r))


def parallel_zero(c: Ctx):
    r = _dry(c, _grid(c), "--parallel", "0")
    return refused(r, _planned(r))


def parallel_negative(c: Ctx):
    r = _dry(c, _grid(c), "--parallel", "-2")
    return refused(r, _planned(r))


def max_wait_negative(c: Ctx):
    r = _ablations(c, "run", str(_grid(c)), "--preset", "tiny", "--executor", "local", "--max-wait-min", "-1")
    sub = list((c.tmp / "submitit").rglob("*_submitted.pkl"))
    return refused(r, f"{len(sub)} job(s) SUBMITTED" if sub else "nothing submitted")


# -- environment -----------------------------------------------------------------------------------------------
def env_runs_is_file(c: Ctx):
    f = c.tmp / "runs-file"
    f.write_text("not a folder\n")
    r = _ablations(c, "run", str(_grid(c)), "--preset", "tiny", "--executor", "debug", env={"MOCOBENCH_RUNS": str(f)})
    return refused(r, "file untouched" if f.read_text() == "not a folder\n" else "file CHANGED")


def env_results_is_dir(c: Ctx):
    d = c.tmp / "results-dir"
    d.mkdir()
    r = _ablations(c, "run", str(_grid(c)), "--preset", "tiny", "--executor", "debug",
                   env={"MOCOBENCH_RESULTS": str(d)})
    runs = list((c.tmp / "runs").glob("ga/tiny/*/summary.json"))
    return refused(r, f"{len(runs)} run(s) trained, {'names' if 'MOCOBENCH_RESULTS' in r.stderr else 'does NOT name'} "
                   f"the variable")


def env_submitit_is_file(c: Ctx):
    f = c.tmp / "submitit-file"
    f.write_text("not a folder\n")
    r = _ablations(c, "run", str(_grid(c)), "--preset", "tiny", "--executor", "local",
                   env={"MOCOBENCH_SUBMITIT": str(f)})
    res = c.tmp / "results.csv"
    pending = sum(x["status"] == "pending" for x in _rows(res)) if res.exists() else 0
    return refused(r, f"{pending} pending row(s) LEFT in the table" if pending else "table untouched")


# -- Ctrl-C ----------------------------------------------------------------------------------------------------
def _job_processes(tag: str) -> int:
    """Processes whose command line names ``tag`` (submitit's controllers and tasks name their folder)."""
    n = 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and p.name != str(os.getpid()):
            try:
                if tag in (p / "cmdline").read_bytes().decode(errors="replace"):
                    n += 1
            except OSError:
                pass
    return n


def ctrl_c_local_grid(c: Ctx):
    """Ctrl-C in a terminal: SIGINT to the whole foreground process group (the launcher, submitit's
    controllers and their tasks), while two local runs train."""
    g = _grid(c, sweep="  - moco_m: [0.99, 0.9]\n")
    p = subprocess.Popen([PY, "-m", "ablations", "run", str(g), "--preset", "tiny", "--executor", "local",
                          "--parallel", "2"], cwd=c.repo, env=c.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    t0 = time.monotonic()
    while not list((c.tmp / "submitit").rglob("*_submitted.pkl")) and time.monotonic() - t0 < 120 \
            and p.poll() is None:
        time.sleep(0.2)
    time.sleep(2.0)
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=120)
    time.sleep(2.0)
    left = _job_processes(str(c.tmp / "submitit"))
    res = c.tmp / "results.csv"
    running = sum(x["status"] == "running" for x in _rows(res)) if res.exists() else 0
    r = subprocess.CompletedProcess(p.args, p.returncode, out, err)
    row = _res(r, ", ".join(f"{n} {w}" for w, n in (("job process(es) LEFT", left),
                                                     ("stale 'running' row(s) LEFT", running)) if n)
               or "no job process left, no 'running' row")
    if p.returncode != 130:
        row["check"] = f"exit {p.returncode} NOT 130; {row['check']}"
    return row


CASES = {f.__name__: f for f in (results_symlink, results_torn_line, results_duplicate_rows, grid_drop_k_above_typo,
                                 grid_drop_not_a_list, grid_sweep_empty_list, grid_everything_dropped,
                                 grid_eval_string, set_malformed_yaml, parallel_zero, parallel_negative,
                                 max_wait_negative, env_runs_is_file, env_results_is_dir, env_submitit_is_file,
                                 ctrl_c_local_grid)}

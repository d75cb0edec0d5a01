"""Submit a grid's planned runs with submitit and wait for them: one SLURM job array, or local processes a
few at a time; a job that dies records an ``error`` row (no result; retried by the next run). Each submitted
run is a :class:`Submitted` (the planned run, its job once started, the callable, the executor)."""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pretrain.base import provenance
from pretrain.base import status as S
from pretrain.base.fileio import atomic_write_json
from pretrain.base.rundir import RunDir

from . import results
from .executors import make_executor
from .job import GridJob
from .launcher import Planned
from .rows import base_row, record_error, row_from_run_dir


@dataclass
class Submitted:
    """One run handed to an executor: started (``job`` set) at once on SLURM, as slots free up locally."""
    planned: Planned
    job: Any                   # the submitit job, None until started
    fn: GridJob                # what the job runs
    executor: Any


def record_existing(grid: dict, preset: str, planned: list[Planned], results_path=None) -> None:
    """Put finished runs (done, diverged, not_converged) and pending ones into the results table."""
    df = results.read(results_path)
    have = {(str(g), str(r)): st for g, r, st in zip(df["grid"], df["run_id"], df["status"])}
    rows = []
    for p in planned:
        known = have.get((grid["name"], p.run_id))
        if p.state in S.RESULTS and p.row and known != p.state:
            rows.append(p.row)
        elif p.state == S.TO_DO:
            rows.append({**base_row(grid["name"], preset, p.run_id, p.run_dir, p.cfg), "status": S.PENDING})
    if rows:
        results.upsert(rows, results_path, key=("grid", "run_id"))


def submit(grid: dict, preset: str, planned: list[Planned], kind: str, params: dict, folder: Path,
           results_path=None) -> list[Submitted]:
    """Submit the runs to do: on SLURM one job array (``executor.batch``); locally ``parallel`` jobs at a time
    (a laptop has no scheduler: the rest are started by :func:`wait_all` as slots free up).
    Returns one :class:`Submitted` per run."""
    todo = [p for p in planned if p.state == S.TO_DO]
    if not todo:
        return []
    results_path = str(results_path or results.default_path())
    sha = provenance.git_sha()
    ex = make_executor(kind, folder, params, name=f"{grid['name']}-{Path(preset).stem}")
    out = []
    for p in todo:
        p.run_dir.mkdir(parents=True, exist_ok=True)
        set_aside_failed(p)
        fn = GridJob(grid["name"], preset, p.cfg, str(p.run_dir), p.spec.eval, results_path, sha, p.run_id)
        out.append(Submitted(p, None, fn, ex))
    if kind == "slurm":
        with ex.batch():
            jobs = [ex.submit(h.fn) for h in out]
        for h, j in zip(out, jobs):
            h.job = j
            _record_job(h.planned, kind, j, folder)
    elif kind == "local":
        for h in out[:max(params.get("parallel") or 1, 1)]:
            _start(h, kind, folder)
    else:
        for h in out:
            _start(h, kind, folder)
    return out


def set_aside_failed(p: Planned) -> None:
    """``--retry-failed``: move a diverged / not_converged run's summary.json aside (kept as
    ``summary.<status>.<time>.json``) so that its job trains it again; only at submission, never in a dry run."""
    if not p.retry_failed:
        return
    st = S.from_summary(RunDir(p.run_dir).read_summary())
    if st in (S.DIVERGED, S.NOT_CONVERGED):
        RunDir(p.run_dir).set_aside_summary(st, int(time.time()))


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while waiting for a grid's jobs, after :func:`wait_all` stopped (local) or left (SLURM) them; the
    message says what became of each run, for the CLI's one ``interrupted:`` line."""


def _start(h: Submitted, kind: str, folder: Path) -> None:
    if kind == "local":
        with _stderr_to(Path(folder) / "controller.err"):
            h.job = h.executor.submit(h.fn)
    else:
        h.job = h.executor.submit(h.fn)
    _record_job(h.planned, kind, h.job, folder)


@contextmanager
def _stderr_to(path: Path):
    """File descriptor 2 redirected to ``path`` while submitit starts a local job's controller, which inherits
    it: the controller is submitit's own process (its tasks log to the job's files), and when a Ctrl-C (or
    :meth:`LocalJob.cancel`) stops it, it dies with a KeyboardInterrupt traceback that belongs in the job's
    folder, not on the user's terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    saved = os.dup(2)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def _record_job(p: Planned, kind: str, job, folder: Path) -> None:
    atomic_write_json(RunDir(p.run_dir).job, {"executor": kind, "job_id": str(job.job_id), "folder": str(folder),
                                               "submitted_at": provenance.utc_now()})


def _job_failed_row(grid: dict, preset: str, p: Planned, reason: str) -> dict:
    """The row of a job that died (killed, out of memory, node failure, ...): status error, not a result;
    the next `ablations run` submits it again and it resumes from its last checkpoint."""
    s = record_error(p.run_dir, p.run_id, reason, S.LOST)
    return {**base_row(grid["name"], preset, p.run_id, p.run_dir, p.cfg), "status": S.ERROR,
            "error_kind": s["error_kind"], "reason": reason[:500], **provenance.stamp()}


def _reason(exc: BaseException) -> str:
    """First line of the error (what happened), and its last line (the job's last words) if different."""
    lines = [" ".join(ln.split()) for ln in str(exc).strip().splitlines() if ln.strip() and set(ln.strip()) != {"-"}]
    if not lines:
        return type(exc).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0][:200]} | {lines[-1][:250]}"


def wait_all(grid: dict, preset: str, submitted: list, kind: str, params: dict, max_wait_s: float,
             results_path=None, poll_s: float = 2.0, progress: bool = True) -> list[dict]:
    """Wait (at most ``max_wait_s``) for the submitted runs; a job that dies records an error row.
    Returns the final rows. Raises TimeoutError listing the runs still unfinished."""
    deadline = time.monotonic() + max_wait_s
    rows: dict[str, dict] = {}
    bar = tqdm(total=len(submitted), desc=f"{grid['name']} ({kind})", unit="run", disable=not progress,
               file=sys.stderr)

    def collect(p: Planned, job) -> None:
        try:
            row = job.results()[0]          # task 0 = global rank 0 (a DDP job has one result per task)
        except (RuntimeError, OSError, ValueError) as e:
            # the job died (killed, out of memory, node failure: submitit's UncompletedJobError / FailedJobError,
            # RuntimeErrors; the debug executor re-raises the job's own error): that is its result
            row = _job_failed_row(grid, preset, p, f"job {job.job_id}: {_reason(e)}")
            results.upsert([row], results_path, key=("grid", "run_id"))
        rows[p.run_id] = row or row_from_run_dir(grid["name"], preset, p.run_id, p.run_dir, p.cfg) or {}
        bar.update(1)
        bar.set_postfix_str(f"{p.run_id} {rows[p.run_id].get('status', '?')}")

    parallel = max(params.get("parallel") or 1, 1) if kind == "local" else len(submitted)
    pending = list(submitted)
    try:
        _wait_loop(pending, kind, parallel, deadline, max_wait_s, poll_s, bar, collect)
    except KeyboardInterrupt:
        bar.close()
        raise Interrupted(_interrupted(grid, preset, pending, kind, len(rows), results_path)) from None
    bar.close()
    return list(rows.values())


def _wait_loop(pending: list, kind: str, parallel: int, deadline: float, max_wait_s: float, poll_s: float, bar,
               collect) -> None:
    """Start jobs as slots free up (local) and collect each one as it finishes, until none is pending."""
    while pending:
        running = [h for h in pending if h.job is not None]
        for h in pending:
            if h.job is None and len(running) < parallel:
                _start(h, kind, Path(h.executor.folder))
                running.append(h)
        for h in list(running):
            try:
                finished = h.job.done()
            except (RuntimeError, OSError, ValueError):   # debug executor: done() runs the job; collect() records it
                finished = True
            if finished:
                pending.remove(h)
                collect(h.planned, h.job)
        if not pending:
            break
        if time.monotonic() > deadline:
            bar.close()
            if kind == "local":
                for h in pending:
                    if h.job is not None:
                        h.job.cancel(check=False)
                raise TimeoutError(f"{len(pending)} run(s) unfinished after {max_wait_s:.0f} s (cancelled)")
            raise TimeoutError(f"{len(pending)} run(s) unfinished after {max_wait_s:.0f} s: "
                               + ", ".join(f"{h.planned.run_id} (job {h.job.job_id})" for h in pending)
                               + "; they keep running, `python -m ablations status` follows them")
        time.sleep(poll_s)


def _interrupted(grid: dict, preset: str, pending: list, kind: str, finished: int, results_path=None) -> str:
    """Ctrl-C while waiting. Local jobs are cancelled: each controller stops its tasks (SIGINT, then SIGKILL)
    and is waited for, so nothing trains on after the launcher exits; a run killed mid-epoch resumes from its
    last epoch checkpoint (written atomically) when the grid is run again, and its row goes back to
    ``pending`` (never over a result). SLURM jobs keep running (the cluster owns them). Returns what happened,
    for the CLI's one line."""
    started = [h for h in pending if h.job is not None]
    waiting = len(pending) - len(started)
    if kind == "slurm":
        return (f"{finished} run(s) finished; {len(started)} keep running on SLURM (`python -m ablations status "
                f"{grid['name']}` follows them, scancel stops them); rerun the grid to collect them")
    if kind != "local":                   # the debug executor runs its job in this process: Ctrl-C stopped it
        started = []
    for h in started:
        h.job.cancel(check=False)
    for h in started:
        proc = getattr(h.job, "_process", None)
        if proc is not None:
            try:
                proc.wait(timeout=30)
            except Exception:  # noqa: BLE001 - still stopping: reported below as cancelled anyway
                pass
    rows = [{**base_row(grid["name"], preset, h.planned.run_id, h.planned.run_dir, h.planned.cfg),
             "status": S.PENDING} for h in pending]
    if rows:
        try:
            results.upsert(rows, results_path, key=("grid", "run_id"))
        except Exception:  # noqa: BLE001 - the table stays as the jobs left it; the next run rewrites the rows
            pass
    return (f"{finished} run(s) finished and recorded; {len(started)} cancelled and {waiting} not started "
            f"(rerun the grid: a cancelled run resumes from its last epoch checkpoint)")

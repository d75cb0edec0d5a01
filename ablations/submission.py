"""Submit a grid's planned runs with submitit and wait for them: one SLURM job array, or local processes a
few at a time; a job that dies records an ``error`` row (no result; retried by the next run). Each submitted
run is a :class:`Submitted` (the planned run, its job once started, the callable, the executor)."""
from __future__ import annotations

import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pretrain import status as S
from pretrain.fileio import atomic_write_json, git_sha
from pretrain.rundir import RunDir

from . import results
from .executors import make_executor
from .job import GridJob, base_row, record_error, row_from_run_dir
from .launcher import Planned


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
        elif p.state == "todo":
            rows.append({**base_row(grid["name"], preset, p.run_id, p.run_dir, p.cfg), "status": "pending"})
    if rows:
        results.upsert(rows, results_path, key=("grid", "run_id"))


def submit(grid: dict, preset: str, planned: list[Planned], kind: str, params: dict, folder: Path,
           results_path=None) -> list[Submitted]:
    """Submit the runs to do: on SLURM one job array (``executor.batch``); locally ``parallel`` jobs at a time
    (a laptop has no scheduler: the rest are started by :func:`wait_all` as slots free up).
    Returns one :class:`Submitted` per run."""
    todo = [p for p in planned if p.state == "todo"]
    if not todo:
        return []
    results_path = str(results_path or results.default_path())
    sha = git_sha()
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


def _start(h: Submitted, kind: str, folder: Path) -> None:
    h.job = h.executor.submit(h.fn)
    _record_job(h.planned, kind, h.job, folder)


def _record_job(p: Planned, kind: str, job, folder: Path) -> None:
    atomic_write_json(RunDir(p.run_dir).job, {"executor": kind, "job_id": str(job.job_id), "folder": str(folder),
                                               "submitted_at": _now()})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _job_failed_row(grid: dict, preset: str, p: Planned, reason: str) -> dict:
    """The row of a job that died (killed, out of memory, node failure, ...): status error, not a result;
    the next `ablations run` submits it again and it resumes from its last checkpoint."""
    s = record_error(p.run_dir, p.run_id, reason, "lost")
    return {**base_row(grid["name"], preset, p.run_id, p.run_dir, p.cfg), "status": "error",
            "error_kind": s["error_kind"], "reason": reason[:500], "host": socket.gethostname(),
            "finished_at": _now(), "git_sha": git_sha()}


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
    bar.close()
    return list(rows.values())

"""One grid run as a submitit job: pretrain (resuming from ``run_dir/checkpoint.pth``), evaluate (kNN, and the
linear protocol where the grid asks for it), and write the run's row into the results table.

The job is a submitit ``Checkpointable``: on preemption or time limit, submitit calls :meth:`GridJob.checkpoint`,
which resubmits the same callable; the requeued job calls ``pretrain.engine.lifecycle.run`` again, and that resumes from
the last epoch checkpoint (the pretrainer saves one atomically every epoch).
Multi-task jobs (one task per GPU) run DDP: every task calls the pretrainer, which joins the process group from
the torchrun variables exported here (or SLURM's), and only global rank 0 writes files and the results row.
"""
from __future__ import annotations

import dataclasses
import os
import traceback
from pathlib import Path

import submitit
import torch

from pretrain.base import rundir
from pretrain.base import status as S
from pretrain.base.errors import UserError
from pretrain.base.fileio import atomic_write_json, atomic_write_text
from pretrain.base.provenance import host, utc_now
from pretrain.base.rundir import RunDir
from pretrain.config import Config, config_hash
from pretrain.engine.lifecycle import run
from pretrain.eval import lincls
from pretrain.eval.protocol import for_dataset
from pretrain.runtime.distributed import export_torchrun_env, planned_world_size
from pretrain.runtime.launchenv import env_int

from . import results
from .rows import base_row, error_row, lincls_result, record_error, row_from_run_dir

# a job whose run directory another process holds (a grid launched twice, a relaunch while the killed launcher's
# job still trains) waits for that owner and then takes its result; the scheduler's time limit bounds the wait
LOCK_WAIT_S = 7 * 24 * 3600


def error_kind(exc: BaseException) -> str:
    """What kind of error stopped a run (stored as its own field, never parsed from the reason later):
    ``oom`` (CUDA out of memory), ``distributed`` (NCCL/gloo, a peer or node lost), ``user`` (bad config or
    data), ``crash`` (anything else)."""
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return S.OOM
    dist_errors = tuple(c for c in (getattr(torch.distributed, "DistError", None),) if c is not None)
    if (dist_errors and isinstance(exc, dist_errors)) or any(w in str(exc) for w in ("NCCL", "Gloo", "gloo")):
        return S.DISTRIBUTED
    if isinstance(exc, UserError):
        return S.USER
    return S.CRASH


def _dist_env_from_submitit() -> None:
    """Export torchrun's variables for a multi-task job (SLURM or the local executor)."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:
        return
    export_torchrun_env(env.global_rank, env.num_tasks, env.local_rank,
                        env.hostnames[0] if env.hostnames else "127.0.0.1", str(env.job_id))


class GridJob(submitit.helpers.Checkpointable):
    """Callable run by submitit for one planned run: the run's resolved config (``ablations.grid.expand``
    resolved it, the launcher hashed it to ``run_id``), trained as is; the job does not resolve it again."""

    def __init__(self, grid: str, preset: str, cfg: Config, run_dir: str, evals: list,
                 results_path: str, git_sha: str = "", run_id: str = ""):
        self.grid, self.preset, self.cfg = grid, preset, cfg
        self.run_dir, self.evals = str(run_dir), list(evals)
        self.results_path, self.git_sha, self.run_id = str(results_path), git_sha, run_id

    def __call__(self) -> dict:
        _dist_env_from_submitit()
        rank = env_int("RANK", 0)
        run_dir = Path(self.run_dir)
        cfg = self.cfg
        if not cfg.threads and os.environ.get("SLURM_CPUS_PER_TASK"):
            # a runtime key (not part of the config hash): the CPUs SLURM gave this task
            cfg = dataclasses.replace(cfg, threads=env_int("SLURM_CPUS_PER_TASK", 0, minimum=1))
        # The one deliberate re-check: the config hashes, in this process (this code, this number of
        # processes), to the run that was planned.
        run_id = config_hash(cfg, planned_world_size())
        row = base_row(self.grid, self.preset, run_id, run_dir, cfg)
        if self.run_id and run_id != self.run_id:
            # The code's run identity or the number of processes changed between submission and start: this
            # is not the planned run. Not a result: status error, retried by the next `ablations run`.
            if rank != 0:
                return {}
            row = {**base_row(self.grid, self.preset, self.run_id, run_dir, cfg), "status": S.ERROR,
                   "error_kind": S.CONFIG_CHANGED,
                   "reason": f"config changed since submission: the job's config hashes to {run_id}, the planned "
                             f"run is {self.run_id} (the code or the number of processes changed); rerun the "
                             f"grid", "host": host(), "finished_at": utc_now()}
            results.upsert([row], self.results_path, key=("grid", "run_id"))
            return row
        if rank == 0:
            results.upsert([{**row, "status": S.RUNNING, "host": host()}], self.results_path,
                           key=("grid", "run_id"))
        try:
            with rundir.lock(run_dir, rank, wait_s=LOCK_WAIT_S, on_wait=lambda who: print(
                    f"{run_dir} is in use by {who}: waiting for it (its result is taken, not trained again)",
                    flush=True)):
                self._run_locked(cfg, run_dir, rank)
        except (UserError, ValueError, RuntimeError, OSError) as e:
            # A crash (CUDA out of memory, NCCL, bad data or config) is no result: status error with its kind,
            # kept out of every table and verdict, and retried by the next `ablations run`. Anything else
            # (submitit's preemption and requeue among them) propagates: the job dies or is requeued, and the
            # launcher records a dead job as an error too.
            reason = f"{type(e).__name__}: {' '.join(str(e).split())}"[:500]
            if rank == 0:
                (run_dir).mkdir(parents=True, exist_ok=True)
                atomic_write_text(RunDir(run_dir).error_log, traceback.format_exc())
                record_error(run_dir, run_id, reason, error_kind(e))
        if rank != 0:
            return {}
        final = row_from_run_dir(self.grid, self.preset, run_id, run_dir, cfg) or \
            error_row(row, run_dir)
        final.setdefault("host", host())
        final.setdefault("finished_at", utc_now())
        if self.git_sha and not final.get("git_sha"):
            final["git_sha"] = self.git_sha
        results.upsert([final], self.results_path, key=("grid", "run_id"))
        return final

    def _run_locked(self, cfg, run_dir: Path, rank: int) -> None:
        """Pretrain (or take the finished result), then the linear protocol where the grid asks for it; the
        caller holds the run directory's lock for both."""
        summary = run(cfg, run_dir, resume=True, progress=False)
        # The linear protocol also runs on a run that did not converge (finite weights: its number stays
        # visible beside the "fail"), not on a diverged one (non-finite weights).
        evaluable = S.from_summary(summary) in (S.DONE, S.NOT_CONVERGED)
        if evaluable and "lincls" in self.evals and lincls_result(run_dir, cfg) is None:
            # every process of a multi-task job takes part (DDP at ImageNet scale); rank 0 writes the file
            res = self._lincls(cfg, run_dir)
            if rank == 0:
                atomic_write_json(RunDir(run_dir).lincls, res)

    @staticmethod
    def _lincls(cfg, run_dir: Path) -> dict:
        """The linear protocol (paper Sec. 4.1: frozen backbone, linear classifier; the dataset's protocol,
        ``pretrain.eval.protocol.for_dataset``), by all the job's processes (the ImageNet protocol runs under DDP)."""
        out = lincls.run(str(RunDir(run_dir).checkpoint), for_dataset(cfg.dataset), out=str(RunDir(run_dir).lincls),
                         progress=False,
                         device=cfg.device, timeout_min=cfg.dist_timeout_min)
        return {**out, "finished_at": utc_now()}

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """Preempted or out of time: requeue the same callable; it resumes from run_dir/checkpoint.pth."""
        return submitit.helpers.DelayedSubmission(GridJob(self.grid, self.preset, self.cfg, self.run_dir,
                                                          self.evals, self.results_path, self.git_sha,
                                                          self.run_id))

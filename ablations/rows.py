"""A grid run's rows in the results table, read from its run directory: the row of a finished run (summary.json,
plus the grid's linear protocol), the row and summary of a run stopped by an error. Torch-free: the planner
and the report read it."""
from __future__ import annotations

from pathlib import Path

from pretrain.base import status as S
from pretrain.base.fileio import atomic_write_json
from pretrain.base.provenance import host, utc_now
from pretrain.base.rundir import RunDir
from pretrain.config import Config
from pretrain.eval.protocol import for_dataset, result_for

from . import results

SWEPT_COLUMNS = [c for c in results.SWEPT]
METRIC_KEYS = ["loss", "pretext_acc1", "pretext_acc5", "knn_acc", "knn_init", "lincls_acc1", "lincls_acc5",
               "loss_osc", "loss_chance_share", "loss_drop", "loss_rise", "n_eval",
               "wall_s", "images_per_s", "peak_mem_mb", "step_time_s", "world_size", "host", "git_sha",
               "finished_at"]


def config_columns(cfg: Config) -> dict:
    """The results columns of a run's config: its swept keys as configured (``lr`` at ``lr_ref_batch``) and
    ``lr_effective``, the lr the run used (``lr_scaling: linear`` applied)."""
    d = {**cfg.to_dict(), "lr_effective": cfg.effective_lr}
    return {c: (",".join(map(str, d[c])) if isinstance(d[c], list) else d[c]) for c in SWEPT_COLUMNS if c in d}


def base_row(grid: str, preset: str, run_id: str, run_dir: Path, cfg: Config) -> dict:
    return {"grid": grid, "run_id": run_id, "preset": preset, "run_dir": str(run_dir), **config_columns(cfg),
            "eval_split": cfg.eval_split}


def row_from_run_dir(grid: str, preset: str, run_id: str, run_dir: Path, cfg: Config) -> dict | None:
    """The results row of a finished run (summary.json, plus lincls.json if it is the grid's linear protocol:
    :func:`lincls_result`), else None. The status is the summary's (an unsplit ``failed`` one mapped by
    ``pretrain.base.status.from_summary``)."""
    s = RunDir(run_dir).read_summary()
    status = S.from_summary(s)
    if status not in S.RESULTS:
        return None
    row = base_row(grid, preset, run_id, run_dir, cfg)
    row["status"], row["reason"] = status, s.get("reason") or ""
    for k in METRIC_KEYS:
        if s.get(k) is not None:
            row[k] = s[k]
    lin = lincls_result(run_dir, cfg)
    if lin:
        for k in ("lincls_acc1", "lincls_acc5"):
            if lin.get(k) is not None:
                row[k] = lin[k]
        row["lincls_protocol"] = lin.get("protocol", "sgd")
    return row


def lincls_result(run_dir, cfg: Config) -> dict | None:
    """The run's lincls.json if it is the grid's linear protocol for ``cfg``'s dataset
    (``pretrain.eval.protocol.for_dataset``: the converged probe on fixed-size datasets, main_lincls.py's SGD on
    ImageFolder) on ``cfg``'s evaluation split, computed from the run's checkpoint as it is
    (``pretrain.eval.protocol.result_for``), else None: a hand-written file or one of another protocol is neither read
    into the row nor taken as done (the protocol runs again)."""
    return result_for(RunDir(run_dir).lincls, for_dataset(cfg.dataset), RunDir(run_dir).checkpoint, cfg.eval_split)


def record_error(run_dir: Path, run_id: str, reason: str, kind: str) -> dict:
    """summary.json of a run stopped by an error (never over a finished result: done, diverged or
    not_converged)."""
    prev = RunDir(run_dir).read_summary()
    s = {"status": S.ERROR, "error_kind": kind, "reason": reason[:500], "run_id": run_id,
         "host": host(), "finished_at": utc_now()}
    if S.from_summary(prev) not in S.RESULTS:
        atomic_write_json(RunDir(run_dir).summary, s)
    return s


def error_row(row: dict, run_dir: Path) -> dict:
    s = RunDir(run_dir).read_summary() or {}
    if s.get("status") == S.ERROR:
        return {**row, "status": S.ERROR, "error_kind": s.get("error_kind", S.CRASH), "reason": s.get("reason", "")}
    return {**row, "status": S.ERROR, "error_kind": S.LOST, "reason": "no summary.json written"}

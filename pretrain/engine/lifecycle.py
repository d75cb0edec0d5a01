"""A run's lifecycle: ``run(cfg, run_dir)`` takes the run directory's lock, decides from a previous summary
whether the run is finished, to be re-evaluated or to be trained (or resumed), trains it with the
:class:`~pretrain.engine.trainer.Trainer`, applies the failure criteria and writes ``summary.json``. A crash
is never written as a result: only ``done``, ``diverged`` and ``not_converged`` are (:mod:`pretrain.base.status`).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pretrain.base import provenance, rundir
from pretrain.base import status as S
from pretrain.base.errors import Diverged, UserError
from pretrain.base.fileio import atomic_write_json, atomic_write_text
from pretrain.config import Config, config_hash, eval_settings, save_yaml
from pretrain.data.loaders import eval_loaders
from pretrain.engine.criteria import chance_loss, loss_rise, not_converged
from pretrain.engine.finished import finished_state
from pretrain.engine.trainer import Trainer, peak_mem_mb
from pretrain.eval.baselines import knn_random_init
from pretrain.runtime import distributed as D

KNN_RESULT_KEYS = ("knn_monitor", "knn_k", "knn_t", "knn_feature", "knn_subset")   # what the final kNN depends on


def summarize(cfg: Config, history: list, status: str, reason: str, wall_s: float, device, world: int,
              knn_init: float | None = None, n_eval: int | None = None) -> dict:
    """A run's ``summary.json``: its status and reason, identity, the last epoch's metrics, the final kNN, speed,
    memory, the device and the provenance stamp."""
    last = history[-1] if history else {}
    knn = [r["knn_acc"] for r in history if r.get("knn_acc") is not None]
    return {
        "status": status, "reason": reason, "run_id": config_hash(cfg, world), "world_size": world,
        "eval": eval_settings(cfg), "epochs_done": len(history),
        "loss": last.get("loss"), "chance_loss": chance_loss(cfg), "pretext_acc1": last.get("pretext_acc1"),
        "loss_osc": last.get("loss_osc"), "loss_chance_share": last.get("loss_chance_share"),
        "loss_drop": last.get("loss_drop"), "loss_rise": loss_rise(history), "n_eval": n_eval,
        "pretext_acc5": last.get("pretext_acc5"),
        "knn_acc": knn[-1] if knn else None, "knn_init": knn_init,
        "wall_s": wall_s,
        "images_per_s": float(np.mean([r["images_per_s"] for r in history])) if history else None,
        "step_time_s": float(np.mean([r["step_time_s"] for r in history])) if history else None,
        "peak_mem_mb": max([r["peak_mem_mb"] for r in history], default=peak_mem_mb(device)),
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else
        platform.processor() or platform.machine(),
        "torch": torch.__version__, "python": platform.python_version(), **provenance.stamp(),
    }


def _read_summary(path: Path) -> dict | None:
    try:
        s = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable summary ({' '.join(str(e).split())[:120]}); move it away to "
                        f"re-run the evaluation from the checkpoint") from None
    return s if isinstance(s, dict) else None


def run(cfg: Config, run_dir, resume: bool = True, progress: bool = True) -> dict:
    """Train ``cfg`` into ``run_dir`` (resuming from its checkpoint) and return the summary.

    A finished run is not trained again (its summary is returned); if only its evaluation settings changed
    (kNN monitor, the fail criteria) it is re-evaluated from its checkpoint (:func:`finished_state`). Status
    (``pretrain.base.status``): a non-finite loss ends the run ``diverged``, a declared criterion that fires
    (:func:`not_converged`) makes it ``not_converged``; both are results (the paper's "fail" for m = 0), not
    crashes. With ``fail_below_init`` the kNN of the random-init network is stored as ``knn_init``.
    """
    run_dir = Path(run_dir)
    rank = D.planned_rank()
    with rundir.lock(run_dir, rank):
        if rank == 0:
            rundir.clean_stale_temps(run_dir)           # a kill -9 during a checkpoint write left one
        return _run_locked(cfg, run_dir, resume, progress)


def _run_locked(cfg: Config, run_dir: Path, resume: bool, progress: bool) -> dict:
    files = rundir.RunDir(run_dir)
    summary_path = files.summary
    world = D.planned_world_size()
    rid = config_hash(cfg, world)
    finished = None
    if resume:
        prev = _read_summary(summary_path)
        state = finished_state(prev, cfg, rid)
        if state == "current":
            return prev
        if state == "relabel":
            prev = {**prev, "status": S.DIVERGED}
            if D.is_main():
                atomic_write_json(summary_path, prev)
            return prev
        if state == "reevaluate":
            finished = prev                          # same training, other evaluation: re-evaluate
    if not resume and files.checkpoint.exists():
        raise UserError(f"{run_dir} already holds a run; pass --resume to continue it or choose a new --output")
    t0 = time.time()
    trainer = Trainer(cfg, run_dir, progress)
    try:
        if resume:
            trainer.resume()
        if D.is_main():
            run_dir.mkdir(parents=True, exist_ok=True)
            save_yaml(cfg, files.config)
        trainer.t0 = t0
        status, reason, knn_init = S.DONE, "", None
        old_eval = {**eval_settings(Config()), **((finished or {}).get("eval") or {})}
        knn_same = finished is not None and all(old_eval[k] == getattr(cfg, k) for k in KNN_RESULT_KEYS)
        try:
            if finished is not None and trainer.start_epoch >= cfg.epochs and trainer.history:
                rec = trainer.history[-1]
                if not (knn_same and rec.get("knn_acc") is not None):
                    rec.pop("knn_acc", None)
                    if cfg.knn_monitor:
                        t = time.perf_counter()
                        rec["knn_acc"], rec["knn_seconds"] = trainer.knn(), time.perf_counter() - t
            else:
                finished = None
                trainer.fit()
        except Diverged as e:
            status, reason = S.DIVERGED, f"diverged: {e}"
        if status == S.DONE:
            if cfg.fail_below_init and cfg.knn_monitor:
                if finished is not None and knn_same and finished.get("knn_init") is not None:
                    knn_init = float(finished["knn_init"])
                else:
                    if trainer.eval_sets is None:
                        trainer.eval_sets = eval_loaders(cfg)
                    knn_init = knn_random_init(cfg, trainer.device, trainer.eval_sets)
            reason = not_converged(cfg, trainer.history, knn_init)
            status = S.NOT_CONVERGED if reason else status
        # the time of the finished epochs (their kNN included); a diverged run also counts its last, partial one
        wall = (trainer.history[-1]["wall_s"] if trainer.history and status != S.DIVERGED
                else trainer.wall_before + time.time() - t0)
        n_eval = len(trainer.eval_sets[1][1]) if trainer.eval_sets is not None else None
        summary = summarize(cfg, trainer.history, status, reason, wall, trainer.device, trainer.world, knn_init,
                            n_eval)
        if D.is_main():
            if finished is not None:
                trainer.save(len(trainer.history))           # the checkpoint's history gets the new kNN
            atomic_write_json(summary_path, summary)
            if status != S.DONE:
                atomic_write_text(files.metrics,
                                  "".join(json.dumps(r) + "\n" for r in trainer.history))
        if D.is_dist():
            torch.distributed.barrier()                   # no rank runs ahead of rank 0's last writes
        return summary
    finally:
        D.cleanup()

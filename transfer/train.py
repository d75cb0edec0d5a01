"""Fine-tune a (converted) MoCo backbone on PASCAL VOC or COCO with detectron2 and record the result.

    python -m transfer.train --config transfer/configs/pascal_voc_R_50_C4_24k_moco.yaml \\
        --weights runs/pretrain/X/checkpoint.pth [--trial 0] [--output DIR] [--num-gpus 8] \\
        [--eval-only] [--opts KEY VALUE ...]

The trainer is the official MoCo ``detection/train_net.py``: detectron2's ``DefaultTrainer`` with
``Res5ROIHeadsExtraNorm`` registered (paper appendix A.1), ``PascalVOCDetectionEvaluator`` for VOC
datasets and ``COCOEvaluator`` for COCO (``use_fast_impl=False``, so the pure-Python pycocotools
COCOeval is used; numbers are identical to the C++ one).

``--weights`` takes a detectron2 .pkl (``python -m transfer.convert``) or directly a pretrainer
checkpoint (``.pth``/``.pth.tar``), which is then converted (and verified) into
``OUTPUT/backbone.pkl`` first.

Devices: with CUDA, ``--num-gpus N`` uses detectron2's ``launch()`` (one process per GPU, SyncBN
across them; default: all visible GPUs).  Without CUDA, ``MODEL.DEVICE`` becomes ``cpu`` and the run
is one process (detectron2 v0.6's ``launch()`` is CUDA/NCCL-only).

Results (AP50, AP, AP75 of the boxes; ``APm`` = mask AP for COCO) become one row of the suite's
results table (``ablations.results``, grid ``transfer``, run_id = hash of the config's name and
content (with its ``_BASE_`` chain), options, the weights' path and content, and trial), with the mean seconds per training iteration in ``step_time_s``.  ``SEED`` defaults to
the trial number, so trials differ and reruns are reproducible.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import stat
import sys
import time
from pathlib import Path

from pretrain.base.fileio import atomic_write_json
from pretrain.base import provenance
from pretrain.base.errors import UserError, cli, report
from pretrain.base import status as S
from pretrain.base.provenance import REPO

from . import convert as conv
from .d2config import check_datasets, config_digest, load_cfg, task_of


# spawned launch() workers import this module before they unpickle detectron2 objects: make detectron2
# importable there. Only an import hook (transfer.compat): numpy and PIL are patched when detectron2 is
# imported, not when this module is.
from .compat import ensure_detectron2, install_import_hook  # noqa: E402
from ablations import results as results_table

install_import_hook()


_WEIGHTS_DIGESTS: dict = {}


def weights_digest(weights) -> str | None:
    """sha1 of a local weights file's bytes (cached by path, size and mtime); None for URLs,
    empty weights and what is no readable file (reported later, as the weights are loaded)."""
    if not weights or "://" in str(weights):
        return None
    try:
        st = os.stat(weights)
        key = (os.path.realpath(weights), st.st_size, st.st_mtime_ns)
        if stat.S_ISREG(st.st_mode) and key not in _WEIGHTS_DIGESTS:
            h = hashlib.sha1()
            with open(weights, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
            _WEIGHTS_DIGESTS[key] = h.hexdigest()
    except OSError:
        return None
    return _WEIGHTS_DIGESTS.get(key)


def run_id(config, opts, weights, trial, eval_only: bool = False) -> str:
    """12 hex chars identifying (config name and content with its _BASE_ chain, overrides, weights
    path and content, trial[, eval-only]): an edited config or a rewritten checkpoint is a new run,
    never one already done."""
    key = {"eval_only": True} if eval_only else {}
    key |= {"config": Path(config).name, "config_sha1": config_digest(config), "opts": list(opts),
            "weights": str(Path(weights).resolve()) if weights and "://" not in str(weights)
            else str(weights), "weights_sha1": weights_digest(weights), "trial": int(trial)}
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def build_trainer_class():

    ensure_detectron2()
    from detectron2.engine import DefaultTrainer, HookBase
    from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
    from detectron2.utils.events import CommonMetricPrinter, JSONWriter

    class StepTimer(HookBase):
        """Wall time of every training iteration (data loading included)."""

        def __init__(self):
            self.times = []

        def before_step(self):
            self._t0 = time.perf_counter()

        def after_step(self):
            self.times.append(time.perf_counter() - self._t0)

    class Trainer(DefaultTrainer):
        """Official MoCo detection trainer (VOC / COCO evaluators), plus a step timer."""

        @classmethod
        def build_evaluator(cls, cfg, dataset_name, output_folder=None):
            if output_folder is None:
                output_folder = os.path.join(cfg.OUTPUT_DIR, "inference")
            if "coco" in dataset_name:
                return COCOEvaluator(dataset_name, output_dir=output_folder, use_fast_impl=False)
            if "voc" not in dataset_name:
                raise UserError(f"no evaluator for dataset {dataset_name!r} (names must contain "
                                "'voc' or 'coco')")
            return PascalVOCDetectionEvaluator(dataset_name)

        def build_hooks(self):
            hooks = super().build_hooks()
            self.step_timer = StepTimer()
            return [self.step_timer] + hooks

        def build_writers(self):
            writers = [CommonMetricPrinter(self.max_iter),
                       JSONWriter(os.path.join(self.cfg.OUTPUT_DIR, "metrics.json"))]
            try:  # TensorBoard (a pinned dependency; an environment without it still trains)
                import tensorboard  # noqa: F401
                from detectron2.utils.events import TensorboardXWriter
                writers.append(TensorboardXWriter(self.cfg.OUTPUT_DIR))
            except ImportError:
                pass
            return writers

    return Trainer


def _metrics(results: dict) -> dict:
    box = results.get("bbox", {}) if results else {}
    out = {k: float(box[k]) for k in ("AP50", "AP", "AP75") if k in box}
    if results and "segm" in results and "AP" in results["segm"]:
        out["APm"] = float(results["segm"]["AP"])
    return out


def _worker(cfg, resume: bool, eval_only: bool, result_file: str | None):
    """One detectron2 process (rank); rank 0 writes the evaluation results to ``result_file``."""
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.engine import default_setup
    from detectron2.utils import comm

    from . import datasets, modeling  # noqa: F401  (spawned workers import afresh)

    default_setup(cfg, argparse.Namespace(config_file="", eval_only=eval_only, resume=resume))
    Trainer = build_trainer_class()
    t0 = time.perf_counter()
    step_times = []
    if eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS,
                                                                             resume=resume)
        results = Trainer.test(cfg, model)
    else:
        trainer = Trainer(cfg)
        trainer.resume_or_load(resume=resume)
        trainer.train()
        results = getattr(trainer, "_last_eval_results", None)
        step_times = trainer.step_timer.times
    if comm.is_main_process() and result_file:
        out = {"results": {k: dict(v) for k, v in (results or {}).items()},
               "step_times": step_times, "wall_s": time.perf_counter() - t0}
        atomic_write_json(result_file, out)
    return results


def run(config, weights=None, trial: int = 0, output=None, opts=(), num_gpus=None,
        eval_only: bool = False, resume: bool = False, results_path=None) -> dict:
    """Fine-tune and evaluate; returns the results row written to the results table."""

    opts = [str(o) for o in opts]
    cfg = load_cfg(config, opts)
    weights = weights if weights is not None else cfg.MODEL.WEIGHTS
    if weights in ("", None) and not Path(config).stem.endswith("scratch"):
        raise UserError(f"{Path(config).name}: MODEL.WEIGHTS is empty; pass --weights (or use a "
                        "*_scratch config for random initialization)")
    if weights == "See Instructions":
        raise UserError(f"{Path(config).name} needs --weights (a .pkl from `python -m "
                        "transfer.convert`, or a pretrainer checkpoint.pth)")
    check_datasets(cfg, eval_only)
    rid = run_id(config, opts, weights, trial, eval_only)
    out_dir = Path(output) if output else REPO / "runs" / "transfer" / rid
    out_dir.mkdir(parents=True, exist_ok=True)

    if weights and "://" not in str(weights):
        if not Path(weights).is_file():
            raise UserError(f"weights not found: {weights}")
        if not str(weights).endswith(".pkl"):  # a pretrainer checkpoint: convert it first
            try:
                obj = conv.load_checkpoint(weights)
                # declared, or recognised from the weights: the converter's rule (transfer.arch)
                arch = conv.encoder_arch(obj, str(weights))
            except conv.ConvertError as e:
                raise UserError(str(e))
            if conv.DEPTHS[arch] != cfg.MODEL.RESNETS.DEPTH:
                raise UserError(f"{weights} is a {arch}, {Path(config).name} builds ResNet-"
                                f"{cfg.MODEL.RESNETS.DEPTH} (add --opts MODEL.RESNETS.DEPTH "
                                f"{conv.DEPTHS[arch]})")
            res = conv.convert(obj, str(weights))
            pkl = out_dir / "backbone.pkl"

            def check(tmp):  # backbone.pkl is only written once detectron2 loads it cleanly
                chk = conv.verify(tmp, config, cfg.MODEL.RESNETS.DEPTH)
                if chk["unused"] or chk["missing"] or chk["mismatched"]:
                    raise UserError(f"converted {weights} does not load cleanly into {Path(config).name}")

            conv.write_pkl(res, pkl, check)
            weights_d2 = str(pkl)
        else:
            weights_d2 = str(weights)
    else:
        weights_d2 = str(weights or "")

    import torch

    if num_gpus is None:
        num_gpus = torch.cuda.device_count()
    if not torch.cuda.is_available() or cfg.MODEL.DEVICE == "cpu":
        if cfg.MODEL.DEVICE != "cpu":
            print("no CUDA: MODEL.DEVICE cpu, one process", file=sys.stderr)
        cfg.MODEL.DEVICE = "cpu"
        num_gpus = 0
    cfg.MODEL.WEIGHTS = weights_d2
    cfg.OUTPUT_DIR = str(out_dir)
    if cfg.SEED < 0:
        cfg.SEED = int(trial)
    cfg.freeze()

    base = {"grid": "transfer", "run_id": rid, "run_dir": str(out_dir), "task": task_of(cfg),
            "config": Path(config).name, "weights": str(weights), "trial": int(trial),
            "host": provenance.host(), "arch": f"resnet{cfg.MODEL.RESNETS.DEPTH}",
            "seed": int(cfg.SEED), "batch_size": int(cfg.SOLVER.IMS_PER_BATCH),
            "lr": float(cfg.SOLVER.BASE_LR)}
    results_table.upsert([{**base, "status": S.RUNNING}], results_path)
    result_file = str(out_dir / "transfer_results.json")
    t0 = time.perf_counter()
    try:
        if num_gpus > 1:
            from detectron2.engine import launch
            launch(_worker, num_gpus, args=(cfg, resume, eval_only, result_file),
                   dist_url="auto")
        else:
            _worker(cfg, resume, eval_only, result_file)
        with open(result_file) as f:
            out = json.load(f)
    except BaseException as e:
        reason = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        # a crash is no result: status error (kept out of every table and verdict), its kind its own field
        kind = S.OOM if "out of memory" in reason.lower() else (S.USER if isinstance(e, UserError) else S.CRASH)
        results_table.upsert([{**base, "status": S.ERROR, "error_kind": kind, "reason": reason}], results_path)
        raise
    metrics = _metrics(out["results"])
    steps = out["step_times"]
    row = {**base, **metrics, "status": S.DONE, "reason": "",
           "wall_s": round(time.perf_counter() - t0, 3),
           "step_time_s": round(sum(steps[1:]) / len(steps[1:]), 4) if len(steps) > 1
           else (round(steps[0], 4) if steps else None),
           "git_sha": provenance.git_sha(), "finished_at": provenance.utc_now()}
    if not metrics:
        row.update(status=S.ERROR, error_kind=S.CRASH, reason="evaluation produced no box AP")
    results_table.upsert([row], results_path)
    return row


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m transfer.train",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="transfer/configs/*.yaml")
    p.add_argument("--weights", default=None,
                   help="detectron2 .pkl or pretrainer checkpoint.pth (default: the config's)")
    p.add_argument("--trial", type=int, default=0, help="trial index (the paper averages 5)")
    p.add_argument("--output", default=None, help="output dir (default runs/transfer/<run_id>)")
    p.add_argument("--num-gpus", type=int, default=None, help="default: all visible GPUs")
    p.add_argument("--eval-only", action="store_true")
    p.add_argument("--resume", action="store_true", help="resume from OUTPUT/last_checkpoint")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                   help="detectron2 config overrides: KEY VALUE ...")
    a = p.parse_args(argv)
    try:
        row = run(a.config, a.weights, a.trial, a.output, a.opts, a.num_gpus, a.eval_only, a.resume)
    except (UserError, ImportError) as e:
        return report(e)
    print(json.dumps({k: row.get(k) for k in ("run_id", "status", "task", "AP50", "AP", "AP75",
                                              "APm", "step_time_s", "wall_s")}))
    return 0 if row["status"] == S.DONE else 1


if __name__ == "__main__":
    sys.exit(main())

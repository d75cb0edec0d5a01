"""The pretraining loop: ``run(cfg, run_dir)``.

Step order as the official ``main_moco.py`` + ``builder.py``: (augment,) query forward, momentum update of
the key encoder, (shuffle,) key forward, logits, enqueue; then backward and the SGD step of the query encoder.
Everything needed to continue (both encoders, queue/bank, optimizer, epoch, every RNG, the metrics so far) is
checkpointed atomically every epoch; a resumed CPU run ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import platform
import random
import resource
import socket
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from . import data
from . import distributed as D
from .augment import BatchedAugment, TwoCrops, pil_transform
from .builder import accuracy_t, build_pretrainer, info_nce
from .checkpoint import FORMAT, load, rng_state, set_rng_state
from .fileio import atomic_save, atomic_write_json, atomic_write_text, git_sha
from . import rundir
from . import status as S
from .config import Config, config_hash, eval_settings, resume_mismatch, save_yaml
from .errors import Diverged, UserError
from .knn import eval_loaders, knn_accuracy
from .schedule import lr_at
from .shuffle_bn import resolve_mode


def seed_all(seed: int, epoch: int, rank: int) -> int:
    """Reseed every RNG at the start of an epoch (a resumed run draws exactly the same numbers)."""
    s = (seed * 1_000_003 + epoch * 7919 + rank * 104_729) % (2 ** 31)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s)
    return s


#: per-step losses kept in an epoch's record (metrics.jsonl, the checkpoint): at most this many, as block means
STEP_LOSS_POINTS = 500


def loss_stats(step_loss: list, chance: float) -> dict:
    """An epoch's per-step training losses, summarised for the paper's "fail" ("the training loss oscillates and
    fails to converge", MoCo Sec. 4.1):

    - ``loss_osc``: the step-to-step variability, RMS of successive differences / sqrt 2 (nats; for independent
      noise of standard deviation s around a smooth curve it is s, and a slow trend barely moves it);
    - ``loss_chance_share``: the share of steps whose loss is at or above the chance level ln(1 + negatives);
    - ``loss_drop``: mean of the epoch's first tenth of steps minus mean of its last tenth (> 0: still falling).
    """
    x = np.asarray(step_loss, dtype=float)
    if len(x) < 2:
        return {"loss_osc": None, "loss_chance_share": None, "loss_drop": None}
    tenth = max(1, len(x) // 10)
    return {"loss_osc": float(np.sqrt(np.mean(np.diff(x) ** 2) / 2.0)),
            "loss_chance_share": float(np.mean(x >= chance)),
            "loss_drop": float(x[:tenth].mean() - x[-tenth:].mean())}


def loss_rise(history: list) -> float | None:
    """How far the last epoch's mean loss is above the lowest mean loss of the epochs before it (nats; < 0: the
    last epoch is the lowest). None with fewer than two epochs."""
    losses = [r.get("loss") for r in history]
    if len(losses) < 2 or any(v is None for v in losses):
        return None
    return float(losses[-1] - min(losses[:-1]))


def block_means(x: list, points: int = STEP_LOSS_POINTS) -> list:
    """``x`` itself when it has at most ``points`` values, else the means of ``points`` consecutive blocks."""
    if len(x) <= points:
        return [round(float(v), 5) for v in x]
    return [round(float(b.mean()), 5) for b in np.array_split(np.asarray(x, dtype=float), points)]


def peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


class Trainer:
    """Builds data, model and optimizer from a config; ``fit()`` runs the epochs."""

    def __init__(self, cfg: Config, run_dir: Path, progress: bool = True):
        self.cfg, self.run_dir, self.progress = cfg, Path(run_dir), progress
        self.files = rundir.RunDir(run_dir)
        self.device = D.init(cfg.device, cfg.dist_timeout_min)
        self.world, self.rank = D.world_size(), D.rank()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True          # as the official main_moco.py
        elif cfg.precision == "fp16":
            raise UserError("precision fp16 needs CUDA (autocast on the CPU is bf16); use --precision bf16 or fp32")
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        seed_all(cfg.seed, 0, self.rank)
        if cfg.batch_size % self.world:
            raise UserError(f"batch_size {cfg.batch_size} is not divisible by the {self.world} processes")
        self.batch = cfg.batch_size // self.world
        self.mode = resolve_mode(cfg.shuffle_bn, self.world)
        if self.mode in ("split", "off") and self.world == 1 and self.batch % cfg.bn_splits:
            raise UserError(f"shuffle_bn={self.mode}: batch {self.batch} is not divisible by bn_splits "
                            f"{cfg.bn_splits}")
        per_bn = self.batch // (cfg.bn_splits if self.mode in ("split", "off") and self.world == 1 else 1)
        if per_bn < 2:
            raise UserError(f"BatchNorm needs >= 2 images per (sub-)batch: batch {self.batch} per process with "
                            f"bn_splits {cfg.bn_splits} gives {per_bn}")
        self._build_data()
        self.model = build_pretrainer(cfg, self.num_images, self.world, self.device)
        self.net = (DDP(self.model, device_ids=[self.device] if self.device.type == "cuda" else None,
                        broadcast_buffers=False) if self.world > 1 else self.model)
        self.optimizer = torch.optim.SGD([p for p in self.model.parameters() if p.requires_grad],
                                         lr=cfg.effective_lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        # fp16 needs loss scaling; bf16 has fp32's exponent range and needs none
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16")
        self.start_epoch, self.history = 0, []
        self.tb = None                                  # TensorBoard writer (main process, opened by fit)
        self.t0, self.wall_before = time.time(), 0.0     # wall_s of an epoch = time before this launch + since t0

    # -- data ---------------------------------------------------------------------------------------------
    def _build_data(self) -> None:
        cfg = self.cfg
        mean, std = data.stats(cfg)
        if cfg.dataset == "imagefolder":
            train_dir, _ = data.imagefolder_dirs(cfg.data)
            self.train_set = data.IndexedImageFolder(train_dir, TwoCrops(pil_transform(
                cfg.image_size, cfg.aug_plus, mean, std, crop_scale=(cfg.crop_scale_min, 1.0), blur=cfg.blur)))
            self.batched_aug = None
        else:
            split = data.pretrain_split(cfg)
            batched = cfg.augment_on == "batched"
            crop = dict(crop_scale=(cfg.crop_scale_min, 1.0), blur=cfg.blur)
            tf = None if batched else TwoCrops(pil_transform(cfg.image_size, cfg.aug_plus, mean, std, **crop))
            self.train_set = data.TensorImages(split, tf)
            self.batched_aug = BatchedAugment(cfg.image_size, cfg.aug_plus, mean, std, **crop) if batched else None
        self.num_images = len(self.train_set)
        if self.num_images < cfg.batch_size:
            raise UserError(f"batch_size {cfg.batch_size} is larger than the {self.num_images} training images")
        if cfg.mechanism in ("moco", "memory_bank") and cfg.moco_k > self.num_images:
            from .config import k_above_n         # end_to_end: K = batch_size, checked just above
            raise UserError(k_above_n(cfg, self.num_images, f"the {self.num_images} training images"))
        self.sampler = torch.utils.data.DistributedSampler(self.train_set, num_replicas=self.world, rank=self.rank,
                                                           shuffle=True, seed=cfg.seed, drop_last=True)
        self.eval_sets = None

    def loader(self, epoch: int):
        self.sampler.set_epoch(epoch)
        g = torch.Generator().manual_seed(self.cfg.seed * 7919 + epoch)
        workers = D.workers_per_process(self.cfg.workers)
        return torch.utils.data.DataLoader(
            self.train_set, batch_size=self.batch, sampler=self.sampler, num_workers=workers, drop_last=True,
            pin_memory=self.device.type == "cuda", worker_init_fn=data.worker_init if workers else None,
            generator=g, persistent_workers=False, prefetch_factor=4 if workers else None)

    # -- checkpoint -----------------------------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.files.checkpoint

    def save(self, epoch: int) -> None:
        if not D.is_main():
            return
        atomic_save({"format": FORMAT, "arch": self.cfg.arch, "config": self.cfg.to_dict(), "epoch": epoch,
                     "world_size": self.world, "state_dict": self.model.state_dict(),
                     "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                     "rng": rng_state(), "history": self.history}, self.ckpt_path)
        atomic_write_text(self.files.metrics, "".join(json.dumps(r) + "\n" for r in self.history))

    def resume(self) -> None:
        if not self.ckpt_path.exists():
            return
        # on the CPU whatever the training device: RNG states must stay CPU ByteTensors (torch.set_rng_state
        # refuses a CUDA tensor); load_state_dict copies weights and optimizer state to the parameters' device
        ck = load(self.ckpt_path, map_location="cpu")
        missing = [k for k in ("epoch", "optimizer", "rng") if k not in ck]
        if missing:
            raise UserError(f"{self.ckpt_path}: cannot resume from it: no {', '.join(map(repr, missing))} (not a "
                            f"training checkpoint of this pretrainer, e.g. an export); use a new --output")
        saved_world = int(ck["world_size"]) if ck.get("world_size") is not None else None
        diff = resume_mismatch(dict(ck.get("config", {})), saved_world, self.cfg, self.world)
        if diff:
            raise UserError(f"{self.ckpt_path} was written with another config ({', '.join(diff)} differ); "
                            f"use a new --output directory")
        self.model.load_state_dict(ck["state_dict"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if "scaler" in ck:
            self.scaler.load_state_dict(ck["scaler"])
        self.start_epoch, self.history = int(ck["epoch"]), list(ck.get("history", []))
        self.wall_before = float(self.history[-1].get("wall_s", 0.0)) if self.history else 0.0
        set_rng_state(ck["rng"])

    # -- training -----------------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict:
        cfg, dev = self.cfg, self.device
        seed = seed_all(cfg.seed, epoch, self.rank)
        g = torch.Generator(device=dev).manual_seed(seed)
        lr = lr_at(cfg, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        sums = torch.zeros(4, dtype=torch.float64)         # loss, acc1, acc5, steps
        mf = self.memory_format
        images, t_step, t0 = 0, 0.0, time.perf_counter()
        step_loss = []
        steps = len(self.sampler) // self.batch
        if cfg.max_steps:
            steps = min(steps, cfg.max_steps)
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, mininterval=1.0,
                   disable=not (self.progress and D.is_main()), dynamic_ncols=True)
        for step, (x, idx) in enumerate(self.loader(epoch)):
            if step >= steps:
                break
            ts = time.perf_counter()
            idx = idx.to(dev, non_blocking=True)
            if self.batched_aug is not None:
                x = x.to(dev, non_blocking=True)
                im_q = self.batched_aug(x, g).contiguous(memory_format=mf)
                im_k = self.batched_aug(x, g).contiguous(memory_format=mf) if self.model.uses_key_view else None
            else:
                im_q = x[0].to(dev, non_blocking=True).contiguous(memory_format=mf)
                im_k = (x[1].to(dev, non_blocking=True).contiguous(memory_format=mf)
                        if self.model.uses_key_view else None)
            logits, labels = self.net(im_q, im_k, idx)
            loss = info_nce(logits, labels)                    # fp32: logits are fp32 under any precision
            stats = torch.cat([loss.detach().view(1), accuracy_t(logits, labels)])
            if self.world > 1:
                torch.distributed.all_reduce(stats)
                stats /= self.world
            lval, acc1, acc5 = stats.tolist()                  # the step's one host sync
            if cfg.fail_on_nan and not math.isfinite(lval):
                bar.close()
                raise Diverged(f"loss is {lval} at epoch {epoch + 1}, step {step + 1}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            sums += torch.tensor([lval, acc1, acc5, 1.0], dtype=torch.float64)
            step_loss.append(lval)
            images += im_q.shape[0] * self.world
            t_step += time.perf_counter() - ts
            bar.update(1)
            bar.set_postfix(loss=f"{lval:.3f}", acc1=f"{acc1:.1f}", refresh=False)
        bar.close()
        seconds = time.perf_counter() - t0
        if self.world > 1:
            s = sums.to(dev)
            torch.distributed.all_reduce(s)
            sums = s.cpu() / self.world
        n = max(sums[3].item(), 1.0)
        return {"epoch": epoch + 1, "loss": sums[0].item() / n, "pretext_acc1": sums[1].item() / n,
                "pretext_acc5": sums[2].item() / n, "lr": lr, "images_per_s": images / max(seconds, 1e-9),
                "step_time_s": t_step / n, "seconds": seconds, "peak_mem_mb": peak_mem_mb(dev),
                **loss_stats(step_loss, chance_loss(cfg)), "step_loss": block_means(step_loss)}

    def knn(self) -> float:
        """kNN accuracy of the query encoder, computed by all processes together (each its shard)."""
        if self.eval_sets is None:
            self.eval_sets = eval_loaders(self.cfg)
        return knn_accuracy(self.model.encoder_q, self.cfg, self.device, self.eval_sets)

    TB_SCALARS = {"loss": "train/loss", "pretext_acc1": "train/pretext_acc1", "lr": "train/lr",
                  "images_per_s": "speed/images_per_s", "knn_acc": "eval/knn_acc"}

    def log_tensorboard(self, rec: dict) -> None:
        """The epoch's curves as TensorBoard events beside metrics.jsonl (``tensorboard --logdir runs/`` shows
        every run; a resumed run adds an events file that continues at its epoch)."""
        if not D.is_main():
            return
        if self.tb is None:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(log_dir=str(self.run_dir))
        for key, tag in self.TB_SCALARS.items():
            if rec.get(key) is not None:
                self.tb.add_scalar(tag, rec[key], global_step=rec["epoch"])
        self.tb.flush()

    def fit(self) -> dict:
        cfg = self.cfg
        mem_before = peak_mem_mb(self.device)    # data + model, before any training step
        for epoch in range(self.start_epoch, cfg.epochs):
            rec = self.train_epoch(epoch)
            rec["mem_before_train_mb"] = mem_before
            last = epoch + 1 == cfg.epochs
            if cfg.knn_monitor and (last or (cfg.knn_every and (epoch + 1) % cfg.knn_every == 0)):
                t = time.perf_counter()
                rec["knn_acc"] = self.knn()
                rec["knn_seconds"] = time.perf_counter() - t
            rec["wall_s"] = self.wall_before + time.time() - self.t0     # in the checkpoint: kept on resume
            self.history.append(rec)
            self.save(epoch + 1)
            self.log_tensorboard(rec)
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        return self.history[-1] if self.history else {}


def not_converged(cfg: Config, history: list, knn_init: float | None = None) -> str:
    """The paper's "fail" (m = 0: "the training loss oscillates and fails to converge") as two declared tests;
    the reason names each one that fired ('' = converged):

    - ``fail_loss_frac`` (> 0): the last epoch's mean loss is still >= fail_loss_frac x the chance level
      ln(1 + negatives);
    - ``fail_below_init`` (with the kNN monitor): the final kNN top-1 is strictly below ``knn_init``, the kNN
      top-1 of the same network at its random initialisation (same seed, kNN protocol and data);
    - ``fail_loss_rise`` (> 0): the last epoch's mean loss is >= fail_loss_rise nats above the lowest mean loss of
      an earlier epoch (:func:`loss_rise`): the loss went back up instead of converging.
    """
    if not history:
        return ""
    reasons = []
    if cfg.fail_loss_frac:
        last, chance = history[-1]["loss"], chance_loss(cfg)
        if last >= cfg.fail_loss_frac * chance:
            reasons.append(f"last-epoch loss {last:.3f} >= {cfg.fail_loss_frac:g} x the chance level "
                           f"ln(1 + negatives) = {chance:.3f} (fail_loss_frac)")
    rise = loss_rise(history)
    if cfg.fail_loss_rise and rise is not None and rise >= cfg.fail_loss_rise:
        reasons.append(f"last-epoch loss {history[-1]['loss']:.3f} is {rise:.3f} above the lowest earlier epoch's "
                       f"(>= {cfg.fail_loss_rise:g} nats, fail_loss_rise)")
    final_knn = history[-1].get("knn_acc")
    if cfg.fail_below_init and cfg.knn_monitor and final_knn is not None and knn_init is not None:
        if final_knn < knn_init:
            reasons.append(f"final kNN top-1 {final_knn:.2f}% < {knn_init:.2f}% of the same network at random "
                           f"initialisation (fail_below_init)")
    return ("did not converge: " + "; ".join(reasons)) if reasons else ""


def same_eval(prev_eval: dict | None, cfg: Config) -> bool:
    """Whether a summary's recorded evaluation settings are ``cfg``'s (a key the summary predates counts with
    its default value, so adding an evaluation key re-evaluates only runs that set it)."""
    defaults = eval_settings(Config())
    return {**defaults, **(prev_eval or {})} == eval_settings(cfg)


def finished_state(prev: dict | None, cfg: Config, run_id: str) -> str:
    """What a previous summary means for ``cfg`` (the run ``run_id``): '' (no finished result of this run:
    train or resume), ``current`` (the result stands), ``relabel`` (a legacy ``failed`` summary of a diverged
    run: only its status is rewritten) or ``reevaluate`` (a finished run whose evaluation settings changed, or
    a legacy not-converged one: re-evaluated from its checkpoint, not trained again)."""
    if not prev or prev.get("run_id") != run_id:
        return ""
    st = S.from_summary(prev)
    if st not in S.RESULTS:
        return ""
    if st == S.DIVERGED:                # non-finite weights: nothing to evaluate
        return "relabel" if S.is_legacy(prev) else "current"
    if S.is_legacy(prev) or not same_eval(prev.get("eval"), cfg):
        return "reevaluate"
    return "current"


KNN_RESULT_KEYS = ("knn_monitor", "knn_k", "knn_t", "knn_feature", "knn_subset")   # what the final kNN depends on


def chance_loss(cfg: Config) -> float:
    """InfoNCE of a model that cannot tell the positive from the negatives: ln(1 + negatives)."""
    negatives = cfg.batch_size - 1 if cfg.mechanism == "end_to_end" else cfg.moco_k
    return math.log(1 + negatives)


def summarize(cfg: Config, history: list, status: str, reason: str, wall_s: float, device, world: int,
              knn_init: float | None = None, n_eval: int | None = None) -> dict:
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
        "host": socket.gethostname(), "git_sha": git_sha(), "torch": torch.__version__,
        "python": platform.python_version(), "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
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
    (``pretrain.status``): a non-finite loss ends the run ``diverged``, a declared criterion that fires
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
                    from .baselines import knn_random_init
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

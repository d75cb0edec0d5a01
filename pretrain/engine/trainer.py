"""The pretraining loop: :class:`Trainer` builds data, model and optimizer from a config and trains epochs
(:meth:`Trainer.train_epoch` reads side by side with ``train()`` of the official ``main_moco.py``); a run's
lifecycle around it is :func:`pretrain.engine.lifecycle.run`.

Step order as the official ``main_moco.py`` + ``builder.py``: (augment,) query forward, momentum update of
the key encoder, (shuffle,) key forward, logits, enqueue; then backward and the SGD step of the query encoder.
Everything needed to continue (both encoders, queue/bank, optimizer, epoch, every RNG, the metrics so far) is
checkpointed atomically every epoch; a resumed CPU run ends bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from pretrain.base import rundir
from pretrain.base.errors import Diverged, UserError
from pretrain.base.fileio import atomic_save, atomic_write_text
from pretrain.config import Config, resume_mismatch
from pretrain.config.mechanisms import k_above_n
from pretrain.data import datasets as data
from pretrain.data.augment import BatchedAugment, TwoCrops, pil_transform
from pretrain.data.loaders import eval_loaders
from pretrain.engine.criteria import block_means, chance_loss, loss_stats
from pretrain.eval.knn import knn_accuracy
from pretrain.models.build import build_pretrainer
from pretrain.models.mechanism import accuracy_t, info_nce
from pretrain.models.shuffle_bn import resolve_mode
from pretrain.runtime import distributed as D
from pretrain.runtime.checkpoint import FORMAT, load, rng_state, set_rng_state
from pretrain.runtime.schedule import lr_at
from pretrain.runtime.seeding import seed_all


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
            self.batched_aug = self.resident = None
        else:
            split = data.pretrain_split(cfg)
            batched = cfg.augment_on == "batched"
            crop = dict(crop_scale=(cfg.crop_scale_min, 1.0), blur=cfg.blur)
            tf = None if batched else TwoCrops(pil_transform(cfg.image_size, cfg.aug_plus, mean, std, **crop))
            self.train_set = data.TensorImages(split, tf)
            self.batched_aug = BatchedAugment(cfg.image_size, cfg.aug_plus, mean, std, **crop) if batched else None
            # batched augmentation reads the uint8 images from the device (a view of the split on the CPU)
            self.resident = split.images.to(self.device) if batched else None
        self.num_images = len(self.train_set)
        if self.num_images < cfg.batch_size:
            raise UserError(f"batch_size {cfg.batch_size} is larger than the {self.num_images} training images")
        if cfg.mechanism in ("moco", "memory_bank") and cfg.moco_k > self.num_images:
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
    #: steps between two reads of the step statistics (loss, top-1, top-5) to the host: the loop's one host
    #: synchronisation, the NaN check and the progress bar's figures happen there (and at the epoch's end)
    READ_EVERY = 50

    def train_epoch(self, epoch: int) -> dict:
        cfg, dev = self.cfg, self.device
        seed = seed_all(cfg.seed, epoch, self.rank)
        g = torch.Generator(device=dev).manual_seed(seed)
        lr = lr_at(cfg, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        pending, step_stats = [], []                       # on the device / read: [loss, acc1, acc5] per step
        images, t_step, t0 = 0, 0.0, time.perf_counter()
        steps = len(self.sampler) // self.batch
        if cfg.max_steps:
            steps = min(steps, cfg.max_steps)
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, mininterval=1.0,
                   disable=not (self.progress and D.is_main()), dynamic_ncols=True)
        for step, (x, idx) in enumerate(self.batches(epoch)):
            if step >= steps:
                break
            ts = time.perf_counter()
            idx = idx.to(dev, non_blocking=True)
            im_q, im_k = self.views(x, g)                      # main_moco.py: images[0], images[1] on the device
            output, target = self.net(im_q, im_k, idx)         # output, target = model(im_q=..., im_k=...)
            loss = info_nce(output, target)                    # loss = criterion(output, target); fp32 logits
            pending.append(self.step_stats(loss, output, target))   # acc1, acc5 = accuracy(output, target)
            self.optimizer.zero_grad(set_to_none=True)         # optimizer.zero_grad()
            self.scaler.scale(loss).backward()                 # loss.backward()
            self.scaler.step(self.optimizer)                   # optimizer.step()
            self.scaler.update()
            images += im_q.shape[0] * self.world
            if len(pending) == self.READ_EVERY or step + 1 == steps:
                self.read_stats(pending, step_stats, epoch, bar)
            t_step += time.perf_counter() - ts
            bar.update(1)
        self.read_stats(pending, step_stats, epoch, bar)       # a loader shorter than `steps`
        bar.close()
        seconds = time.perf_counter() - t0
        n = max(len(step_stats), 1)
        sums = [0.0, 0.0, 0.0]
        for row in step_stats:                                 # float64, in step order
            sums = [a + b for a, b in zip(sums, row)]
        step_loss = [row[0] for row in step_stats]
        return {"epoch": epoch + 1, "loss": sums[0] / n, "pretext_acc1": sums[1] / n,
                "pretext_acc5": sums[2] / n, "lr": lr, "images_per_s": images / max(seconds, 1e-9),
                "step_time_s": t_step / n, "seconds": seconds, "peak_mem_mb": peak_mem_mb(dev),
                **loss_stats(step_loss, chance_loss(cfg)), "step_loss": block_means(step_loss)}

    def batches(self, epoch: int):
        """(images, dataset indices) of the epoch's mini-batches: the DistributedSampler's order in consecutive
        batches of the per-process batch (drop_last), exactly as a DataLoader over it yields them. Batched
        augmentation of a tensor dataset indexes the images resident on the device (:attr:`resident`: no
        per-image collation, no copy per step); otherwise the DataLoader (with its workers) yields them."""
        if self.resident is None:
            yield from self.loader(epoch)
            return
        self.sampler.set_epoch(epoch)
        for idx in torch.utils.data.BatchSampler(self.sampler, self.batch, drop_last=True):
            idx = torch.tensor(idx, dtype=torch.long)
            yield self.resident[idx.to(self.resident.device, non_blocking=True)], idx

    def views(self, x, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The query and key views of a batch on the device, in the run's memory format: augmented here with
        ``g`` (``augment_on: batched``) or by the DataLoader workers; no key view for a mechanism without one."""
        dev, mf, key = self.device, self.memory_format, self.model.uses_key_view
        if self.batched_aug is not None:
            x = x.to(dev, non_blocking=True)
            im_q = self.batched_aug(x, g).contiguous(memory_format=mf)
            im_k = self.batched_aug(x, g).contiguous(memory_format=mf) if key else None
        else:
            im_q = x[0].to(dev, non_blocking=True).contiguous(memory_format=mf)
            im_k = x[1].to(dev, non_blocking=True).contiguous(memory_format=mf) if key else None
        return im_q, im_k

    @staticmethod
    def step_stats(loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[loss, top-1, top-5] of the step as one tensor on the device (no host sync; :meth:`read_stats`)."""
        return torch.cat([loss.detach().view(1), accuracy_t(logits, labels)])

    def read_stats(self, pending: list, out: list, epoch: int, bar) -> None:
        """Moves the ``pending`` steps' statistics to ``out`` as floats, averaged over the processes: one
        all-reduce and one host synchronisation for all of them. With ``fail_on_nan``, a non-finite loss raises
        :class:`Diverged` naming its step (the steps after it, up to this read, are lost with the run)."""
        if not pending:
            return
        stats = torch.stack(pending).double()
        if self.world > 1:
            torch.distributed.all_reduce(stats)
            stats /= self.world
        first = len(out)
        pending.clear()
        for i, row in enumerate(stats.tolist()):
            if self.cfg.fail_on_nan and not math.isfinite(row[0]):
                bar.close()
                raise Diverged(f"loss is {row[0]} at epoch {epoch + 1}, step {first + i + 1}")
            out.append(row)
        bar.set_postfix(loss=f"{out[-1][0]:.3f}", acc1=f"{out[-1][1]:.1f}", refresh=False)

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

"""The step benchmark behind ``python -m pretrain.bench``: images/s of the training step and its time split
(augmentation, query forward/backward, momentum update, key forward, loss, queue/bank), the two augmentation
paths, and the same step in other precisions and from the official ``moco/builder.py``, timed in one process."""
from __future__ import annotations

import functools
import importlib.util
import os
import time
from collections import defaultdict

import torch
import torch.distributed as dist
import torch.nn.functional as F

from pretrain.base.errors import UserError
from pretrain.data import datasets as data
from pretrain.data.augment import BatchedAugment, TwoCrops, pil_transform
from pretrain.engine.trainer import peak_mem_mb
from pretrain.models.build import build_pretrainer
from pretrain.models.encoder import build_encoder
from pretrain.models.mechanism import info_nce


class Timer:
    def __init__(self, device):
        self.device, self.t = device, defaultdict(float)

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __call__(self, name):
        timer = self

        class _Ctx:
            def __enter__(self):
                timer.sync()
                self.t0 = time.perf_counter()

            def __exit__(self, *a):
                timer.sync()
                timer.t[name] += time.perf_counter() - self.t0
        return _Ctx()


def bench_augment(cfg, split, steps: int, device) -> dict:
    """Images/s of both augmentation paths producing two views of ``batch_size`` images."""
    mean, std = data.stats(cfg)
    n = cfg.batch_size
    out = {}
    aug = BatchedAugment(cfg.image_size, cfg.aug_plus, mean, std, crop_scale=(cfg.crop_scale_min, 1.0),
                         blur=cfg.blur)
    g = torch.Generator(device=device).manual_seed(0)
    x = split.images[:n].to(device)
    aug(x, g)
    t = time.perf_counter()
    for _ in range(steps):
        aug(x, g), aug(x, g)
    out["batched"] = n * steps / (time.perf_counter() - t)
    ds = data.TensorImages(split, TwoCrops(pil_transform(cfg.image_size, cfg.aug_plus, mean, std,
                                                         crop_scale=(cfg.crop_scale_min, 1.0), blur=cfg.blur)))
    workers = max(cfg.workers, 1)
    loader = torch.utils.data.DataLoader(ds, batch_size=n, shuffle=True, num_workers=workers, drop_last=True,
                                         worker_init_fn=data.worker_init, persistent_workers=False)
    it = iter(loader)
    next(it)
    t = time.perf_counter()
    k = 0
    for _ in range(steps):
        try:
            next(it)
        except StopIteration:
            break
        k += 1
    out[f"workers({workers})"] = n * k / (time.perf_counter() - t)
    return out


def bench_step(cfg, split, steps: int, device, precision: str | None = None,
               channels_last: bool | None = None) -> tuple[dict, float]:
    """Time split of the real training step (one process): the batched augmentation, the mechanism module's
    own ``forward`` (query forward, momentum update, shuffled key forward, logits, queue/bank update), the
    loss, and backward + SGD (with the run's GradScaler), under ``precision`` and memory format (default: the
    config's), averaged over ``steps`` after two warm-up steps."""
    precision = precision or cfg.precision
    channels_last = cfg.channels_last if channels_last is None else channels_last
    mf = torch.channels_last if channels_last else torch.contiguous_format
    mean, std = data.stats(cfg)
    torch.manual_seed(0)
    model = build_pretrainer(cfg, len(split), 1, device, precision, channels_last)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.effective_lr,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    aug = BatchedAugment(cfg.image_size, cfg.aug_plus, mean, std, crop_scale=(cfg.crop_scale_min, 1.0),
                         blur=cfg.blur)
    g = torch.Generator(device=device).manual_seed(0)
    n = cfg.batch_size
    timer = Timer(device)
    t_all = 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(steps + 2):
        if step == 2:
            timer.t.clear()
            timer.sync()
            t_all = time.perf_counter()
        idx = torch.randint(0, len(split), (n,))
        x = split.images[idx].to(device)
        idx = idx.to(device)
        with timer("augment (batched)"):
            im_q = aug(x, g).contiguous(memory_format=mf)
            im_k = aug(x, g).contiguous(memory_format=mf) if model.uses_key_view else None
        with timer(f"{cfg.mechanism}.forward + loss"):
            logits, labels = model(im_q, im_k, idx)
            loss = info_nce(logits, labels)
        with timer("backward + SGD"):
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    timer.sync()
    total = time.perf_counter() - t_all
    return {k: v / steps for k, v in timer.t.items()}, n * steps / total


def bench_official(cfg, official_dir: str, steps: int, device) -> float:
    """images/s of the official ``moco/builder.py`` MoCo (its own forward: shuffle BN over the process group,
    queue) with the same encoder, batch, K, m, tau and input size, fp32 as the official code, one process.
    ``official_dir``: a checkout of facebookresearch/moco (not shipped with this suite)."""
    if device.type != "cuda":
        raise UserError("--official: the official moco/builder.py runs on CUDA only (its shuffle calls .cuda())")
    spec = importlib.util.spec_from_file_location("official_moco_builder",
                                                  os.path.join(official_dir, "moco", "builder.py"))
    if spec is None or not os.path.isfile(spec.origin or ""):
        raise UserError(f"--official {official_dir}: no moco/builder.py there (a facebookresearch/moco checkout)")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not dist.is_initialized():           # its shuffle BN and queue gather over a process group
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29531")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    if cfg.moco_k % cfg.batch_size:
        raise UserError(f"the official builder needs K ({cfg.moco_k}) to be a multiple of the batch")
    base = functools.partial(build_encoder, cfg.arch, mlp=False, cifar_stem=cfg.cifar_stem, in_chans=cfg.in_chans,
                             width=cfg.width, stem_stride=cfg.stem_stride)
    torch.manual_seed(0)
    model = mod.MoCo(lambda num_classes: base(num_classes), dim=cfg.moco_dim, K=cfg.moco_k, m=cfg.moco_m,
                     T=cfg.moco_t, mlp=cfg.mlp).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.effective_lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    mean, std = data.stats(cfg)
    aug = BatchedAugment(cfg.image_size, cfg.aug_plus, mean, std, crop_scale=(cfg.crop_scale_min, 1.0),
                         blur=cfg.blur)
    g = torch.Generator(device=device).manual_seed(0)
    split = data.pretrain_split(cfg)
    n = cfg.batch_size
    t0 = 0.0
    for step in range(steps + 2):
        if step == 2:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        x = split.images[torch.randint(0, len(split), (n,))].to(device)
        output, target = model(aug(x, g), aug(x, g))
        loss = F.cross_entropy(output, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n * steps / (time.perf_counter() - t0)


def run_bench(cfg, steps: int, compare: bool = False, official: str = "") -> dict:
    """The figures of ``python -m pretrain.bench`` for ``cfg`` (a fixed-size dataset): the step's time split
    and images/s; with ``compare`` the same step in fp32 and bf16 + channels_last (fp16 on CUDA) beside the
    config's precision; with ``official`` (a facebookresearch/moco checkout) the official builder's step."""
    if cfg.dataset == "imagefolder":
        raise UserError("bench runs on fixed-size datasets (tiny, cifar10, synthetic...)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    split = data.pretrain_split(cfg)
    torch.manual_seed(0)
    aug = bench_augment(cfg, split, max(2, steps // 2), device)
    parts, ips = bench_step(cfg, split, steps, device)
    variants = {f"{cfg.precision}{' + channels_last' if cfg.channels_last else ''} (config)": ips}
    if compare:
        for prec, cl in (("fp32", False), ("bf16", True)) + ((("fp16", True),) if device.type == "cuda" else ()):
            if (prec, cl) != (cfg.precision, cfg.channels_last):
                variants[f"{prec}{' + channels_last' if cl else ''}"] = bench_step(cfg, split, steps,
                                                                                 device, prec, cl)[1]
    if official:
        variants["official moco/builder.py (fp32)"] = bench_official(cfg, official, steps, device)
    return {"mechanism": cfg.mechanism, "arch": cfg.arch, "width": cfg.width,
            "batch_size": cfg.batch_size, "moco_k": cfg.moco_k, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(), "precision": cfg.precision, "images_per_s": ips,
            "variants_images_per_s": variants,
            "step_ms": {k: 1000 * v for k, v in parts.items()},
            "augment_images_per_s": aug, "peak_mem_mb": peak_mem_mb(device)}


def format_table(result: dict) -> str:
    """:func:`run_bench`'s figures as the table ``python -m pretrain.bench`` prints."""
    r, ips = result, result["images_per_s"]
    lines = [f"{r['arch']} (width {r['width']}) | {r['mechanism']} | batch {r['batch_size']} | K {r['moco_k']} | "
             f"{r['device_name']} ({r['device']}) x {r['threads']} threads"]
    total = sum(r["step_ms"].values())
    for k, v in r["step_ms"].items():
        lines.append(f"  {k:<28} {v:8.1f} ms  {100 * v / total:5.1f}%")
    lines.append(f"  {'step':<28} {total:8.1f} ms  -> {ips:.0f} images/s (batched augmentation included)")
    if len(r["variants_images_per_s"]) > 1:
        lines.append("the same step, images/s (same process, same data):")
        for k, v in r["variants_images_per_s"].items():
            lines.append(f"  {k:<34} {v:8.0f}  ({v / ips:4.2f}x)")
    lines.append("augmentation alone (two views), images/s:")
    for k, v in r["augment_images_per_s"].items():
        lines.append(f"  {k:<28} {v:8.0f}")
    lines.append(f"peak memory {r['peak_mem_mb']:.0f} MB")
    return "\n".join(lines)

"""The step benchmark behind ``python -m pretrain.bench``: images/s of the training step and its time split
(augmentation, query forward/backward, momentum update, key forward, loss, queue/bank), the two augmentation
paths, and the same step in other precisions and from the official ``moco/builder.py``, timed in one process."""
from __future__ import annotations

import contextlib
import importlib.util
import os
import statistics
import time
from collections import defaultdict

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from pretrain.base.errors import UserError
from pretrain.data import datasets as data
from pretrain.data.augment import BatchedAugment, TwoCrops, pil_transform
from pretrain.engine.trainer import peak_mem_mb
from pretrain.models.build import build_pretrainer
from pretrain.models.encoder import encoder_for
from pretrain.models.mechanism import info_nce
from pretrain.models.shuffle_bn import convert_bn, resolve_mode


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


def bench_step(cfg, split, steps: int, device) -> dict:
    """Time split of the config's training step (one process): the batched augmentation, the mechanism module's
    own ``forward`` (query forward, momentum update, shuffled key forward, logits, queue/bank update), the
    loss, and backward + SGD (with the run's GradScaler), in ms per step averaged over ``steps`` after
    :data:`WARMUP` steps. Each part ends with a device synchronisation, so the parts add up to more than the
    race's step (:func:`race`)."""
    timer = Timer(device)
    step = our_step(cfg, split.images.to(device), device, cfg.precision, cfg.channels_last, cfg.compile, timer)
    for _ in range(WARMUP):
        step()
    timer.t.clear()
    for _ in range(steps):
        step()
    return {k: v / steps for k, v in timer.t.items()}


#: untimed steps before a step is timed (cudnn.benchmark's search, torch.compile, CUDA graphs' recording)
WARMUP = 3


def our_step(cfg, images: torch.Tensor, device, precision: str, channels_last: bool, compile_mode: str,
             timer: Timer | None = None):
    """One call = one training step of this suite (batched augmentation of a random batch of the resident
    ``images``, the mechanism's forward, InfoNCE, backward, SGD) under ``precision``, memory format and
    ``compile_mode``; built from seed 0. ``timer``: times the step's parts (:func:`bench_step`)."""
    mf = torch.channels_last if channels_last else torch.contiguous_format
    mean, std = data.stats(cfg)
    torch.manual_seed(0)
    model = build_pretrainer(cfg, len(images), 1, device, precision, channels_last, compile_mode)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.effective_lr,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    aug = BatchedAugment(cfg.image_size, cfg.aug_plus, mean, std, crop_scale=(cfg.crop_scale_min, 1.0),
                         blur=cfg.blur)
    g = torch.Generator(device=device).manual_seed(0)
    part = timer or (lambda name: contextlib.nullcontext())

    def step() -> None:
        idx = torch.randint(0, len(images), (cfg.batch_size,), device=device)
        with part("augment (batched)"):
            x = images[idx]
            im_q = aug(x, g).contiguous(memory_format=mf)
            im_k = aug(x, g).contiguous(memory_format=mf) if model.uses_key_view else None
        with part(f"{cfg.mechanism}.forward + loss"):
            logits, labels = model(im_q, im_k, idx)
            loss = info_nce(logits, labels)
        with part("backward + SGD"):
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
    return step


@contextlib.contextmanager
def cuda_is_identity(device: torch.device):
    """On the CPU, ``Tensor.cuda()`` returns the tensor itself while the block runs (the official builder moves
    its shuffle permutations with ``.cuda()``); on CUDA nothing changes."""
    if device.type == "cuda":
        yield
        return
    cuda = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *a, **k: self
    try:
        yield
    finally:
        torch.Tensor.cuda = cuda


def official_step(cfg, official_dir: str, images: torch.Tensor, device):
    """One call = one step of the official ``moco/builder.py`` MoCo (its own forward: shuffle BN over the
    process group, queue; fp32, eager), with this suite's encoder and BN layout (the same split BN as ours in
    one process, as the official CIFAR demo), batch, K, m, tau, augmentation and SGD. On the CPU its
    ``.cuda()`` calls are the identity. ``official_dir``: a checkout of facebookresearch/moco (not shipped
    with this suite)."""
    spec = importlib.util.spec_from_file_location("official_moco_builder",
                                                  os.path.join(official_dir, "moco", "builder.py"))
    if spec is None or not os.path.isfile(spec.origin or ""):
        raise UserError(f"--official {official_dir}: no moco/builder.py there (a facebookresearch/moco checkout)")
    if cfg.mechanism != "moco":
        raise UserError(f"--official times the official MoCo; the config's mechanism is {cfg.mechanism}")
    if cfg.moco_k % cfg.batch_size:
        raise UserError(f"the official builder needs K ({cfg.moco_k}) to be a multiple of the batch")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not dist.is_initialized():           # its shuffle BN and queue gather over a process group
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29531")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=0, world_size=1)
    mode = resolve_mode(cfg.shuffle_bn, 1)
    torch.manual_seed(0)
    model = mod.MoCo(lambda num_classes: convert_bn(encoder_for(cfg, mlp=False), mode, cfg.bn_splits, 1, device),
                     dim=cfg.moco_dim, K=cfg.moco_k, m=cfg.moco_m, T=cfg.moco_t, mlp=cfg.mlp).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.effective_lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    mean, std = data.stats(cfg)
    aug = BatchedAugment(cfg.image_size, cfg.aug_plus, mean, std, crop_scale=(cfg.crop_scale_min, 1.0),
                         blur=cfg.blur)
    g = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        x = images[torch.randint(0, len(images), (cfg.batch_size,), device=device)]
        with cuda_is_identity(device):
            output, target = model(aug(x, g), aug(x, g))
        loss = F.cross_entropy(output, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def race(steppers: dict, batch: int, steps: int, rounds: int, device) -> dict:
    """Images/s of each step function in ``steppers`` timed side by side: :data:`WARMUP` untimed calls each,
    then ``rounds`` rounds in which each runs ``steps`` steps in turn (a noisy machine slows all alike);
    the median of its rounds, and every round."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    for step in steppers.values():
        for _ in range(WARMUP):
            step()
    sync()
    rates = {name: [] for name in steppers}
    for _ in range(rounds):
        for name, step in steppers.items():
            t = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            rates[name].append(batch * steps / (time.perf_counter() - t))
    return {name: {"images_per_s": statistics.median(r), "rounds": r} for name, r in rates.items()}


def profile_step(cfg, steps: int, rows: int = 25) -> str:
    """``torch.profiler``'s table of the config's whole step (:func:`our_step`) over ``steps`` steps after
    :data:`WARMUP`: the operators by their own time (on CUDA: device time), ``rows`` of them."""
    if cfg.dataset == "imagefolder":
        raise UserError("bench runs on fixed-size datasets (tiny, cifar10, synthetic...)")
    device = bench_device(cfg)
    images = data.pretrain_split(cfg).images.to(device)
    step = our_step(cfg, images, device, cfg.precision, cfg.channels_last, cfg.compile)
    for _ in range(WARMUP):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows, max_name_column_width=48)


def bench_device(cfg) -> torch.device:
    """The device ``pretrain.bench`` times on (``device: auto``: CUDA when there is one), threads set."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device


def variant_name(precision: str, channels_last: bool, compile_mode: str) -> str:
    return precision + (" + channels_last" if channels_last else "") + (
        f" + compile {compile_mode}" if compile_mode != "off" else "")


def run_bench(cfg, steps: int, compare: bool = False, official: str = "", rounds: int = 3) -> dict:
    """The figures of ``python -m pretrain.bench`` for ``cfg`` (a fixed-size dataset): the step's time split,
    then a race (:func:`race`) of the config's step against, with ``compare``, the eager step in fp32 and in
    bf16 + channels_last (fp16 + channels_last on CUDA) and the config's precision eager when it compiles,
    and with ``official`` (a facebookresearch/moco checkout) the official builder's step."""
    if cfg.dataset == "imagefolder":
        raise UserError("bench runs on fixed-size datasets (tiny, cifar10, synthetic...)")
    device = bench_device(cfg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    split = data.pretrain_split(cfg)
    images = split.images.to(device)
    torch.manual_seed(0)
    aug = bench_augment(cfg, split, max(2, steps // 2), device)
    parts = bench_step(cfg, split, steps, device)
    config = (cfg.precision, cfg.channels_last, cfg.compile)
    wanted = [config]
    if compare:
        wanted += [("fp32", False, "off"), ("bf16", True, "off")] + ([("fp16", True, "off")]
                                                                   if device.type == "cuda" else [])
        if cfg.compile != "off":
            wanted.append((cfg.precision, cfg.channels_last, "off"))
    steppers = {}
    for v in dict.fromkeys(wanted):
        name = variant_name(*v) + (" (config)" if v == config else "")
        steppers[name] = our_step(cfg, images, device, *v)
    if official:
        steppers["official moco/builder.py (fp32)"] = official_step(cfg, official, images, device)
    raced = race(steppers, cfg.batch_size, steps, rounds, device)
    config_name = next(iter(steppers))
    return {"mechanism": cfg.mechanism, "arch": cfg.arch, "width": cfg.width,
            "batch_size": cfg.batch_size, "moco_k": cfg.moco_k, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(), "precision": cfg.precision, "compile": cfg.compile,
            "steps": steps, "rounds": rounds, "images_per_s": raced[config_name]["images_per_s"],
            "variants_images_per_s": {k: v["images_per_s"] for k, v in raced.items()},
            "variants_rounds": {k: v["rounds"] for k, v in raced.items()},
            "step_ms": {k: 1000 * v for k, v in parts.items()},
            "augment_images_per_s": aug, "peak_mem_mb": peak_mem_mb(device)}


def format_table(result: dict) -> str:
    """:func:`run_bench`'s figures as the table ``python -m pretrain.bench`` prints."""
    r, ips = result, result["images_per_s"]
    lines = [f"{r['arch']} (width {r['width']}) | {r['mechanism']} | batch {r['batch_size']} | K {r['moco_k']} | "
             f"{r['device_name']} ({r['device']}) x {r['threads']} threads"]
    total = sum(r["step_ms"].values())
    lines.append("time split of the config's step (a device sync after each part):")
    for k, v in r["step_ms"].items():
        lines.append(f"  {k:<28} {v:8.1f} ms  {100 * v / total:5.1f}%")
    lines.append(f"  {'sum':<28} {total:8.1f} ms")
    rounds = r["variants_rounds"]
    off = next((k for k in rounds if k.startswith("official")), None)
    lines.append(f"the whole step (batched augmentation included), images/s: median of {r['rounds']} rounds of "
                 f"{r['steps']} steps, the variants in turn in one process"
                 + ("; x official: the median of the rounds' ratios" if off else ""))
    for k, v in r["variants_images_per_s"].items():
        rel = (f"  {statistics.median(a / b for a, b in zip(rounds[k], rounds[off])):4.2f}x official"
               if off else "")
        lines.append(f"  {k:<44} {v:8.0f}  ({v / ips:4.2f}x config){rel}")
    lines.append("augmentation alone (two views), images/s:")
    for k, v in r["augment_images_per_s"].items():
        lines.append(f"  {k:<28} {v:8.0f}")
    lines.append(f"peak memory {r['peak_mem_mb']:.0f} MB")
    return "\n".join(lines)

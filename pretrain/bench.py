"""``python -m pretrain.bench``: images/s of the training step and its time split (augmentation, query
forward/backward, momentum update, key forward, loss, queue/bank), and the two augmentation paths (per image
in DataLoader workers vs batched on the device), for a preset and any overrides (batch, K, mechanism...).

Example: ``python -m pretrain.bench --preset tiny --batch-size 256 --moco-k 4096 --steps 10``
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

import torch
import torch.nn.functional as F

from . import data
from .augment import BatchedAugment, TwoCrops, pil_transform
from .builder import EndToEnd, MemoryBank, build_model, info_nce
from .config import add_config_args, load_config, overrides_from_args
from .encoder import build_encoder
from .errors import UserError, die
from .shuffle_bn import convert_bn, resolve_mode
from .train import peak_mem_mb


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
    aug = BatchedAugment(cfg.image_size, cfg.aug_plus, mean, std)
    g = torch.Generator(device=device).manual_seed(0)
    x = split.images[:n].to(device)
    aug(x, g)
    t = time.perf_counter()
    for _ in range(steps):
        aug(x, g), aug(x, g)
    out["batched"] = n * steps / (time.perf_counter() - t)
    ds = data.TensorImages(split, TwoCrops(pil_transform(cfg.image_size, cfg.aug_plus, mean, std)))
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


def bench_step(cfg, split, steps: int, device) -> tuple[dict, float]:
    """Time split of the training step (one process), averaged over ``steps`` after one warm-up step."""
    mean, std = data.stats(cfg)
    mode = resolve_mode(cfg.shuffle_bn, 1)
    enc = convert_bn(build_encoder(cfg.arch, cfg.moco_dim, cfg.mlp, cfg.cifar_stem, cfg.in_chans, cfg.width),
                     mode, cfg.bn_splits, 1, device)
    model = build_model(cfg, enc, len(split), mode).to(device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.effective_lr,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    aug = BatchedAugment(cfg.image_size, cfg.aug_plus, mean, std)
    g = torch.Generator(device=device).manual_seed(0)
    n = cfg.batch_size
    timer = Timer(device)
    t_all = 0.0
    for step in range(steps + 1):
        if step == 1:
            timer.t.clear()
            t_all = time.perf_counter()
        idx = torch.randint(0, len(split), (n,))
        x = split.images[idx].to(device)
        idx = idx.to(device)
        with timer("augment (batched)"):
            im_q, im_k = aug(x, g), aug(x, g)
        with timer("query fwd"):
            q = F.normalize(model.encoder_q(im_q), dim=1)
        if isinstance(model, EndToEnd):
            with timer("key fwd (with grad)"):
                k = F.normalize(model.key_shuffle.encode(model.encoder_q, im_k), dim=1)
            with timer("logits + loss"):
                sim = q @ k.t()
                logits = torch.cat([sim.diagonal()[:, None], sim[~torch.eye(n, dtype=torch.bool,
                                                                             device=device)].view(n, -1)], 1)
                loss = info_nce(logits / model.T, torch.zeros(n, dtype=torch.long, device=device))
        elif isinstance(model, MemoryBank):
            with timer("logits + loss"):
                with torch.no_grad():
                    pos, neg = model.bank[idx].clone(), model.bank[model.sample_negatives()].clone()
                logits = torch.cat([(q * pos).sum(1, keepdim=True), q @ neg.t()], 1) / model.T
                loss = info_nce(logits, torch.zeros(n, dtype=torch.long, device=device))
            with timer("bank update"):
                model._update_bank(q.detach(), idx)
        else:
            with timer("momentum update"):
                model._momentum_update_key_encoder()
            with timer("key fwd"), torch.no_grad():
                k = F.normalize(model.key_shuffle.encode(model.encoder_k, im_k), dim=1)
            with timer("logits + loss"):
                logits = torch.cat([(q * k).sum(1, keepdim=True), q @ model.queue.clone().detach()], 1) / model.T
                loss = info_nce(logits, torch.zeros(n, dtype=torch.long, device=device))
            with timer("queue"):
                model._dequeue_and_enqueue(k)
        with timer("query bwd + SGD"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    timer.sync()
    total = time.perf_counter() - t_all
    return {k: v / steps for k, v in timer.t.items()}, n * steps / total


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pretrain.bench", description=__doc__)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    add_config_args(p)
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.preset, overrides_from_args(args))
        if cfg.dataset == "imagefolder":
            raise UserError("bench runs on fixed-size datasets (tiny, cifar10, synthetic...)")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = torch.device("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
        split = data.pretrain_split(cfg)
        torch.manual_seed(0)
        aug = bench_augment(cfg, split, max(2, args.steps // 2), device)
        parts, ips = bench_step(cfg, split, args.steps, device)
    except UserError as e:
        die(e)
    result = {"preset": args.preset, "mechanism": cfg.mechanism, "arch": cfg.arch, "width": cfg.width,
              "batch_size": cfg.batch_size, "moco_k": cfg.moco_k, "device": str(device),
              "threads": torch.get_num_threads(), "images_per_s": ips,
              "step_ms": {k: 1000 * v for k, v in parts.items()},
              "augment_images_per_s": aug, "peak_mem_mb": peak_mem_mb(device)}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{cfg.arch} (width {cfg.width}) | {cfg.mechanism} | batch {cfg.batch_size} | K {cfg.moco_k} | "
          f"{device} x {torch.get_num_threads()} threads")
    total = sum(parts.values())
    for k, v in parts.items():
        print(f"  {k:<22} {1000 * v:8.1f} ms  {100 * v / total:5.1f}%")
    print(f"  {'step':<22} {1000 * total:8.1f} ms  -> {ips:.0f} images/s (batched augmentation included)")
    print("augmentation alone (two views), images/s:")
    for k, v in aug.items():
        print(f"  {k:<22} {v:8.0f}")
    print(f"peak memory {result['peak_mem_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

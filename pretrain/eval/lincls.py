"""Linear classification protocol (paper Sec. 4.1; official ``main_lincls.py``): a linear classifier on the
frozen, eval-mode backbone of the query encoder. fc initialised N(0, 0.01), bias 0; SGD lr 30, momentum 0.9,
weight decay 0, batch 256 (total over processes), 100 epochs, lr x0.1 at epochs 60 and 80. After training, a
sanity check asserts that the backbone still equals the checkpoint.

ImageFolder (ImageNet) checkpoints run the official augmented protocol: training views RandomResizedCrop
(scale 0.08-1) + horizontal flip, validation Resize(size * 256/224) + CenterCrop, evaluated on val/ every
epoch. ``lincls_acc1``/``lincls_acc5`` are the final epoch's (the number reported); ``lincls_best_acc1`` and
``lincls_best_epoch`` are the official script's "best acc1" (a selection on the validation set). Several
processes (``torchrun --nproc_per_node N -m pretrain.lincls ...`` or N srun tasks): DistributedSampler for
training, the classifier's gradients averaged (DDP), validation sharded over the ranks with every image
counted once. A per-epoch checkpoint ``<output stem>_checkpoint.pth`` beside the output JSON lets a killed run
resume (automatically; removed when the result is written); per-epoch metrics go to
``<output stem>_metrics.jsonl``. None of these replaces the checkpoint read or a file of another kind
(``pretrain.base.fileio.refuse_overwrite``). The result JSON records the settings the protocol ran with
(``lincls_config``) and the backbone's fingerprint: :func:`result_for` takes a result file for a protocol
only when both are the ones asked (a hand-written or other protocol's file is no result).

Fast path (``--cache-features``, the default for fixed-size datasets): the frozen backbone's features are
computed once for un-augmented training images and the classifier is trained on them. This drops the
augmentation of the linear stage (a documented deviation that makes the protocol take seconds at small scale);
``--no-cache-features`` runs the augmented protocol on the tensors. The fixed-size path runs in one process
(under torchrun every rank computes it and rank 0's result is returned).

``python -m pretrain.lincls RUN_DIR/checkpoint.pth [--data DIR] [--epochs 100] [--lr 30] ...``
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from pretrain.base.errors import UserError
from pretrain.base.fileio import atomic_save, atomic_write_json, atomic_write_text, refuse_overwrite
from pretrain.base.rundir import RunDir
from pretrain.data import datasets as data
from pretrain.data.augment import normalize_batch, resized_crop, sample_crops
from pretrain.data.loaders import eval_loaders, imagefolder_sets, loader_workers
from pretrain.eval.probe import linear_probe
from pretrain.eval.protocol import PROTOCOLS, LinclsConfig, ProbeConfig, default_protocol, is_result, provenance
from pretrain.models.encoder import backbone_forward, feature_dim, load_backbone
from pretrain.runtime import distributed as D
from pretrain.runtime.checkpoint import load
from pretrain.runtime.schedule import step_lr
from pretrain.runtime.seeding import seed_for

LINCLS_FORMAT = "mocobench-lincls-v1"


def _accuracy(logits, y):
    top = logits.topk(min(5, logits.shape[1]), 1).indices
    return ((top[:, 0] == y).float().sum().item(), (top == y[:, None]).any(1).float().sum().item())


# -- files --------------------------------------------------------------------------------------------------

def output_paths(ckpt_path, out) -> tuple[Path, Path, Path]:
    """(result JSON, per-epoch lincls checkpoint, per-epoch metrics) - the latter two beside the JSON."""
    o = Path(out) if out else RunDir(Path(ckpt_path).parent).lincls
    return o, o.with_name(f"{o.stem}_checkpoint.pth"), o.with_name(f"{o.stem}_metrics.jsonl")


def check_writable(path: Path) -> None:
    """One UserError, before any training, if ``path`` cannot be written (nothing is created here)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"output {path} is a directory; pass a file name (e.g. {path / 'lincls.json'})")
    p = path.parent
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise UserError(f"cannot write {path}: {p} is not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: {p} is not writable")


def backbone_fingerprint(state: dict) -> str:
    """sha256 of the query encoder's tensors (names, dtypes, shapes, bytes): which backbone a lincls
    checkpoint was trained on, wherever the pretraining checkpoint file has moved."""
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{v.dtype}|{tuple(v.shape)}|".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _sanity_check(enc: nn.Module, state: dict) -> None:
    """Official main_lincls.py: the frozen backbone did not change."""
    now = enc.state_dict()
    for k, v in state.items():
        if k.startswith("fc."):
            continue
        if not torch.equal(now[k].cpu(), v.cpu()):
            raise RuntimeError(f"sanity check failed: backbone tensor {k} changed during the linear protocol")


def _new_fc(enc: nn.Module, classes: int, dev) -> nn.Linear:
    return _new_fc_dim(feature_dim(enc), classes, dev)


def _new_fc_dim(dim: int, classes: int, dev) -> nn.Linear:
    fc = nn.Linear(dim, classes).to(dev)
    fc.weight.data.normal_(mean=0.0, std=0.01)
    fc.bias.data.zero_()
    return fc


def _summary_line(res: dict) -> str:
    s = f"linear protocol: top-1 {res['lincls_acc1']:.2f}%  top-5 {res['lincls_acc5']:.2f}%"
    if res.get("lincls_best_acc1") is not None:
        s += f"  (best top-1 {res['lincls_best_acc1']:.2f}% at epoch {res['lincls_best_epoch']})"
    if res.get("protocol") == "logreg":
        return s + (f"  [logreg probe: lambda {res['lambda']:g}, {res['iterations']} L-BFGS iterations, gradient "
                    f"norm {res['grad_norm']:.1e}{'' if res['converged'] else ' NOT CONVERGED'}, "
                    f"{res['seconds']:.0f}s, {res['checkpoint']}]")
    return s + (f"  [{res['epochs']} epochs, {res['seconds']:.0f}s, cached features: {res['cache_features']}, "
                f"{res['checkpoint']}]")


def _broadcast_result(res: dict) -> dict:
    """Every rank returns rank 0's dict (timings differ per rank)."""
    if D.world_size() == 1:
        return res
    obj = [res]
    dist.broadcast_object_list(obj, src=0)
    return obj[0]


def _is_metrics(path: Path) -> bool:
    """Whether ``path`` holds per-epoch metrics of this protocol (JSON objects with ``epoch``, one a line)."""
    try:
        rows = [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]
    except (OSError, ValueError):
        return False
    return all(isinstance(r, dict) and "epoch" in r for r in rows)


def _finish(res: dict, out_path: Path) -> dict:
    res = _broadcast_result(res)
    if D.is_main():
        print(_summary_line(res), flush=True)           # before the write: a late write error never loses it
        atomic_write_json(out_path, res)
    return res


# -- entry point ------------------------------------------------------------------------------------------

def run(ckpt_path: str, lc: LinclsConfig | None = None, preset: str | None = None, out: str | None = None,
        progress: bool = True, device: str = "auto", data_dir: str | None = None,
        workers: int | None = None, timeout_min: int = 60) -> dict:
    """The linear protocol on ``ckpt_path``'s query encoder; writes the result JSON (rank 0) and returns it on
    every rank. Launched with several processes (torchrun / srun tasks) it initialises the process group
    (unless the caller did; a group created here is destroyed at the end), so EVERY rank must call it.

    The processes meet (group rendezvous, or a barrier in the caller's group) BEFORE the checkpoint is read:
    called right after pretraining in the same processes, no rank reads ``ckpt_path`` while rank 0 may still
    be writing it."""
    lc = lc or LinclsConfig(protocol="")            # the dataset's default protocol (default_protocol)
    if lc.epochs < 1 or lc.batch_size < 1 or not lc.lr > 0:
        raise UserError("epochs and batch size must be >= 1 and lr > 0")
    if lc.protocol and lc.protocol not in PROTOCOLS:
        raise UserError(f"linear protocol {lc.protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    out_path, lck_path, metrics_path = output_paths(ckpt_path, out)
    check_writable(out_path)
    # nothing replaces the checkpoint or a user's own file (the per-epoch checkpoint is checked on resume)
    refuse_overwrite([out_path], [ckpt_path], ours=is_result)
    refuse_overwrite([lck_path], [ckpt_path])
    refuse_overwrite([metrics_path], [ckpt_path], ours=_is_metrics)
    had_group = D.is_dist()
    dev = D.init(device, timeout_min=int(timeout_min))
    try:
        if had_group:
            dist.barrier()
        torch.manual_seed(lc.seed)
        cfg, enc, state = load_backbone(ckpt_path, preset, data_dir)
        if workers is not None:
            cfg = dataclasses.replace(cfg, workers=int(workers))
        if not lc.protocol:                                 # '': the dataset's default
            lc = dataclasses.replace(lc, protocol=default_protocol(cfg.dataset))
        if cfg.dataset != "imagefolder":
            return _run_fixed(ckpt_path, lc, cfg, enc, state, dev, out_path, progress)
        if lc.cache_features:
            raise UserError("--cache-features needs a fixed-size dataset; imagefolder runs the augmented protocol")
        if lc.protocol != "sgd":
            raise UserError(f"--protocol {lc.protocol} needs a fixed-size dataset; imagefolder runs main_lincls.py's "
                            f"augmented SGD protocol (--protocol sgd)")
        return _run_imagefolder(ckpt_path, lc, cfg, enc, state, imagefolder_sets(cfg), dev, out_path, lck_path,
                                metrics_path, progress)
    finally:
        if not had_group:
            D.cleanup()


# -- fixed-size datasets (tensors; one process) -----------------------------------------------------------

def _run_fixed(ckpt_path, lc, cfg, enc, state, dev, out_path, progress) -> dict:
    enc = enc.to(dev).eval()                               # frozen, eval-mode BN, as the official protocol
    for p in enc.parameters():
        p.requires_grad = False

    @torch.no_grad()
    def feats(x):
        return backbone_forward(enc, x)

    res = fixed_protocol(lc, cfg, feats, feature_dim(enc), dev, progress)
    _sanity_check(enc, state)
    res["checkpoint"] = str(ckpt_path)
    res.update(provenance(lc, res["cache_features"], backbone_fingerprint(state), ckpt_path, cfg.eval_split))
    return _finish(res, out_path)


def fixed_protocol(lc: LinclsConfig, cfg, feats, dim: int, dev, progress: bool = False, sets=None) -> dict:
    """The linear protocol on a fixed-size dataset (one process) for any frozen feature function: ``feats``
    maps a batch of normalised images (N, C, image_size, image_size) to (N, ``dim``) features. Used by the
    checkpoint path (the frozen backbone) and by :mod:`pretrain.eval.baselines` (random init, raw pixels).

    fc (dim -> classes) initialised N(0, 0.01) from the global RNG at this point (the caller seeds it), SGD with
    ``lc``'s lr / momentum / weight decay / batch / step schedule; with ``cache_features`` (default) the
    features of the un-augmented training images are computed once. Returns lincls_acc1/acc5 on the test set
    (after ``knn_subset``), epochs, lr, cache_features and seconds."""
    if cfg.dataset == "imagefolder":
        raise UserError("the fixed-size linear protocol needs a fixed-size dataset (cifar10/100, stl10, "
                        "fashion_mnist, synthetic), not imagefolder")
    (tr_x, tr_y), (te_x, te_y) = sets if sets is not None else eval_loaders(cfg)
    if lc.protocol == "logreg":
        return _probe_protocol(lc, cfg, feats, dev, (tr_x, tr_y), (te_x, te_y))
    cache = lc.cache_features if lc.cache_features is not None else True
    classes = int(max(int(tr_y.max()), int(te_y.max())) + 1)
    fc = _new_fc_dim(dim, classes, dev)
    opt = torch.optim.SGD(fc.parameters(), lr=lc.lr, momentum=lc.momentum, weight_decay=lc.weight_decay)
    mean, std = data.stats(cfg)

    if cache:
        with torch.no_grad():
            ftr = torch.cat([feats(normalize_batch(b.to(dev), mean, std, cfg.image_size))
                             for b in tr_x.split(512)])
    t0 = time.time()
    g = torch.Generator().manual_seed(lc.seed)
    for epoch in tqdm(range(lc.epochs), desc="linear protocol", disable=not (progress and D.is_main()),
                      leave=False):
        for group in opt.param_groups:
            group["lr"] = step_lr(lc.lr, epoch, lc.schedule)
        order = torch.randperm(len(tr_y), generator=g)
        batches = [(order[i:i + lc.batch_size]) for i in range(0, len(order), lc.batch_size)]
        for bi in batches:
            if cache:
                f = ftr[bi.to(dev)]
            else:
                x = tr_x[bi].to(dev).float() / 255.0
                n, _, h, w = x.shape
                boxes = sample_crops(n, h, w, g, "cpu", scale=(0.08, 1.0)).to(dev)
                flip = (torch.rand(n, generator=g) < 0.5).to(dev)
                x = resized_crop(x, boxes, cfg.image_size, flip)
                m = torch.tensor(mean, device=dev).view(1, -1, 1, 1)
                s = torch.tensor(std, device=dev).view(1, -1, 1, 1)
                f = feats((x - m) / s)
            loss = nn.functional.cross_entropy(fc(f), tr_y[bi].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if not torch.isfinite(loss):
            raise UserError(f"linear protocol diverged (loss {loss.item()}) at epoch {epoch + 1}")
    # evaluation
    c1 = c5 = 0.0
    with torch.no_grad():
        for xb, yb in zip(te_x.split(512), te_y.split(512)):
            logits = fc(feats(normalize_batch(xb.to(dev), mean, std, cfg.image_size)))
            a, b = _accuracy(logits, yb.to(dev))
            c1, c5 = c1 + a, c5 + b
    return {"lincls_acc1": 100.0 * c1 / len(te_y), "lincls_acc5": 100.0 * c5 / len(te_y), "protocol": "sgd",
            "epochs": lc.epochs, "lr": lc.lr, "cache_features": cache, "seconds": time.time() - t0}


def _probe_protocol(lc: LinclsConfig, cfg, feats, dev, train, test) -> dict:
    """The converged probe (:func:`pretrain.eval.probe.linear_probe`) on the frozen features of the un-augmented
    training and test images (cached: the probe is a convex fit on fixed features)."""
    if lc.cache_features is False:
        raise UserError("--protocol logreg fits cached features; --no-cache-features is the SGD protocol's")
    mean, std = data.stats(cfg)
    t0 = time.time()
    with torch.no_grad():
        f = [torch.cat([feats(normalize_batch(b.to(dev), mean, std, cfg.image_size)).float().cpu()
                        for b in x.split(512)]).numpy() for x in (train[0], test[0])]
    res = linear_probe(f[0], train[1].numpy(), f[1], test[1].numpy(), ProbeConfig(seed=lc.seed))
    return {**res, "cache_features": True, "feature_seconds": time.time() - t0 - res["seconds"],
            "seconds": time.time() - t0}


# -- ImageFolder: the official augmented protocol (main_lincls.py), DDP-capable, resumable -----------------

@torch.no_grad()
def evaluate(enc: nn.Module, fc: nn.Module, val_set, batch_size: int, workers: int, dev) -> list:
    """[top-1 correct, top-5 correct, images] over the WHOLE val set: each rank takes one contiguous slice
    (no padding, unlike DistributedSampler) and the counts are all-reduced, so every image counts once."""
    lo, hi = D.shard_range(len(val_set), D.rank(), D.world_size())
    shard = torch.utils.data.Subset(val_set, range(lo, hi))
    loader = torch.utils.data.DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         pin_memory=dev.type == "cuda",
                                         worker_init_fn=data.worker_init if workers else None)
    counts = torch.zeros(3, dtype=torch.float64, device=dev)
    for x, y in loader:
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        a, b = _accuracy(fc(backbone_forward(enc, x)), y)
        counts += torch.tensor([a, b, float(len(y))], dtype=torch.float64, device=dev)
    if D.world_size() > 1:
        dist.all_reduce(counts)
    return counts.tolist()


def train_epoch(enc, fc, opt, train_set, sampler, epoch: int, lc: LinclsConfig, batch: int, workers: int,
                dev) -> list:
    """One epoch of the classifier on augmented views; returns [loss sum, images] over all ranks."""
    seed = seed_for(lc.seed, epoch, D.rank())
    torch.manual_seed(seed)                              # the transforms' RNG with workers=0
    sampler.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch, sampler=sampler, num_workers=workers,
                                         pin_memory=dev.type == "cuda", drop_last=False,
                                         generator=torch.Generator().manual_seed(seed),   # workers' seeds
                                         worker_init_fn=data.worker_init if workers else None)
    for group in opt.param_groups:
        group["lr"] = step_lr(lc.lr, epoch, lc.schedule)
    sums = torch.zeros(2, dtype=torch.float64, device=dev)
    for x, y in loader:
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        with torch.no_grad():
            f = backbone_forward(enc, x)
        loss = nn.functional.cross_entropy(fc(f), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sums[0] += loss.detach().double() * len(y)
        sums[1] += len(y)
    if D.world_size() > 1:
        dist.all_reduce(sums)
    return sums.tolist()


def _identity(lc: LinclsConfig, state: dict, classes: int, n_train: int, n_val: int) -> dict:
    lcd = dataclasses.asdict(lc)
    lcd["cache_features"] = False
    return {"lincls_config": lcd, "backbone": backbone_fingerprint(state), "classes": classes,
            "train_images": n_train, "val_images": n_val}


def _resume_state(lck_path: Path, ident: dict, ckpt_path) -> dict | None:
    if not lck_path.exists():
        return None
    ck = load(lck_path)
    if ck.get("format") != LINCLS_FORMAT:
        raise UserError(f"{lck_path}: not a linear-protocol checkpoint; delete it or choose another --output")
    old = ck.get("identity", {})
    diff = [k for k in ("backbone", "classes", "train_images", "val_images") if old.get(k) != ident[k]]
    diff += [f"--{k.replace('_', '-')}" for k, v in ident["lincls_config"].items()
             if old.get("lincls_config", {}).get(k) != v]
    if diff:
        what = ", ".join("backbone weights" if d == "backbone" else d for d in diff)
        raise UserError(f"{lck_path} is from another linear protocol run ({what} differ from {ckpt_path}); "
                        f"delete it to start over or choose another --output")
    return ck


def _run_imagefolder(ckpt_path, lc, cfg, enc, state, sets, dev, out_path, lck_path, metrics_path,
                     progress) -> dict:
    train_set, val_set = sets
    world, rank = D.world_size(), D.rank()
    if lc.batch_size % world:
        raise UserError(f"linear protocol batch size {lc.batch_size} is not divisible by the {world} processes")
    batch, workers = lc.batch_size // world, loader_workers(cfg)
    enc = enc.to(dev).eval()                               # frozen, eval-mode BN (running stats unchanged)
    for p in enc.parameters():
        p.requires_grad = False
    classes = len(train_set.ds.classes)
    fc = _new_fc(enc, classes, dev)
    opt = torch.optim.SGD(fc.parameters(), lr=lc.lr, momentum=lc.momentum, weight_decay=lc.weight_decay)
    ident = _identity(lc, state, classes, len(train_set), len(val_set))
    start, best1, best_epoch, history, seconds = 0, -math.inf, 0, [], 0.0
    ck = _resume_state(lck_path, ident, ckpt_path)
    if ck is not None:
        fc.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        start, best1, best_epoch = int(ck["epoch"]), float(ck["best_acc1"]), int(ck["best_epoch"])
        history, seconds = list(ck["history"]), float(ck["seconds"])
    net = (DDP(fc, device_ids=[dev] if dev.type == "cuda" else None) if world > 1 else fc)
    sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                                  seed=lc.seed, drop_last=False)
    bar = tqdm(range(start, lc.epochs), desc="linear protocol", disable=not (progress and D.is_main()),
               initial=start, total=lc.epochs, dynamic_ncols=True, leave=False)
    for epoch in bar:
        t0 = time.time()
        loss_sum, n_train = train_epoch(enc, net, opt, train_set, sampler, epoch, lc, batch, workers, dev)
        loss = loss_sum / max(n_train, 1.0)
        if not math.isfinite(loss):
            raise UserError(f"linear protocol diverged (loss {loss}) at epoch {epoch + 1}")
        c1, c5, n_val = evaluate(enc, fc, val_set, batch, workers, dev)
        acc1, acc5 = 100.0 * c1 / n_val, 100.0 * c5 / n_val
        if epoch == start:
            _sanity_check(enc, state)                  # as main_lincls.py, after the first epoch
        if acc1 > best1:
            best1, best_epoch = acc1, epoch + 1
        seconds += time.time() - t0
        history.append({"epoch": epoch + 1, "lr": step_lr(lc.lr, epoch, lc.schedule), "loss": loss,
                        "val_acc1": acc1, "val_acc5": acc5, "val_images": int(n_val),
                        "seconds": time.time() - t0})
        bar.set_postfix(loss=f"{loss:.3f}", acc1=f"{acc1:.2f}", refresh=False)
        if D.is_main():
            atomic_save({"format": LINCLS_FORMAT, "epoch": epoch + 1, "state_dict": fc.state_dict(),
                         "optimizer": opt.state_dict(), "best_acc1": best1, "best_epoch": best_epoch,
                         "history": history, "seconds": seconds, "identity": ident,
                         "backbone_checkpoint": str(ckpt_path)}, lck_path)
            atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in history))
    bar.close()
    _sanity_check(enc, state)                          # after training
    last = history[-1]
    res = {"lincls_acc1": last["val_acc1"], "lincls_acc5": last["val_acc5"], "lincls_best_acc1": best1,
           "lincls_best_epoch": best_epoch, "epochs": lc.epochs, "lr": lc.lr, "cache_features": False,
           "seconds": seconds, "checkpoint": str(ckpt_path), "protocol": "main_lincls (augmented, ImageFolder)",
           "batch_size": lc.batch_size, "world_size": world, "classes": classes, "train_images": len(train_set),
           "val_images": last["val_images"], "resumed_at_epoch": start, "data": cfg.data,
           **provenance(lc, False, backbone_fingerprint(state), ckpt_path)}
    res = _finish(res, out_path)
    if D.is_main():
        lck_path.unlink(missing_ok=True)
    return res

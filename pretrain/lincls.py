"""Linear classification protocol (paper Sec. 4.1; official ``main_lincls.py``): a linear classifier on the
frozen, eval-mode backbone of the query encoder. fc initialised N(0, 0.01), bias 0; SGD lr 30, momentum 0.9,
weight decay 0, batch 256, 100 epochs, lr x0.1 at epochs 60 and 80; training views RandomResizedCrop + flip.
After training, a sanity check asserts that the backbone still equals the checkpoint.

Fast path (``--cache-features``, the default for fixed-size datasets): the frozen backbone's features are
computed once for un-augmented training images and the classifier is trained on them. This drops the
augmentation of the linear stage (a documented deviation that makes the protocol take seconds at small scale);
``--no-cache-features`` runs the official augmented protocol.

``python -m pretrain.lincls RUN_DIR/checkpoint.pth [--epochs 100] [--lr 30] ...``
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from . import data
from .augment import normalize_batch, resized_crop, sample_crops
from .checkpoint import atomic_write_json, load, query_encoder_state
from .config import Config, _check_keys, load_config, validate
from .encoder import backbone_forward, build_encoder, feature_dim
from .errors import UserError, die
from .knn import eval_loaders, extract
from .schedule import step_lr


@dataclass
class LinclsConfig:
    """The official linear-protocol defaults."""
    epochs: int = 100
    lr: float = 30.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 256
    schedule: list = field(default_factory=lambda: [60, 80])
    cache_features: bool | None = None      # None: cache for fixed-size datasets
    seed: int = 0


def load_backbone(ckpt_path: str, preset: str | None = None):
    """(config, encoder with the checkpoint's query-encoder weights, those weights)."""
    ck = load(ckpt_path)
    if "config" in ck:
        raw = dict(ck["config"])
        _check_keys(raw, str(ckpt_path))
        cfg = validate(Config(**raw))
    elif preset:
        cfg = load_config(preset)
    else:
        raise UserError(f"{ckpt_path}: no config in the checkpoint (an official MoCo checkpoint?): pass --preset")
    state = query_encoder_state(ck, ckpt_path)
    enc = build_encoder(cfg.arch, cfg.moco_dim, cfg.mlp, cfg.cifar_stem, cfg.in_chans, cfg.width)
    try:
        enc.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{ckpt_path}: weights do not fit {cfg.arch} (width {cfg.width}, in_chans "
                        f"{cfg.in_chans}): {str(e).splitlines()[0]}") from None
    return cfg, enc, state


def _accuracy(logits, y):
    top = logits.topk(min(5, logits.shape[1]), 1).indices
    return ((top[:, 0] == y).float().sum().item(), (top == y[:, None]).any(1).float().sum().item())


def run(ckpt_path: str, lc: LinclsConfig | None = None, preset: str | None = None, out: str | None = None,
        progress: bool = True, device: str = "cpu") -> dict:
    lc = lc or LinclsConfig()
    dev = torch.device(device)
    torch.manual_seed(lc.seed)
    cfg, enc, state = load_backbone(ckpt_path, preset)
    enc = enc.to(dev).eval()                               # frozen, eval-mode BN, as the official protocol
    for p in enc.parameters():
        p.requires_grad = False
    (tr_x, tr_y), (te_x, te_y) = eval_loaders(cfg)
    fixed = isinstance(tr_x, torch.Tensor)
    cache = lc.cache_features if lc.cache_features is not None else fixed
    if cache and not fixed:
        raise UserError("--cache-features needs a fixed-size dataset; imagefolder runs the augmented protocol")
    classes = int(max(int(tr_y.max()), int(te_y.max())) + 1)
    fc = nn.Linear(feature_dim(enc), classes).to(dev)
    fc.weight.data.normal_(mean=0.0, std=0.01)
    fc.bias.data.zero_()
    opt = torch.optim.SGD(fc.parameters(), lr=lc.lr, momentum=lc.momentum, weight_decay=lc.weight_decay)
    mean, std = data.stats(cfg)

    @torch.no_grad()
    def feats(x):
        return backbone_forward(enc, x)

    if cache:
        with torch.no_grad():
            ftr = torch.cat([feats(normalize_batch(b.to(dev), mean, std, cfg.image_size))
                             for b in tr_x.split(512)])
    t0 = time.time()
    g = torch.Generator().manual_seed(lc.seed)
    for epoch in tqdm(range(lc.epochs), desc="linear protocol", disable=not progress, leave=False):
        for group in opt.param_groups:
            group["lr"] = step_lr(lc.lr, epoch, lc.schedule)
        if fixed:
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
        else:
            raise UserError("the augmented ImageNet linear protocol runs through the official main_lincls.py "
                            "pipeline on GPUs; use a fixed-size dataset here")
        if not torch.isfinite(loss):
            raise UserError(f"linear protocol diverged (loss {loss.item()}) at epoch {epoch + 1}")
    # evaluation
    c1 = c5 = 0.0
    with torch.no_grad():
        for xb, yb in zip(te_x.split(512), te_y.split(512)):
            logits = fc(feats(normalize_batch(xb.to(dev), mean, std, cfg.image_size)))
            a, b = _accuracy(logits, yb.to(dev))
            c1, c5 = c1 + a, c5 + b
    # sanity check (official main_lincls.py): the frozen backbone did not change
    now = enc.state_dict()
    for k, v in state.items():
        if k.startswith("fc."):
            continue
        if not torch.equal(now[k].cpu(), v.cpu()):
            raise RuntimeError(f"sanity check failed: backbone tensor {k} changed during the linear protocol")
    res = {"lincls_acc1": 100.0 * c1 / len(te_y), "lincls_acc5": 100.0 * c5 / len(te_y), "epochs": lc.epochs,
           "lr": lc.lr, "cache_features": cache, "seconds": time.time() - t0, "checkpoint": str(ckpt_path)}
    out_path = Path(out) if out else Path(ckpt_path).parent / "lincls.json"
    atomic_write_json(out_path, res)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pretrain.lincls", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    d = LinclsConfig()
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--schedule", type=int, nargs="+", default=d.schedule)
    p.add_argument("--cache-features", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--preset", default=None, help="architecture/data preset for an official MoCo checkpoint")
    p.add_argument("--output", default=None, help="result JSON (default: lincls.json beside the checkpoint)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    lc = LinclsConfig(a.epochs, a.lr, a.momentum, a.weight_decay, a.batch_size, a.schedule, a.cache_features)
    try:
        if lc.epochs < 1 or lc.batch_size < 1 or not lc.lr > 0:
            raise UserError("epochs and batch size must be >= 1 and lr > 0")
        res = run(a.checkpoint, lc, a.preset, a.output, device=a.device)
    except UserError as e:
        die(e)
    print(f"linear protocol: top-1 {res['lincls_acc1']:.2f}%  top-5 {res['lincls_acc5']:.2f}%  "
          f"({res['epochs']} epochs, {res['seconds']:.0f}s, cached features: {res['cache_features']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

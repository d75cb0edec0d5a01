"""kNN monitor: weighted kNN on L2-normalised features (k = 200, t = 0.1), as the official MoCo CIFAR-10 demo
(after Wu et al. 2018). ``python -m pretrain.knn --preset P [--checkpoint CKPT]`` prints the checkpoint's kNN
(if given) and both baselines the trained features must beat (pretrain/eval/baselines.py): the same network at
random initialisation (seed ``--seed``) and raw pixels, one line each. Given a checkpoint, the network, data
and kNN protocol are the checkpoint's own config (the one it was trained and monitored with; ``--preset``
only for an official checkpoint without one), with the flags given on top."""
from __future__ import annotations

import argparse
import sys

from pretrain.base.errors import UserError, cli, die
from pretrain.config import add_config_args, load_config, overrides_from_args
from pretrain.data.loaders import eval_loaders
from pretrain.eval.baselines import knn_random_init, knn_raw_pixels
from pretrain.eval.knn import knn_accuracy
from pretrain.models.encoder import RESNETS, load_backbone
from pretrain.runtime import distributed as D


@cli
def main(argv=None) -> int:

    p = argparse.ArgumentParser(prog="python -m pretrain.knn", description=__doc__)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--checkpoint", default="", help="a pretrainer checkpoint (its kNN is printed first)")
    add_config_args(p, RESNETS)
    args = p.parse_args(argv)
    lines = []
    try:
        enc = None
        if args.checkpoint:        # the network and data the checkpoint was trained with, the flags on top
            cfg, enc, _ = load_backbone(args.checkpoint, args.preset, overrides=overrides_from_args(args))
        else:
            cfg = load_config(args.preset, overrides_from_args(args))
        how = f"k={cfg.knn_k}, t={cfg.knn_t}"
        dev = D.init(cfg.device, cfg.dist_timeout_min)
        sets = eval_loaders(cfg)
        if enc is not None:
            acc = knn_accuracy(enc.to(dev), cfg, dev, sets)
            lines.append(f"kNN top-1 ({args.checkpoint}, {how}, {cfg.knn_feature} features): {acc:.2f}%")
        acc = knn_random_init(cfg, dev, sets)
        lines.append(f"kNN top-1 (random init, seed {cfg.seed}, {how}, {cfg.knn_feature} features): {acc:.2f}%")
        if cfg.dataset == "imagefolder":
            lines.append("kNN top-1 (raw pixels): not computed for imagefolder (fixed-size datasets only)")
        else:
            acc = knn_raw_pixels(cfg, dev, sets)
            lines.append(f"kNN top-1 (raw pixels, {cfg.in_chans}x{cfg.image_size}x{cfg.image_size} normalised, "
                         f"{how}): {acc:.2f}%")
        D.cleanup()
    except UserError as e:
        die(e)
    if D.rank() == 0:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

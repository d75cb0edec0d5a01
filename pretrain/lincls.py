"""``python -m pretrain.lincls RUN_DIR/checkpoint.pth [--epochs 100] [--lr 30] ...``: the linear classification
protocol on a checkpoint's frozen backbone (:mod:`pretrain.eval.lincls`)."""
from __future__ import annotations

import argparse
import sys

from pretrain.base.errors import UserError, cli, die
from pretrain.eval import lincls as lincls_lib
from pretrain.eval.lincls import run
from pretrain.eval.protocol import PROTOCOLS, LinclsConfig


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pretrain.lincls", description=lincls_lib.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    d = LinclsConfig()
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="total over all processes")
    p.add_argument("--schedule", type=int, nargs="+", default=d.schedule)
    p.add_argument("--cache-features", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--protocol", default=None, choices=PROTOCOLS,
                   help="logreg: the converged probe (pretrain/eval/probe.py; the default on fixed-size datasets); "
                        "sgd: main_lincls.py's (the default on imagefolder)")
    p.add_argument("--preset", default=None, help="architecture/data preset for an official MoCo checkpoint")
    p.add_argument("--data", default=None, help="dataset root (default: the checkpoint config's data path)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers per node (default: the checkpoint config's)")
    p.add_argument("--output", default=None, help="result JSON (default: lincls.json beside the checkpoint)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: cuda if available, else cpu")
    p.add_argument("--dist-timeout-min", type=int, default=60, help="timeout of the process group's collectives")
    a = p.parse_args(argv)
    lc = LinclsConfig(a.epochs, a.lr, a.momentum, a.weight_decay, a.batch_size, a.schedule, a.cache_features,
                      a.seed, a.protocol or "")
    try:
        if a.workers is not None and a.workers < 0:
            raise UserError("--workers must be >= 0")
        if a.dist_timeout_min < 1:
            raise UserError("--dist-timeout-min must be >= 1")
        run(a.checkpoint, lc, a.preset, a.output, device=a.device, data_dir=a.data, workers=a.workers,
            timeout_min=a.dist_timeout_min)
    except UserError as e:
        die(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())

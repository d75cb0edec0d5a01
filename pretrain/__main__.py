"""``python -m pretrain``: MoCo pretraining (see README). Every config key is a flag; ``--preset`` picks the
YAML preset (imagenet, imagenet-v2, imagenet100, cifar10, tiny) or a YAML file of your own."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import yaml

from pretrain.base import status as S
from pretrain.base.errors import EXIT_DIVERGED, EXIT_NOT_CONVERGED, UserError, cli, die
from pretrain.config import add_config_args, config_hash, load_config, overrides_from_args
from pretrain.engine.lifecycle import run
from pretrain.models.encoder import RESNETS
from pretrain.runtime.distributed import planned_rank, planned_world_size


def parse(argv=None):
    p = argparse.ArgumentParser(prog="python -m pretrain", description=__doc__)
    p.add_argument("--preset", default="imagenet", help="preset name or YAML file (default: imagenet)")
    p.add_argument("--output", default="", help="run directory (default: runs/<preset>-<config hash>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --output from its checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_args(p, RESNETS)
    return p.parse_args(argv)


@cli
def main(argv=None) -> int:
    args = parse(argv)
    try:
        cfg = load_config(args.preset, overrides_from_args(args))
        if args.print_config:
            print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
            return 0
        out = Path(args.output) if args.output else Path("runs") / f"{Path(args.preset).stem}-{config_hash(cfg, planned_world_size())}"
        t = time.time()
        summary = run(cfg, out, resume=args.resume or not args.output, progress=not args.no_progress)
    except UserError as e:
        die(e)
    except KeyboardInterrupt:
        print("interrupted: the last completed epoch is in the checkpoint; rerun with --resume", file=sys.stderr)
        return 130
    if planned_rank() == 0:                      # one report per run, not per process
        if summary["status"] in (S.DIVERGED, S.NOT_CONVERGED):
            what = "diverged" if summary["status"] == S.DIVERGED else "did not converge"
            detail = str(summary.get("reason") or "")
            for prefix in ("diverged: ", "did not converge: "):
                detail = detail[len(prefix):] if detail.startswith(prefix) else detail
            print(f"error: run {what} (status {summary['status']}): {detail} (recorded in {out / 'summary.json'})",
                  file=sys.stderr)
        else:
            knn = summary.get("knn_acc")
            knn = f"kNN {knn:.2f}%" if knn is not None else "no kNN monitor"
            print(f"done: {summary['epochs_done']} epochs in {time.time() - t:.0f}s, "
                  f"{knn}, pretext acc@1 {summary['pretext_acc1']:.1f}%, "
                  f"{summary['images_per_s']:.0f} img/s -> {out}")
            print(json.dumps(summary))
    if summary["status"] == S.DIVERGED:
        return EXIT_DIVERGED
    return EXIT_NOT_CONVERGED if summary["status"] == S.NOT_CONVERGED else 0


if __name__ == "__main__":
    sys.exit(main())

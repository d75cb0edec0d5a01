"""``python -m pretrain.bench``: images/s of the training step and its time split (augmentation, query
forward/backward, momentum update, key forward, loss, queue/bank), and the two augmentation paths (per image
in DataLoader workers vs batched on the device), for a preset and any overrides (batch, K, mechanism...).

Examples: ``python -m pretrain.bench --preset tiny --batch-size 256 --moco-k 4096 --steps 10``;
``python -m pretrain.bench --preset tiny --compile default --compare --official ../moco`` (the compiled step,
the eager one and the official ``moco/builder.py``, timed in turn in one process).
"""
from __future__ import annotations

import argparse
import json
import sys

from pretrain.base.errors import cli
from pretrain.config import add_config_args, load_config, overrides_from_args
from pretrain.engine.bench import format_table, profile_step, run_bench
from pretrain.models.encoder import RESNETS


def _steps(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pretrain.bench", description=__doc__)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=_steps, default=10, help="timed steps (>= 1)")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    p.add_argument("--rounds", type=_steps, default=3, help="rounds of --steps steps per variant, in turn (>= 1)")
    p.add_argument("--compare", action="store_true",
                   help="also time the eager step in fp32 (contiguous), bf16 + channels_last (and fp16 + "
                        "channels_last on CUDA), and the config's precision eager when --compile is set")
    p.add_argument("--official", default="", metavar="DIR",
                   help="also time the official moco/builder.py from a facebookresearch/moco checkout in DIR")
    p.add_argument("--profile", action="store_true",
                   help="instead: torch.profiler's table of the config's whole step over --steps steps")
    add_config_args(p, RESNETS)
    args = p.parse_args(argv)
    cfg = load_config(args.preset, overrides_from_args(args))
    if args.profile:
        print(profile_step(cfg, args.steps))
        return 0
    result = run_bench(cfg, args.steps, compare=args.compare, official=args.official, rounds=args.rounds)
    result = {"preset": args.preset, **result}
    print(json.dumps(result) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

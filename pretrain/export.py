"""``python -m pretrain.export RUN_DIR/checkpoint.pth OUT.pth.tar``: a pretrainer checkpoint in the official MoCo
layout (:mod:`pretrain.eval.export`)."""
from __future__ import annotations

import argparse
import sys

from pretrain.base.errors import UserError, cli, die
from pretrain.eval import export as export_lib
from pretrain.eval.export import export


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pretrain.export", description=export_lib.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a pretrainer checkpoint (RUN_DIR/checkpoint.pth)")
    p.add_argument("output", help="the official-layout file to write (e.g. moco_v1_200ep.pth.tar)")
    a = p.parse_args(argv)
    try:
        off = export(a.checkpoint, a.output)
    except UserError as e:
        die(e)
    sd = off["state_dict"]
    parts = sorted({k.split(".")[1] for k in sd})
    print(f"wrote {a.output}: {len(sd)} tensors ({', '.join('module.' + x for x in parts)}), arch {off['arch']}, "
          f"epoch {off['epoch']}, official MoCo layout: read by main_lincls.py --pretrained, "
          f"detection/convert-pretrain-to-detectron2.py, python -m pretrain.lincls, python -m transfer.convert")
    return 0


if __name__ == "__main__":
    sys.exit(main())

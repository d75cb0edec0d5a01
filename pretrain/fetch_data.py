"""``python -m pretrain.fetch_data``: make the datasets of the presets available.

- ``python -m pretrain.fetch_data`` (or ``... fashion_mnist``): Fashion-MNIST for the ``tiny`` preset. Uses
  Debian's ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist) when present, otherwise downloads it
  with torchvision into ``data/FashionMNIST/raw`` of the repository.
- ``python -m pretrain.fetch_data imagenet100 --from /path/to/imagenet --to DIR``: the ImageNet-100 subset
  (CMC's 100 classes, ``pretrain/data/imagenet100.txt``) of an ImageNet folder in ImageFolder layout, as
  ``DIR/train/<wnid>`` and ``DIR/val/<wnid>`` symlinks to its class folders (nothing is copied or
  downloaded). The validation images must already be sorted into ``val/<wnid>/``. Running it again with the
  same arguments changes nothing.
"""
from __future__ import annotations

import argparse
import sys

from pretrain.base.errors import UserError, cli, die
from pretrain.data.fetch import fashion_mnist, imagenet100


class _Parser(argparse.ArgumentParser):
    def error(self, message):              # one line and exit code 2, as every other error
        die(UserError(f"{self.prog}: {message}"))


@cli
def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="python -m pretrain.fetch_data",
                description="Make a preset's dataset available (default: Fashion-MNIST for the tiny preset).")
    sub = p.add_subparsers(dest="what", metavar="{fashion_mnist,imagenet100}")
    sub.add_parser("fashion_mnist", help="Fashion-MNIST for the tiny preset (the default)")
    q = sub.add_parser("imagenet100", help="ImageNet-100 (CMC's 100 classes) as symlinks into an ImageNet folder")
    q.add_argument("--from", dest="src", metavar="IMAGENET",
                   help="ImageNet folder with train/<wnid>/ and val/<wnid>/ (ImageFolder layout)")
    q.add_argument("--to", dest="dst", metavar="DIR", help="output folder (new or empty)")
    args = p.parse_args(argv)
    try:
        if args.what == "imagenet100":
            return imagenet100(args.src, args.dst)
        return fashion_mnist()
    except UserError as e:
        die(e)
    except OSError as e:
        die(UserError(f"{args.what or 'fashion_mnist'}: {e}"))
    return 2


if __name__ == "__main__":
    sys.exit(main())

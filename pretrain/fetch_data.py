"""``python -m pretrain.fetch_data``: make sure Fashion-MNIST is available for the ``tiny`` preset.

Uses Debian's ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist) when present, otherwise
downloads it with torchvision into ``data/FashionMNIST/raw`` of the repository."""
from __future__ import annotations

import sys

from .data import FASHION_MNIST_DIRS, REPO, find_fashion_mnist, load_fashion_mnist
from .errors import UserError, die


def main() -> int:
    try:
        d = find_fashion_mnist("")
    except UserError:
        import torchvision.datasets as tvd
        print("Fashion-MNIST: not installed by apt; downloading with torchvision into data/ ...")
        try:
            tvd.FashionMNIST(str(REPO / "data"), train=True, download=True)
            tvd.FashionMNIST(str(REPO / "data"), train=False, download=True)
        except Exception as e:  # noqa: BLE001 - network problems of any kind
            die(UserError(f"Fashion-MNIST download failed ({e}); install Debian's dataset-fashion-mnist "
                          f"or put the idx files in one of: {', '.join(FASHION_MNIST_DIRS)}"))
        d = find_fashion_mnist("")
    n_train = len(load_fashion_mnist(str(d), True))
    n_test = len(load_fashion_mnist(str(d), False))
    print(f"Fashion-MNIST: {n_train} train + {n_test} test images in {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

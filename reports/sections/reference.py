"""Other reference numbers of the official repository, shown for the reader and not reproduced cell by cell: the
ImageNet linear top-1 of its 5 trials and its CIFAR-10 demo. Reads no rows of the results table."""
from __future__ import annotations

from .. import data
from ..cells import Table, number, text
from .base import Section


def official_trials(res: data.Results) -> tuple[Table, dict]:
    """The official README's ImageNet linear top-1 over 5 trials (``res`` unused: the paper's numbers only)."""
    tr = data.paper("official_trials")
    body = []
    for (model, ep), sub in tr.groupby(["model", "epochs"], sort=False):
        body.append([text(model), text(ep), text(", ".join(f"{v:.1f}" for v in sub["acc1"])),
                     text(f"{sub['mean'].iloc[0]:.1f} ± {sub['std'].iloc[0]:.1f}")])
    t = Table("official_trials", "Official README: ImageNet linear top-1 over 5 trials",
              ["model", "epochs", "trials (%)", "mean ± std (%)"], body,
              caption=tr["source"].iloc[0])
    return t, {}


def cifar_demo(res: data.Results) -> tuple[Table, dict]:
    """The official CIFAR-10 demo's kNN top-1 (``res`` unused: the paper's numbers only)."""
    cf = data.paper("cifar_demo")
    t = Table("cifar_demo", "Official CIFAR-10 demo (ResNet-18, kNN top-1)",
              ["arch", "epochs", "kNN top-1 (%)", "loss"],
              [[text(r["arch"]), text(r["epochs"]), number(r["knn_acc"]), text(r["loss"])]
               for _, r in cf.iterrows()], caption=cf["source"].iloc[0])
    return t, {}


SECTION = Section(name="reference", anchor="reference", title="Other reference numbers (official repository)",
                  tables=(official_trials, cifar_demo))

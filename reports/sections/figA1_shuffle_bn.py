"""MoCo Fig. A.1 (He et al. 2020): shuffling BN. Final pretext and kNN accuracy per mechanism with shuffle BN on
vs off as a table, and their per-epoch curves (each run's ``metrics.jsonl``) as a plot."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import MaxNLocator

from .. import data
from ..cells import Cell, Table, aggregate, text
from ..figures import COLORS, MARKERS, STYLE, not_run, save
from ..tables import groups
from .base import Figure, Section

GRID = "figA1_shuffle_bn"


def table(res: data.Results) -> tuple[Table, dict]:
    """Final pretext and kNN accuracy per mechanism, shuffle BN on vs off (the paper gives no numbers)."""
    rows = res.grid(GRID)
    g = groups(rows, ["mechanism", "shuffle_bn"])
    body, cells = [], {}
    order = {m: i for i, m in enumerate(data.MECHANISMS)}
    for (mech, sb), sub in sorted(g.items(), key=lambda kv: (order.get(kv[0][0], 9),
                                                               kv[0][1] == "off", kv[0][1] or "")):
        pre = aggregate(sub, "pretext_acc1", res.run_path)
        knn = aggregate(sub, "knn_acc", res.run_path)
        cells[(mech, sb)] = {"pretext_acc1": pre, "knn_acc": knn, "rows": sub}
        ep = sorted({int(e) for e in sub["epochs"].dropna()})
        body.append([text(data.MECH_LABEL.get(mech, mech or "?")),
                     text("off" if sb == "off" else f"on ({sb})"), pre, knn,
                     text(", ".join(map(str, ep)) or "—"), text(len(sub))])
    if not body:
        body.append([text("—"), text("—"), Cell(kind="not_run"), Cell(kind="not_run"),
                     text("—"), text(0)])
    t = Table(GRID, "MoCo Fig. A.1: shuffling BN",
              ["mechanism", "shuffle BN", "final pretext top-1 (%)", "final kNN top-1 (%)",
               "epochs", "runs"], body,
              caption="Paper (no numbers): without shuffle-BN the pretext accuracy approaches "
                      "100% while the kNN validation accuracy is lower, for MoCo and end-to-end; "
                      "the memory bank is not affected.")
    return t, {"cells": cells}


def _curves(res: data.Results, rows: pd.DataFrame) -> list:
    """The per-epoch metrics of each run in ``rows`` that has them (in the results' tree)."""
    out = []
    for _, r in rows.iterrows():
        c = data.read_curve(res.run_path(r["run_dir"]))
        if c is not None:
            out.append(c)
    return out


def figure(res: data.Results, parts: dict, out_dir: Path) -> dict:
    """Pretext (training) and kNN (validation) accuracy over epochs, mean over runs: solid = shuffle BN on,
    dashed = off."""
    sh = parts[GRID]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        drawn = 0
        order = {m: i for i, m in enumerate(data.MECHANISMS)}
        for (mech, sb), v in sorted(sh["cells"].items(),
                                    key=lambda kv: (order.get(kv[0][0], 9), kv[0][1] == "off")):
            curves = _curves(res, v["rows"])
            if not curves:
                continue
            cat = pd.concat(curves)
            for ax, col in zip(axes, ("pretext_acc1", "knn_acc")):
                mean = cat.dropna(subset=[col]).groupby("epoch")[col].mean()
                if len(mean) == 0:
                    continue
                drawn += 1
                ax.plot(mean.index, mean.values, color=COLORS.get(mech, "#333333"),
                        ls="--" if sb == "off" else "-", marker=MARKERS.get(mech, "o"), ms=3.5,
                        label=f"{data.MECH_LABEL.get(mech, mech)}, shuffle BN "
                              f"{'off' if sb == 'off' else 'on (' + str(sb) + ')'}"
                              + (f" (mean of {len(curves)})" if len(curves) > 1 else ""))
        for ax, title, yl in ((axes[0], "pretext task (training)", "pretext top-1 accuracy (%)"),
                              (axes[1], "kNN monitor (validation)", "kNN top-1 accuracy (%)")):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(yl)
            ax.set_title(title)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best")
            else:
                not_run(ax)
        axes[0].set_ylim(top=101)
        fig.suptitle("Shuffling BN (MoCo Fig. A.1): solid = shuffle BN on, dashed = off")
        fig.tight_layout()
        return save(fig, out_dir, GRID)


SECTION = Section(
    name=GRID, anchor="figA1", title="MoCo Fig. A.1: shuffling BN", grids=(GRID,), tables=(table,),
    figures=(Figure(GRID, figure, "Fig. A.1: pretext and kNN accuracy over epochs, shuffle BN on vs off"),))

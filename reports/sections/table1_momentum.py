"""MoCo's momentum ablation (He et al. 2020, Sec. 4.1; the suite's "Table 1"): accuracy vs the key encoder's
momentum m, ours next to the paper's (m=0 "fail"), as a table and as a plot with every seed and the baselines."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .. import data
from ..cells import Cell, Table, aggregate, na, number, text
from ..figures import COLORS, STYLE, baseline_lines, not_run, save, seed_points
from ..tables import fmt_m, groups
from . import baselines
from .base import Figure, Section

GRID = "table1_momentum"


def table(res: data.Results) -> tuple[Table, dict]:
    """Accuracy per momentum m, ours (mean ± sd over seeds) beside the paper's."""
    rows = res.grid(GRID)
    metric = data.accuracy_metric(rows)
    paper = data.paper(GRID)
    ours = {k[0]: g for k, g in groups(rows, ["moco_m"]).items()}
    ms = sorted(set(float(m) for m in paper["moco_m"]) | {m for m in ours if m is not None})
    body = []
    cells = {}
    for m in ms:
        c = aggregate(ours.get(m), metric, res.run_path)
        cells[m] = c
        p = paper[np.isclose(paper["moco_m"].astype(float), m)]
        if len(p) == 0:
            pc = na()
        elif str(p["status"].iloc[0]) == "fail":
            pc = Cell(kind="fail", reason=str(p["note"].iloc[0]))
        else:
            pc = number(p["acc1"].iloc[0])
        ks = sorted({int(k) for k in rows.loc[rows["moco_m"] == m, "moco_k"].dropna()}) \
            if len(rows) else []
        body.append([text(fmt_m(m)), c, text(c.n + c.n_failed if c.kind != "not_run" else 0),
                     text(", ".join(map(str, ks)) or "—"), pc])
    t = Table(GRID, "MoCo momentum ablation (Sec. 4.1; the suite's \"Table 1\")",
              ["m", f"ours: {data.METRIC_LABEL[metric]}", "runs", "ours: K",
               "paper: ImageNet linear top-1 (%), K=4096"], body,
              caption="\"fail\" = training did not converge (the paper: the loss oscillates "
                      "for m=0). Ours = mean ± std over seeds.")
    return t, {"metric": metric, "cells": cells}


def figure(res: data.Results, parts: dict, out_dir: Path) -> dict:
    """Accuracy vs m: ours (mean, every seed as a dot, the baselines as lines) | the paper's."""
    paper = data.paper(GRID)
    mom = parts[GRID]
    base = parts.get(baselines.KEY, {}).get("cells")
    cells = mom["cells"]
    ms = sorted(cells)
    with plt.rc_context(STYLE):
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.0))
        for ax, vals, title, ylabel in (
                (a, {m: (c.kind, c.mean, c.std if c.n > 1 else 0) for m, c in cells.items()},
                 "ours", data.METRIC_LABEL[mom["metric"]].replace("(%)", "accuracy (%)")),
                (b, {float(r["moco_m"]): ("fail" if r["status"] == "fail" else "value",
                                          r["acc1"], 0) for _, r in paper.iterrows()},
                 "paper (He et al. 2020, Sec. 4.1, K=4096)", "ImageNet linear top-1 accuracy (%)")):
            xs = list(range(len(ms)))
            ok = [(i, vals[m]) for i, m in enumerate(ms) if m in vals and vals[m][0] == "value"]
            if ok:
                ax.plot([i for i, _ in ok], [v[1] for _, v in ok], color=COLORS["moco"], marker="o",
                        label="MoCo" + (" (mean; dots = seeds)" if ax is a else ""))
                if ax is a:
                    seed_points(ax, [(i, cells[ms[i]]) for i, _ in ok], COLORS["moco"])
                    baseline_lines(ax, base, mom["metric"])
                for i, v in ok:
                    ax.annotate(f"{v[1]:.1f}", (i, v[1]), textcoords="offset points",
                                xytext=(0, 7), ha="center", fontsize=8)
            fails = [i for i, m in enumerate(ms) if m in vals and vals[m][0] == "fail"]
            if fails:
                ax.plot(fails, [0.06] * len(fails), transform=ax.get_xaxis_transform(), ls="none",
                        marker="x", ms=10, mew=2.5, color="#d62728", label="fail (did not converge)")
                for i in fails:
                    ax.annotate("fail", (i, 0.06), xycoords=ax.get_xaxis_transform(),
                                textcoords="offset points", xytext=(0, 9), ha="center",
                                fontsize=9, color="#d62728", fontweight="bold")
            ax.margins(y=0.15)
            if not ok and not fails:
                not_run(ax)
            ax.set_xticks(xs)
            ax.set_xticklabels([f"{m:g}" for m in ms])
            ax.set_xlim(-0.5, len(ms) - 0.5)
            ax.set_xlabel("momentum m")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="lower right")
        fig.suptitle("Momentum m of the key encoder (MoCo Sec. 4.1 ablation)")
        fig.tight_layout()
        return save(fig, out_dir, GRID)


SECTION = Section(
    name=GRID, anchor="table1", title="MoCo momentum ablation (Table 1 of this suite)", grids=(GRID,),
    tables=(table,),
    figures=(Figure(GRID, figure, "Table 1: accuracy vs momentum m, ours (left) and the paper (right)"),))

"""MoCo Fig. 3 (He et al. 2020): the three contrastive loss mechanisms (MoCo, end-to-end, memory bank), accuracy
vs the number of negatives K, ours next to the points the paper states, as a table and as a plot (log2 K axis)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .. import data
from ..cells import Cell, Table, aggregate, na, number, text
from ..figures import COLORS, MARKERS, STYLE, baseline_lines, log2_k, not_run, save, seed_points
from ..tables import fmt_k, groups
from . import baselines
from .base import Figure, Section

GRID = "fig3_mechanisms"
E2E_MAX_K = 1024  # the paper's end-to-end curve stops here (fig3_limits.csv)


def e2e_max_k() -> int:
    """The largest K of the paper's end-to-end curve (K = batch size, limited by memory)."""
    lim = data.paper("fig3_limits")
    row = lim[lim["mechanism"] == "end_to_end"]
    return int(row["max_k"].iloc[0]) if len(row) else E2E_MAX_K


def table(res: data.Results) -> tuple[Table, dict]:
    """Accuracy per K and mechanism, ours beside the points the paper states; end-to-end only up to the paper's
    largest K."""
    rows = res.grid(GRID)
    metric = data.accuracy_metric(rows)
    paper = data.paper(GRID)
    kmax = e2e_max_k()
    g = groups(rows, ["mechanism", "moco_k"])
    dropped = []
    ours = {}
    for (mech, k), sub in g.items():
        if mech == "end_to_end" and k is not None and k > kmax:
            dropped.append(k)
            continue
        ours[(mech, k)] = aggregate(sub, metric, res.run_path)
    ks = sorted({k for (_, k) in ours if k is not None} | {float(k) for k in paper["moco_k"]})
    body = []
    for k in ks:
        row = [text(fmt_k(k))]
        for mech in data.MECHANISMS:
            if mech == "end_to_end" and k > kmax:
                row.append(na(f"— (K > {kmax})"))
            else:
                row.append(ours.get((mech, k), Cell(kind="not_run")))
            p = paper[(paper["mechanism"] == mech) & np.isclose(paper["moco_k"].astype(float), k)]
            row.append(number(p["acc1"].iloc[0]) if len(p) else na())
        body.append(row)
    cols = ["K"]
    for mech in data.MECHANISMS:
        cols += [f"{data.MECH_LABEL[mech]} (ours)", f"{data.MECH_LABEL[mech]} (paper)"]
    cap = (f"Ours: {data.METRIC_LABEL[metric]}; paper: ImageNet linear top-1 (%), only the "
           f"points stated in the text (the rest of the paper's Fig. 3 is not transcribed). "
           f"End-to-end stops at K={kmax} as in the paper (K = batch size).")
    if dropped:
        cap += f" Our end-to-end runs at K={', '.join(fmt_k(k) for k in sorted(dropped))} are " \
               f"beyond the paper's limit and not shown."
    t = Table(GRID, "MoCo Fig. 3: contrastive loss mechanisms vs K", cols, body, cap)
    return t, {"metric": metric, "cells": ours, "e2e_max_k": kmax}


def figure(res: data.Results, parts: dict, out_dir: Path) -> dict:
    """Accuracy vs K per mechanism: ours (mean, every seed as a dot, failed runs as crosses, the baselines as
    lines) | the paper's (hollow: read from the figure)."""
    paper = data.paper(GRID)
    mech = parts[GRID]
    base = parts.get(baselines.KEY, {}).get("cells")
    kmax = mech["e2e_max_k"]
    metric = mech["metric"]
    cells = mech["cells"]
    with plt.rc_context(STYLE):
        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
        all_k = [k for (_, k) in cells if k is not None]
        any_line = False
        for m in data.MECHANISMS:
            pts = sorted((k, c) for (mm, k), c in cells.items() if mm == m and k is not None)
            ok = [(k, c) for k, c in pts if c.kind == "value"]
            if ok:
                any_line = True
                a.plot([k for k, _ in ok], [c.mean for _, c in ok], color=COLORS[m],
                       marker=MARKERS[m], label=data.MECH_LABEL[m] + " (mean; dots = seeds)")
                seed_points(a, [(k, c) for k, c in ok], COLORS[m], log=True)
            failed = [k for k, c in pts if c.kind == "fail"]
            if failed:
                a.plot(failed, [0.04] * len(failed), transform=a.get_xaxis_transform(),
                       linestyle="none", marker="x", markersize=9, mew=2, color=COLORS[m],
                       label=f"{data.MECH_LABEL[m]}: failed run")
        if all_k:
            log2_k(a, all_k + ([kmax] if min(all_k) <= kmax <= max(all_k) else []))
            if min(all_k) <= kmax <= max(all_k):
                a.axvline(kmax, color=COLORS["end_to_end"], ls=":", lw=1)
        else:
            log2_k(a, [256, 1024, 4096, 16384, 65536])
        if not any_line:
            not_run(a, "not run" if not all_k else "no finished run")
        baseline_lines(a, base, metric)
        a.margins(y=0.12)
        a.set_ylabel(data.METRIC_LABEL[metric].replace("(%)", "accuracy (%)"))
        a.set_title(f"ours ({res.grid(GRID)['preset'].dropna().iloc[0]} preset)"
                    if res.grid(GRID)["preset"].notna().any() else "ours")
        if a.get_legend_handles_labels()[0]:
            a.legend(loc="lower right")
        # paper panel
        for m in data.MECHANISMS:
            p = paper[paper["mechanism"] == m].sort_values("moco_k")
            for verified, fill in ((True, COLORS[m]), (False, "white")):
                q = p[p["verified"] == verified]
                if len(q):
                    b.plot(q["moco_k"], q["acc1"], color=COLORS[m], marker=MARKERS[m],
                           mfc=fill, ls="-" if verified else "--",
                           label=f"{data.MECH_LABEL[m]}" + ("" if verified else " (read from figure)"))
                    for k, v in zip(q["moco_k"], q["acc1"]):
                        b.annotate(f"{v:.1f}", (k, v), textcoords="offset points", xytext=(0, 6),
                                   ha="center", fontsize=8, color=COLORS[m])
        b.axvline(kmax, color=COLORS["end_to_end"], ls=":", lw=1,
                  label=f"end-to-end limit (K={kmax})")
        log2_k(b, [256, 1024, 4096, 16384, 65536])
        b.set_ylabel("ImageNet linear top-1 accuracy (%)")
        b.set_ylim(50, 63)
        b.set_title("paper (He et al. 2020, Fig. 3; numbers stated in the text)")
        b.legend(loc="lower right")
        fig.suptitle("Contrastive loss mechanisms: accuracy vs number of negatives K")
        fig.tight_layout()
        return save(fig, out_dir, GRID)


SECTION = Section(
    name=GRID, anchor="fig3", title="MoCo Fig. 3: contrastive loss mechanisms", grids=(GRID,), tables=(table,),
    figures=(Figure(GRID, figure, "Fig. 3: accuracy vs K per mechanism, ours (left) and the paper (right)"),))

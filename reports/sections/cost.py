"""Memory and time per mechanism: throughput, peak memory and step time vs K, from the finished runs of Fig. 3's
grid, as a table and as a plot (the paper: end-to-end is limited by memory)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from pretrain.base import status as S

from .. import data
from ..cells import Cell, Table, aggregate, text
from ..figures import COLORS, MARKERS, STYLE, log2_k, not_run, save
from ..tables import fmt_k, groups
from . import fig3_mechanisms, transfer
from .base import Figure, Section

KEY = "cost"


def table(res: data.Results) -> tuple[Table, dict]:
    """Throughput, peak memory, step and wall time per mechanism, K and batch size, over the finished runs of
    Fig. 3's grid (of every grid but transfer when it has none)."""
    rows = res.grid(fig3_mechanisms.GRID)
    src = fig3_mechanisms.GRID
    if not (rows["status"] == S.DONE).any():
        rows = res.df[(res.df["grid"] != transfer.SOURCE) & (res.df["status"] == S.DONE)]
        src = "all grids"
    rows = rows[rows["status"] == S.DONE]
    order = {m: i for i, m in enumerate(data.MECHANISMS)}
    body, cells = [], {}
    g = groups(rows, ["mechanism", "moco_k", "batch_size"])
    for (mech, k, bs), sub in sorted(g.items(), key=lambda kv: (order.get(kv[0][0], 9),
                                                                 kv[0][1] or 0, kv[0][2] or 0)):
        cs = {m: aggregate(sub, m, res.run_path, digits=d) for m, d in
              (("images_per_s", 1), ("peak_mem_mb", 0), ("step_time_s", 3), ("wall_s", 0))}
        cells[(mech, k, bs)] = cs
        body.append([text(data.MECH_LABEL.get(mech, mech or "?")), text(fmt_k(k)),
                     text(fmt_k(bs)), cs["images_per_s"], cs["peak_mem_mb"], cs["step_time_s"],
                     cs["wall_s"], text(len(sub))])
    if not body:
        body.append([text("—"), text("—"), text("—")] + [Cell(kind="not_run")] * 4 + [text(0)])
    t = Table(KEY, "Memory and time per mechanism",
              ["mechanism", "K", "batch", "images/s", "peak memory (MB)", "step time (s)",
               "wall time (s)", "runs"], body,
              caption=f"Finished runs of {src}. The paper: end-to-end is limited by memory "
                      f"(K = batch size, at most 1024 on 8 V100 32GB).")
    return t, {"cells": cells}


def figure(res: data.Results, parts: dict, out_dir: Path) -> dict:
    """Throughput and peak memory vs K (log2 axis), one line per mechanism."""
    cells = parts[KEY]["cells"]
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.0))
        ks = []
        for m in data.MECHANISMS:
            pts = sorted((k, c) for (mm, k, bs), c in cells.items() if mm == m and k is not None)
            if not pts:
                continue
            ks += [k for k, _ in pts]
            for ax, col in zip(axes, ("images_per_s", "peak_mem_mb")):
                ok = [(k, c[col]) for k, c in pts if c[col].kind == "value"]
                if ok:
                    ax.plot([k for k, _ in ok], [c.mean for _, c in ok], color=COLORS[m],
                            marker=MARKERS[m], label=data.MECH_LABEL[m])
        for ax, yl, title in ((axes[0], "throughput (images/s)", "training speed"),
                              (axes[1], "peak memory (MB)", "peak memory")):
            log2_k(ax, ks or [256, 1024, 4096])
            ax.set_ylabel(yl)
            ax.set_title(title)
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
            else:
                not_run(ax)
        fig.suptitle("Cost per mechanism")
        fig.tight_layout()
        return save(fig, out_dir, KEY)


SECTION = Section(
    name=KEY, anchor="cost", title="Memory and time per mechanism", grids=(fig3_mechanisms.GRID,), tables=(table,),
    figures=(Figure(KEY, figure, "Throughput and peak memory vs K per mechanism"),))

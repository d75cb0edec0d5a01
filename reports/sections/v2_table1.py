"""MoCo v2 Table 1 (Chen et al. 2020): MLP head, aug+, cosine schedule and longer training, ours next to the
paper's rows (with their VOC07 detection numbers); the paper's SimCLR rows are shown for comparison."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .. import data
from ..cells import Cell, Table, aggregate, na, number, text
from ..tables import fmt_k, groups
from .base import Section

GRID = "v2_table1"


def _paper_v2_row(paper: pd.DataFrame, mlp, aug, cos, long_run: bool, tau):
    """The paper's MoCo row for one of our configurations (the 800-epoch row for our longest cosine run), or
    None."""
    p = paper[paper["method"].str.startswith("MoCo")].copy()
    for col, v in (("mlp", mlp), ("aug_plus", aug), ("cos", cos)):
        p = p[p[col].map(lambda x: data._to_bool(x) is v if v is not None else True)]
    if cos:
        p = p[(p["epochs"] == 800) if long_run else (p["epochs"] == 200)]
    if len(p) > 1 and tau is not None:
        q = p[np.isclose(p["moco_t"].astype(float), tau)]
        if len(q):
            p = q
        else:
            p = p[p["moco_t"].isna() | np.isclose(p["moco_t"].astype(float), 0.2)]
    if len(p) > 1:  # default tau for the MLP row is the paper's 0.2
        q = p[np.isclose(p["moco_t"].astype(float).fillna(0.2), 0.2)]
        p = q if len(q) else p
    return p.iloc[0] if len(p) else None


def _v2_name(mlp, aug, cos, long_run) -> str:
    """Our configuration as the table's first column names it ("MoCo v1", "MLP + aug+ + cos (long)")."""
    if not mlp and not aug and not cos:
        return "MoCo v1"
    parts = []
    if mlp:
        parts.append("MLP")
    if aug:
        parts.append("aug+")
    if cos:
        parts.append("cos")
    s = " + ".join(parts)
    return s + (" (long)" if long_run else "")


def table(res: data.Results) -> tuple[Table, dict]:
    """Accuracy per combination (MLP, aug+, cos, epochs, τ), ours beside the paper's row; the paper's rows with
    no run of ours follow, so the whole table shows."""
    rows = res.grid(GRID)
    metric = data.accuracy_metric(rows)
    paper = data.paper(GRID)
    g = groups(rows, ["mlp", "aug_plus", "cos", "epochs", "moco_t"])
    cos_epochs = sorted({k[3] for k in g if k[2] and k[3] is not None})
    body, cells = [], {}
    seen_paper = set()

    def sort_key(kv):
        (mlp, aug, cos, ep, tau) = kv[0]
        return (bool(cos), ep or 0, bool(mlp) and bool(aug), bool(aug), bool(mlp), tau or 0)

    for (mlp, aug, cos, ep, tau), sub in sorted(g.items(), key=sort_key):
        long_run = bool(cos) and len(cos_epochs) > 1 and ep == cos_epochs[-1]
        c = aggregate(sub, metric, res.run_path)
        cells[(mlp, aug, cos, ep, tau)] = c
        p = _paper_v2_row(paper, bool(mlp), bool(aug), bool(cos), long_run, tau)
        if p is not None:
            seen_paper.add(p["row"])
        body.append([text(_v2_name(mlp, aug, cos, long_run)),
                     text("✓" if mlp else ""), text("✓" if aug else ""), text("✓" if cos else ""),
                     text(fmt_k(ep)), text("?" if tau is None else f"{tau:g}"), c,
                     text(p["method"] if p is not None else "—"),
                     text(f"{p['epochs']:g}" if p is not None and not pd.isna(p["epochs"]) else "—"),
                     number(p["acc1"]) if p is not None else na(),
                     text(_voc(p) if p is not None else "—")])
    # the paper's rows we have no run for (so the reader sees the whole table)
    for _, p in paper.iterrows():
        if p["row"] in seen_paper:
            continue
        body.append([text("—"), text("✓" if data._to_bool(p["mlp"]) is True else ""),
                     text("✓" if data._to_bool(p["aug_plus"]) is True else ""),
                     text("✓" if data._to_bool(p["cos"]) is True else ""), text("—"),
                     text("—" if pd.isna(p["moco_t"]) else f"{p['moco_t']:g}"),
                     Cell(kind="not_run") if p["method"].startswith("MoCo") else na(),
                     text(p["method"]),
                     text("—" if pd.isna(p["epochs"]) else f"{p['epochs']:g}"),
                     number(p["acc1"]), text(_voc(p))])
    t = Table(GRID, "MoCo v2 Table 1: MLP head, aug+, cosine schedule",
              ["ours", "MLP", "aug+", "cos", "ours: epochs", "τ", f"ours: {data.METRIC_LABEL[metric]}",
               "paper row", "paper: epochs", "paper: ImageNet linear top-1 (%)",
               "paper: VOC07 AP50/AP/AP75"], body,
              caption="Our longest cosine run is compared with the paper's 800-epoch row, the "
                      "shorter with its 200-epoch row. SimCLR rows are the paper's comparison "
                      "(not run here).")
    return t, {"metric": metric, "cells": cells}


def _voc(p) -> str:
    """The paper's VOC07 detection numbers of a row as AP50/AP/AP75."""
    vals = [p.get("voc_AP50"), p.get("voc_AP"), p.get("voc_AP75")]
    if any(v is None or pd.isna(v) for v in vals):
        return "—"
    return "/".join(f"{float(v):.1f}" for v in vals)


SECTION = Section(name=GRID, anchor="v2", title="MoCo v2 Table 1", grids=(GRID,), tables=(table,))

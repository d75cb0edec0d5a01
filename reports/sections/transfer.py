"""Transfer to detection: PASCAL VOC / COCO (the rows ``python -m transfer`` writes, no grid YAML), ours next to
the official README's numbers."""
from __future__ import annotations

from .. import data
from ..cells import Cell, Table, aggregate, na, number, text
from ..tables import groups
from .base import Section

SOURCE = "transfer"     # the results table's `grid` of the transfer rows


def table(res: data.Results) -> tuple[Table, dict]:
    """AP50/AP/AP75 (APm on COCO) per task and weights, ours (mean ± sd over trials) and the official README's."""
    rows = res.grid(SOURCE)
    paper = data.paper("transfer_voc")
    body, cells = [], {}
    g = groups(rows, ["task", "weights"])
    for (task, w), sub in sorted(g.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        cs = [aggregate(sub, m, res.run_path) for m in ("AP50", "AP", "AP75", "APm")]
        if task != "coco":
            cs[3] = na()
        cells[(task, w)] = dict(zip(("AP50", "AP", "AP75", "APm"), cs))
        ntr = int(sub["trial"].nunique()) if sub["trial"].notna().any() else len(sub)
        body.append([text("ours"), text(task or "?"), text(w or "?"), *cs, text(ntr)])
    if not body:
        body.append([text("ours"), text("voc / coco"), text("—"), *(Cell(kind="not_run") for _ in range(3)),
                     na(), text(0)])
    for _, p in paper.iterrows():
        body.append([text("paper (official README)"), text(p["task"]), text(p["weights"]),
                     number(p["AP50"]), number(p["AP"]), number(p["AP75"]), na(), text(int(p["trials"]))])
    t = Table(SOURCE, "Transfer: PASCAL VOC / COCO detection",
              ["source", "task", "weights", "AP50", "AP", "AP75", "APm (mask)", "trials"], body,
              caption="VOC07+12 Faster R-CNN R50-C4 (official README, mean of 5 trials; expected "
                      "std 0.2/0.2/0.4). Ours = mean ± std over trials.")
    return t, {"cells": cells}


SECTION = Section(name=SOURCE, anchor="transfer", title="Transfer to detection", sources=(SOURCE,), tables=(table,))

"""Baselines: what the learned features must beat (the same network at random init, raw pixels) with the same kNN
and linear protocols, from the rows ``python -m ablations baselines`` writes (no grid YAML). Shown first; the
accuracy figures draw them as horizontal lines (``parts["baselines"]["cells"]``)."""
from __future__ import annotations

from pretrain.base import status as S

from .. import data
from ..cells import Table, aggregate, text
from .base import Section

KEY = "baselines"       # the results table's `grid` of the baseline rows, and the table's key
BASELINE_LABEL = {"random_init": "the same network at random init", "raw_pixels": "raw pixels"}


def table(res: data.Results) -> tuple[Table, dict]:
    """What the learned features must beat, with the same protocols (``python -m ablations baselines``)."""
    rows = res.grid(KEY)
    rows = rows[rows["status"] == S.DONE] if len(rows) else rows
    body, cells = [], {}
    for b in ("random_init", "raw_pixels"):
        sub = rows[rows["baseline"] == b] if len(rows) else rows
        knn = aggregate(sub, "knn_acc", res.run_path)
        lin = aggregate(sub, "lincls_acc1", res.run_path)
        cells[b] = {"knn_acc": knn, "lincls_acc1": lin}
        seeds = int(sub["seed"].nunique()) if len(sub) else 0
        body.append([text(BASELINE_LABEL[b]), knn, lin, text(seeds)])
    t = Table(KEY, "Baselines: doing nothing",
              ["features", "kNN top-1 (%)", "linear top-1 (%)", "seeds"], body,
              caption="The same kNN (k, t, train subset) and linear protocols as the learned features, applied "
                      "to the untrained network (mean ± sd over its seeds) and to the flattened normalised "
                      "pixels. Learned features that do not beat these have learned nothing the report can "
                      "judge. Computed by `python -m ablations baselines --preset P`.")
    return t, {"cells": cells}


SECTION = Section(name=KEY, anchor="baselines", title="Baselines: random init and raw pixels", sources=(KEY,),
                  tables=(table,), lead=True)

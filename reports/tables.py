"""The report's tables: ours next to the paper's, every number linked to its runs.

* Table 1 of MoCo (momentum m, K=4096),
* Fig. 3 of MoCo as a table (accuracy vs K per mechanism),
* Fig. A.1 of MoCo as a table (final pretext / kNN accuracy, shuffle-BN on vs off),
* Table 1 of MoCo v2 (MLP, aug+, cos, epochs),
* the VOC/COCO transfer table (official README numbers),
* memory and time per mechanism.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import data
from .cells import Cell, Table, aggregate, na, number, text

E2E_MAX_K = 1024  # the paper's end-to-end curve stops here (fig3_limits.csv)


def _key(v):
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def groups(rows: pd.DataFrame, keys: list):
    """Rows grouped by config ``keys`` (seeds/trials pooled), NaN keys as None."""
    if len(rows) == 0:
        return {}
    out = {}
    for i, r in rows.iterrows():
        k = tuple(_key(r[c]) for c in keys)
        out.setdefault(k, []).append(i)
    return {k: rows.loc[idx] for k, idx in out.items()}


def fmt_m(m) -> str:
    if m is None:
        return "?"
    return f"{m:g}"


def fmt_k(k) -> str:
    return "?" if k is None else f"{int(k)}"


def e2e_max_k() -> int:
    lim = data.paper("fig3_limits")
    row = lim[lim["mechanism"] == "end_to_end"]
    return int(row["max_k"].iloc[0]) if len(row) else E2E_MAX_K


# --------------------------------------------------------------------- Table 1
def momentum(res: data.Results) -> tuple[Table, dict]:
    rows = res.grid("table1_momentum")
    metric = data.accuracy_metric(rows)
    paper = data.paper("table1_momentum")
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
    t = Table("table1_momentum", "MoCo momentum ablation (Sec. 4.1; the suite's \"Table 1\")",
              ["m", f"ours: {data.METRIC_LABEL[metric]}", "runs", "ours: K",
               "paper: ImageNet linear top-1 (%), K=4096"], body,
              caption="\"fail\" = training did not converge (the paper: the loss oscillates "
                      "for m=0). Ours = mean ± std over seeds.")
    return t, {"metric": metric, "cells": cells}


# ---------------------------------------------------------------------- Fig. 3
def mechanisms(res: data.Results) -> tuple[Table, dict]:
    rows = res.grid("fig3_mechanisms")
    metric = data.accuracy_metric(rows)
    paper = data.paper("fig3_mechanisms")
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
    t = Table("fig3_mechanisms", "MoCo Fig. 3: contrastive loss mechanisms vs K", cols, body, cap)
    return t, {"metric": metric, "cells": ours, "e2e_max_k": kmax}


# -------------------------------------------------------------------- Fig. A.1
def shuffle_bn(res: data.Results) -> tuple[Table, dict]:
    rows = res.grid("figA1_shuffle_bn")
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
    t = Table("figA1_shuffle_bn", "MoCo Fig. A.1: shuffling BN",
              ["mechanism", "shuffle BN", "final pretext top-1 (%)", "final kNN top-1 (%)",
               "epochs", "runs"], body,
              caption="Paper (no numbers): without shuffle-BN the pretext accuracy approaches "
                      "100% while the kNN validation accuracy is lower, for MoCo and end-to-end; "
                      "the memory bank is not affected.")
    return t, {"cells": cells}


# ------------------------------------------------------------- MoCo v2 Table 1
def _paper_v2_row(paper: pd.DataFrame, mlp, aug, cos, long_run: bool, tau):
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


def _v2_name(mlp, aug, cos, long_run):
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


def v2(res: data.Results) -> tuple[Table, dict]:
    rows = res.grid("v2_table1")
    metric = data.accuracy_metric(rows)
    paper = data.paper("v2_table1")
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
    t = Table("v2_table1", "MoCo v2 Table 1: MLP head, aug+, cosine schedule",
              ["ours", "MLP", "aug+", "cos", "ours: epochs", "τ", f"ours: {data.METRIC_LABEL[metric]}",
               "paper row", "paper: epochs", "paper: ImageNet linear top-1 (%)",
               "paper: VOC07 AP50/AP/AP75"], body,
              caption="Our longest cosine run is compared with the paper's 800-epoch row, the "
                      "shorter with its 200-epoch row. SimCLR rows are the paper's comparison "
                      "(not run here).")
    return t, {"metric": metric, "cells": cells}


def _voc(p) -> str:
    vals = [p.get("voc_AP50"), p.get("voc_AP"), p.get("voc_AP75")]
    if any(v is None or pd.isna(v) for v in vals):
        return "—"
    return "/".join(f"{float(v):.1f}" for v in vals)


# -------------------------------------------------------------------- transfer
def transfer(res: data.Results) -> tuple[Table, dict]:
    rows = res.grid("transfer")
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
    t = Table("transfer", "Transfer: PASCAL VOC / COCO detection",
              ["source", "task", "weights", "AP50", "AP", "AP75", "APm (mask)", "trials"], body,
              caption="VOC07+12 Faster R-CNN R50-C4 (official README, mean of 5 trials; expected "
                      "std 0.2/0.2/0.4). Ours = mean ± std over trials.")
    return t, {"cells": cells}


# ------------------------------------------------------------------------ cost
def cost(res: data.Results) -> tuple[Table, dict]:
    rows = res.grid("fig3_mechanisms")
    src = "fig3_mechanisms"
    if not (rows["status"] == "done").any():
        rows = res.df[(res.df["grid"] != "transfer") & (res.df["status"] == "done")]
        src = "all grids"
    rows = rows[rows["status"] == "done"]
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
    t = Table("cost", "Memory and time per mechanism",
              ["mechanism", "K", "batch", "images/s", "peak memory (MB)", "step time (s)",
               "wall time (s)", "runs"], body,
              caption=f"Finished runs of {src}. The paper: end-to-end is limited by memory "
                      f"(K = batch size, at most 1024 on 8 V100 32GB).")
    return t, {"cells": cells}


# ------------------------------------------------------------------- baselines
BASELINE_LABEL = {"random_init": "the same network at random init", "raw_pixels": "raw pixels"}


def baselines(res: data.Results) -> tuple[Table, dict]:
    """What the learned features must beat, with the same protocols (``python -m ablations baselines``)."""
    rows = res.grid("baselines")
    rows = rows[rows["status"] == "done"] if len(rows) else rows
    body, cells = [], {}
    for b in ("random_init", "raw_pixels"):
        sub = rows[rows["baseline"] == b] if len(rows) else rows
        knn = aggregate(sub, "knn_acc", res.run_path)
        lin = aggregate(sub, "lincls_acc1", res.run_path)
        cells[b] = {"knn_acc": knn, "lincls_acc1": lin}
        seeds = int(sub["seed"].nunique()) if len(sub) else 0
        body.append([text(BASELINE_LABEL[b]), knn, lin, text(seeds)])
    t = Table("baselines", "Baselines: doing nothing",
              ["features", "kNN top-1 (%)", "linear top-1 (%)", "seeds"], body,
              caption="The same kNN (k, t, train subset) and linear protocols as the learned features, applied "
                      "to the untrained network (mean ± sd over its seeds) and to the flattened normalised "
                      "pixels. Learned features that do not beat these have learned nothing the report can "
                      "judge. Computed by `python -m ablations baselines --preset P`.")
    return t, {"cells": cells}


def reference_tables() -> list[Table]:
    """The paper's numbers we do not reproduce cell by cell (for the reader)."""
    tr = data.paper("official_trials")
    body = []
    for (model, ep), sub in tr.groupby(["model", "epochs"], sort=False):
        body.append([text(model), text(ep), text(", ".join(f"{v:.1f}" for v in sub["acc1"])),
                     text(f"{sub['mean'].iloc[0]:.1f} ± {sub['std'].iloc[0]:.1f}")])
    t1 = Table("official_trials", "Official README: ImageNet linear top-1 over 5 trials",
               ["model", "epochs", "trials (%)", "mean ± std (%)"], body,
               caption=tr["source"].iloc[0])
    cf = data.paper("cifar_demo")
    t2 = Table("cifar_demo", "Official CIFAR-10 demo (ResNet-18, kNN top-1)",
               ["arch", "epochs", "kNN top-1 (%)", "loss"],
               [[text(r["arch"]), text(r["epochs"]), number(r["knn_acc"]), text(r["loss"])]
                for _, r in cf.iterrows()], caption=cf["source"].iloc[0])
    return [t1, t2]

"""The report's figures (matplotlib, Agg backend), one consistent style.

* ``fig3_mechanisms``: MoCo Fig. 3, accuracy vs K (log2 axis), ours | paper,
* ``table1_momentum``: MoCo Table 1 as a plot, accuracy vs m, ours | paper,
* ``figA1_shuffle_bn``: MoCo Fig. A.1, pretext and kNN accuracy over epochs,
  shuffle-BN on (solid) vs off (dashed),
* ``cost``: throughput and peak memory vs K per mechanism,
* ``forest``: every claim's effect with its 95 % CI and the zero line (the whole reproduction in one picture);
  a not-judgeable comparison (claims version 2) as a purple hollow square with its reason beside it.

Accuracy figures show every seed as a dot beside the mean line, and the baselines (random init, raw pixels)
as horizontal lines.

Every figure is written as PNG, SVG and PDF (temp file + rename). Text from the results table is drawn as
plain text (``text.parse_math`` off in :data:`STYLE`).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from pretrain.fileio import atomic_path  # noqa: E402

from . import data  # noqa: E402

FORMATS = ("png", "svg", "pdf")
COLORS = {"moco": "#1f77b4", "end_to_end": "#2ca02c", "memory_bank": "#d62728", "paper": "#555555"}
MARKERS = {"moco": "o", "end_to_end": "s", "memory_bank": "^"}
STYLE = {
    "figure.dpi": 100, "savefig.dpi": 150, "font.size": 10, "axes.titlesize": 11,
    "axes.labelsize": 10, "legend.fontsize": 8.5, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 1.8,
    "lines.markersize": 6, "svg.fonttype": "none", "pdf.fonttype": 42,
    "figure.facecolor": "white", "axes.facecolor": "white", "savefig.facecolor": "white",
    # labels carry table text (the preset, a mechanism, a claim's per-value labels): plain text, never mathtext
    # (two `$` in a preset's name would otherwise be typeset, or fail to parse and stop the report)
    "text.parse_math": False,
}


def save(fig, out_dir: Path, name: str) -> dict:
    """Write ``name``.png/.svg/.pdf atomically; returns {format: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in FORMATS:
        final = out_dir / f"{name}.{fmt}"
        with atomic_path(final, suffix="." + fmt) as tmp:
            fig.savefig(tmp, format=fmt, bbox_inches="tight")
        paths[fmt] = final
    plt.close(fig)
    return paths


def _not_run(ax, msg="not run"):
    if not ax.lines and not ax.collections:
        ax.set_ylim(0, 100)
    ax.text(0.5, 0.5, msg, transform=ax.transAxes, ha="center", va="center",
            fontsize=13, color="#999999")


def _log2_k(ax, ks):
    ax.set_xscale("log", base=2)
    if ks:
        ks = sorted(set(int(k) for k in ks))
        ax.set_xticks(ks)
        ax.set_xticklabels([f"{k // 1024}k" if k >= 1024 and k % 1024 == 0 else str(k) for k in ks])
        ax.set_xlim(min(ks) / 1.4, max(ks) * 1.4)
    ax.set_xlabel("K (number of negatives, log₂ scale)")


def fig3(res: data.Results, mech: dict, out_dir: Path) -> dict:
    paper = data.paper("fig3_mechanisms")
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
                _seed_points(a, [(k, c) for k, c in ok], COLORS[m], log=True)
            failed = [k for k, c in pts if c.kind == "fail"]
            if failed:
                a.plot(failed, [0.04] * len(failed), transform=a.get_xaxis_transform(),
                       linestyle="none", marker="x", markersize=9, mew=2, color=COLORS[m],
                       label=f"{data.MECH_LABEL[m]}: failed run")
        if all_k:
            _log2_k(a, all_k + ([kmax] if min(all_k) <= kmax <= max(all_k) else []))
            if min(all_k) <= kmax <= max(all_k):
                a.axvline(kmax, color=COLORS["end_to_end"], ls=":", lw=1)
        else:
            _log2_k(a, [256, 1024, 4096, 16384, 65536])
        if not any_line:
            _not_run(a, "not run" if not all_k else "no finished run")
        _baseline_lines(a, mech.get("baselines"), metric)
        a.margins(y=0.12)
        a.set_ylabel(data.METRIC_LABEL[metric].replace("(%)", "accuracy (%)"))
        a.set_title(f"ours ({res.grid('fig3_mechanisms')['preset'].dropna().iloc[0]} preset)"
                    if res.grid("fig3_mechanisms")["preset"].notna().any() else "ours")
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
        _log2_k(b, [256, 1024, 4096, 16384, 65536])
        b.set_ylabel("ImageNet linear top-1 accuracy (%)")
        b.set_ylim(50, 63)
        b.set_title("paper (He et al. 2020, Fig. 3; numbers stated in the text)")
        b.legend(loc="lower right")
        fig.suptitle("Contrastive loss mechanisms: accuracy vs number of negatives K")
        fig.tight_layout()
        return save(fig, out_dir, "fig3_mechanisms")


def momentum(res: data.Results, mom: dict, out_dir: Path) -> dict:
    paper = data.paper("table1_momentum")
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
                    _seed_points(ax, [(i, cells[ms[i]]) for i, _ in ok], COLORS["moco"])
                    _baseline_lines(ax, mom.get("baselines"), mom["metric"])
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
                _not_run(ax)
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
        return save(fig, out_dir, "table1_momentum")


def _seed_points(ax, pts, color, log: bool = False):
    """Every seed's value as a small dot beside the mean line (jittered sideways so equal values show)."""
    for x, c in pts:
        vals = list(getattr(c, "values", []) or [])
        if len(vals) < 2:
            continue
        n = len(vals)
        off = np.linspace(-0.08, 0.08, n)
        xs = [x * (2 ** o) if log else x + o for o in off]
        ax.plot(xs, vals, ls="none", marker=".", ms=4, color=color, alpha=0.55)


BASELINE_STYLE = {"random_init": ("#8c564b", ":", "random init"), "raw_pixels": ("#7f7f7f", "-.", "raw pixels")}


def _baseline_lines(ax, base: dict | None, metric: str):
    """Horizontal lines at the baselines (same protocol as ``metric``): what the learned features must beat."""
    for b, (color, ls, label) in BASELINE_STYLE.items():
        c = (base or {}).get(b, {}).get(metric)
        if c is not None and c.kind == "value":
            ax.axhline(c.mean, color=color, ls=ls, lw=1.2, label=f"baseline: {label} ({c.mean:.1f})")


OUTCOME_COLORS = {"reproduced": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#bf8700",
                  "not run": "#6e7781", "not judgeable": "#8250df"}
NOT_JUDGEABLE_MARKER = "s"          # a hollow square: the effect of a comparison that is not evidence


def _short(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _reason_head(reason: str) -> str:
    """The head of a not-judgeable reason for the plot: which condition, in how many seeds (the full reason is in
    the verdict table)."""
    clauses = reason.split("; ")
    head = ": ".join(clauses[0].split(": ")[:2])
    return head + (f" (+{len(clauses) - 1} more)" if len(clauses) > 1 else "")


def forest(verdicts: list, out_dir: Path) -> dict:
    """Every claim's effect (oriented: > 0 is the paper's direction) with its 95 % CI and the zero line, one
    row per part, grouped by unit (accuracy points, relative cost %, failure-rate points). A not-judgeable part
    (claims version 2: a compared condition is not a working learner) is drawn purple with a hollow square and
    its reason written beside it."""
    groups = {"pt": "accuracy difference (points)", "%": "relative difference (%)",
              "pp": "failure-rate difference (points)"}
    rows = {u: [] for u in groups}
    for v in verdicts:
        for p in v.parts:
            rows[p.unit].append((f"{v.key}: {p.label}" if len(v.parts) > 1 else v.key, p))
    used = [u for u in groups if rows[u]]
    colors = OUTCOME_COLORS
    with plt.rc_context(STYLE):
        heights = [max(len(rows[u]), 1) for u in used] or [1]
        fig, axes = plt.subplots(len(heights), 1, figsize=(10, 1.2 + 0.32 * sum(heights) + 0.6 * len(heights)),
                                 gridspec_kw={"height_ratios": heights}, squeeze=False)
        if not used:
            _not_run(axes[0][0], "no claim with a result")
            axes[0][0].set_yticks([])
        for ax, u in zip([a[0] for a in axes], used):
            items = rows[u]
            ys = list(range(len(items)))[::-1]
            for y, (label, p) in zip(ys, items):
                e = p.est
                col = colors.get(p.outcome, "#333333")
                nj = p.outcome == "not judgeable"
                if e.n and np.isfinite(e.effect):
                    if np.isfinite(e.low):
                        ax.plot([e.low, e.high], [y, y], color=col, lw=2.2, ls=":" if nj else "-")
                    ax.plot([e.effect], [y], marker=NOT_JUDGEABLE_MARKER if nj else ("D" if e.n > 1 else "o"),
                            color=col, ms=7 if nj else 6, mfc="white" if nj or e.n <= 1 else col, mew=1.8)
                else:
                    ax.plot([0], [y], marker="x", color=col, ms=6)
                if nj and getattr(p, "reason", ""):          # the reason, inside the axes just above the row
                    ax.text(0.005, y + 0.42, _short(_reason_head(p.reason), 120), fontsize=6.5, color=col,
                            va="center", ha="left", transform=ax.get_yaxis_transform(), clip_on=True)
            ax.axvline(0, color="#333333", lw=1)
            ax.set_ylim(-0.6, len(items) - 0.25)
            ax.set_yticks(ys)
            ax.set_yticklabels([f"{label} (n={p.est.n}, {p.outcome})" for label, p in items], fontsize=8)
            ax.set_xlabel(groups[u] + " — right of 0 = the paper's direction")
            ax.grid(axis="y", alpha=0)
        fig.suptitle("Every claim: effect and 95 % CI (green reproduced, red contradicted, amber inconclusive, "
                     "grey not run, purple hollow square not judgeable; open circle = one seed, no CI)",
                     fontsize=9.5)
        fig.tight_layout()
        return save(fig, out_dir, "forest")


def _curves(res: data.Results, rows: pd.DataFrame):
    out = []
    for _, r in rows.iterrows():
        c = data.read_curve(res.run_path(r["run_dir"]))
        if c is not None:
            out.append(c)
    return out


def shuffle_bn(res: data.Results, sh: dict, out_dir: Path) -> dict:
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
                _not_run(ax)
        axes[0].set_ylim(top=101)
        fig.suptitle("Shuffling BN (MoCo Fig. A.1): solid = shuffle BN on, dashed = off")
        fig.tight_layout()
        return save(fig, out_dir, "figA1_shuffle_bn")


def cost(res: data.Results, cst: dict, out_dir: Path) -> dict:
    cells = cst["cells"]
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
            _log2_k(ax, ks or [256, 1024, 4096])
            ax.set_ylabel(yl)
            ax.set_title(title)
            if ax.get_legend_handles_labels()[0]:
                ax.legend()
            else:
                _not_run(ax)
        fig.suptitle("Cost per mechanism")
        fig.tight_layout()
        return save(fig, out_dir, "cost")

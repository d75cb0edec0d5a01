"""The report's figures (matplotlib, Agg backend), one consistent style: what every figure shares, and the
forest plot of the verdicts. Each section's own figures live in its module (``reports/sections/``).

* ``forest``: every claim's effect with its 95 % CI and the zero line (the whole reproduction in one picture);
  a not-judgeable comparison (claims version 2) as a purple hollow square with its reason beside it;
* :func:`seed_points` and :func:`baseline_lines`: accuracy figures show every seed as a dot beside the mean line,
  and the baselines (random init, raw pixels) as horizontal lines.

Every figure is written as PNG, SVG and PDF (temp file + rename, :func:`save`). Text from the results table is
drawn as plain text (``text.parse_math`` off in :data:`STYLE`).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pretrain.base.fileio import atomic_path  # noqa: E402

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


def not_run(ax, msg="not run"):
    """``msg`` written across an axes with nothing (or nothing finished) to draw."""
    if not ax.lines and not ax.collections:
        ax.set_ylim(0, 100)
    ax.text(0.5, 0.5, msg, transform=ax.transAxes, ha="center", va="center",
            fontsize=13, color="#999999")


def log2_k(ax, ks):
    """A log2 K axis with a tick at each K of ``ks`` (4096 as 4k)."""
    ax.set_xscale("log", base=2)
    if ks:
        ks = sorted(set(int(k) for k in ks))
        ax.set_xticks(ks)
        ax.set_xticklabels([f"{k // 1024}k" if k >= 1024 and k % 1024 == 0 else str(k) for k in ks])
        ax.set_xlim(min(ks) / 1.4, max(ks) * 1.4)
    ax.set_xlabel("K (number of negatives, log₂ scale)")


def seed_points(ax, pts, color, log: bool = False):
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


def baseline_lines(ax, base: dict | None, metric: str):
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
            not_run(axes[0][0], "no claim with a result")
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

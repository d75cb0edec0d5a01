"""Table cells that remember where their number came from.

Every number of a generated table is a :class:`Cell`: the value (mean over
seeds/trials, with the standard deviation when there are several), how many
runs it aggregates, and the run directories it came from (rendered as links; a ``run_dir`` outside the
results' tree, or a URL, is kept as text and never linked).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pretrain.base import status as S


@dataclass
class Cell:
    kind: str = "not_run"          # value | fail | not_run | text | na
    mean: float = float("nan")
    std: float = float("nan")
    n: int = 0                     # runs behind the value
    n_failed: int = 0
    reason: str = ""
    runs: list = field(default_factory=list)   # resolved run directories (Path)
    unlinked: list = field(default_factory=list)  # run_dir texts outside the results' tree (shown, never linked)
    values: list = field(default_factory=list)  # the per-seed values behind the mean (figures plot them)
    text: str = ""
    digits: int = 1

    # ------------------------------------------------------------------ text
    def label(self) -> str:
        if self.kind == "text":
            return self.text
        if self.kind == "na":
            return self.text or "—"
        if self.kind == "not_run":
            return "not run"
        if self.kind == "fail":
            return "fail"
        s = f"{self.mean:.{self.digits}f}"
        if self.n > 1:
            s += f" ± {self.std:.{self.digits}f}"
        return s

    def note(self) -> str:
        parts = []
        if self.kind == "value" and self.n > 1:
            parts.append(f"n={self.n}")
        if self.n_failed and self.kind == "value":
            parts.append(f"{self.n_failed} diverged/not converged")
        return ", ".join(parts)

    @property
    def value(self) -> float:
        return self.mean if self.kind == "value" else float("nan")


def text(s) -> Cell:
    return Cell(kind="text", text="" if s is None else str(s))


def na(s: str = "—") -> Cell:
    return Cell(kind="na", text=s)


def number(x, digits: int = 1, runs=None) -> Cell:
    """A single known number (e.g. the paper's)."""
    if x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA:
        return na()
    return Cell(kind="value", mean=float(x), std=0.0, n=1, runs=list(runs or []), digits=digits)


def aggregate(rows: pd.DataFrame, metric: str, run_path, digits: int = 1) -> Cell:
    """Mean ± std of ``metric`` over the finished runs in ``rows`` (seeds/trials).

    No finished run but a diverged or not-converged one -> ``fail`` (as the paper prints m=0); no run at all
    -> ``not run``. An ``error`` row (crash, OOM, lost job) is no result: it is not counted or linked.
    """
    if rows is None or len(rows) == 0:
        return Cell(kind="not_run")
    rows = rows[rows["status"] != S.ERROR]
    named = [str(r) for r in rows["run_dir"] if isinstance(r, str) and r.strip()]
    resolved = [(r, run_path(r)) for r in named]
    runs = [p for _, p in resolved if p is not None]
    unlinked = [r for r, p in resolved if p is None]
    done = rows[(rows["status"] == S.DONE) & rows[metric].notna()]
    failed = rows[rows["status"].isin(S.FAILED)]
    reason = "; ".join(sorted({str(r) for r in failed["reason"] if r}))
    if len(done) == 0:
        if len(failed):
            return Cell(kind="fail", n_failed=len(failed), reason=reason, runs=runs, unlinked=unlinked)
        return Cell(kind="not_run", runs=runs, unlinked=unlinked)
    vals = done[metric].to_numpy(dtype=float)
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return Cell(kind="value", mean=float(vals.mean()), std=std, n=len(vals),
                n_failed=len(failed), reason=reason, runs=runs, unlinked=unlinked, digits=digits,
                values=vals.tolist())


@dataclass
class Table:
    """A generated table: a title, a caption, column names and rows of cells."""
    key: str
    title: str
    columns: list
    rows: list                      # list[list[Cell]]
    caption: str = ""

    def frame(self) -> pd.DataFrame:
        """The table as text labels (what the tests and the Markdown show)."""
        return pd.DataFrame([[c.label() for c in r] for r in self.rows], columns=self.columns)

    def find(self, first: str) -> list:
        """The row whose first cell reads ``first``."""
        for r in self.rows:
            if r[0].label() == first:
                return r
        raise KeyError(first)

"""Loading the inputs of the report: our results table and the paper's numbers.

Our numbers are read only through :func:`ablations.results.read` (the suite's
one results table); per-epoch curves come from each row's
``run_dir/metrics.jsonl``, read (and linked) only where that run directory lies in the results' tree: the
table's folder or the runs folder (``$MOCOBENCH_RUNS``, default ``runs/``). The paper's numbers live in
``reports/paper/*.csv`` (one CSV per table/figure, each row with a ``source`` and a ``verified`` flag).
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ablations import results as results_table
from ablations.launcher import runs_root
from pretrain.base import status
from pretrain.base.errors import UserError
from pretrain.base.provenance import REPO as REPO_ROOT
from pretrain.base.rundir import RunDir
from pretrain.config import mechanisms

from . import paths
from .errors import ReportError

PAPER_DIR = Path(__file__).resolve().parent / "paper"

MECHANISMS = tuple(mechanisms.MECHANISMS)   # tables and figures in the order of pretrain.config.mechanisms, the one list
MECH_LABEL = {"moco": "MoCo", "end_to_end": "end-to-end", "memory_bank": "memory bank"}
METRIC_LABEL = {"lincls_acc1": "linear top-1 (%)", "knn_acc": "kNN top-1 (%)",
                "pretext_acc1": "pretext top-1 (%)"}
SHUFFLE_ON = ("ddp", "split", "sync", "auto")  # auto resolves to ddp or split (never off)

_BOOL = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False,
         "yes": True, "no": False}


def _to_bool(v):
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    s = str(v).strip().lower()
    return _BOOL.get(s)


# control characters (newlines, tabs, terminal escapes) and the bidirectional overrides that reorder what a reader
# sees: no table text needs them, and each one could break a Markdown row, a LaTeX cell or the CLI's output
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]+")


def _to_text(v):
    """A table's text value, stripped, control characters as one space; None for an empty one."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    s = _CONTROL.sub(" ", str(v)).strip()
    return s if s and s.lower() not in ("nan", "<na>", "none") else None


def paper(name: str) -> pd.DataFrame:
    """One reference table of the paper (``reports/paper/<name>.csv``)."""
    path = PAPER_DIR / f"{name}.csv"
    df = pd.read_csv(path)
    for col in ("source", "verified"):
        if col not in df.columns:
            raise ReportError(f"{path}: reference data without a {col!r} column")
    df["verified"] = df["verified"].map(_to_bool)
    return df


@dataclass
class Results:
    """Our results, normalised (numbers as floats, flags as bools, text as str)."""
    df: pd.DataFrame
    path: Path
    exists: bool
    base_dirs: list = field(default_factory=list)
    roots: list = field(default_factory=list)    # the results' tree: no run directory is linked or read outside

    def grid(self, name: str) -> pd.DataFrame:
        return self.df[self.df["grid"] == name].copy()

    def units(self) -> list[tuple[str, "Results"]]:
        """The table split into what may be compared: one part per preset, and per (dataset, arch) where a
        preset's runs use several (``--set dataset=...``). Rows are never pooled across parts."""
        df = self.df
        if not len(df):
            return []
        preset = df["preset"].fillna("unspecified")
        out = []
        for p in sorted(preset.unique()):
            sub = df[preset == p]
            combos = sub[sub["grid"] != "transfer"][["dataset", "arch"]].drop_duplicates()
            combos = combos[combos.notna().any(axis=1)]
            if len(combos) <= 1:
                out.append((p, sub))
                continue
            for i, (ds, arch) in enumerate(combos.itertuples(index=False)):
                m = (sub["dataset"] == ds) & (sub["arch"] == arch)
                if i == 0:      # rows without dataset/arch (transfer) go with the first
                    m |= sub["dataset"].isna() & sub["arch"].isna()
                out.append((f"{p}-{ds}-{arch}", sub[m]))
        return [(name, Results(df=d.reset_index(drop=True), path=self.path, exists=self.exists,
                               base_dirs=self.base_dirs, roots=self.roots)) for name, d in out]

    def run_path(self, run_dir) -> Path | None:
        """The run directory of a row, resolved (absolute, or relative to the results table's folder, the
        repository root or the working directory), and only where it lies in the results' tree (the table's
        folder or the runs folder, :func:`reports.paths.run_dir_path`): None for a URL or a path outside it,
        which the report shows as text and neither links nor reads."""
        if run_dir is None or (isinstance(run_dir, float) and math.isnan(run_dir)) \
                or str(run_dir).strip() in ("", "nan", "<NA>"):
            return None
        return paths.run_dir_path(str(run_dir), self.base_dirs, self.roots)


NUMERIC = ["moco_k", "moco_m", "moco_t", "bn_splits", "epochs", "batch_size", "lr", "lr_effective", "seed",
           "loss", "pretext_acc1", "pretext_acc5", "knn_acc", "knn_init", "lincls_acc1", "lincls_acc5",
           "wall_s", "images_per_s", "peak_mem_mb", "step_time_s", "trial",
           "AP50", "AP", "AP75", "APm"]
TEXT = ["grid", "run_id", "run_dir", "status", "reason", "error_kind", "mechanism", "shuffle_bn", "task",
        "weights", "preset", "arch", "dataset", "config", "baseline"]
FLAGS = ["mlp", "aug_plus", "cos"]


def load_results(path: str | os.PathLike | None) -> Results:
    """Read the results table (missing table -> empty, every grid "not run").

    A table that exists but cannot be parsed raises :class:`ReportError`.
    """
    p = Path(path) if path else results_table.default_path()
    exists = p.exists()
    if exists and p.is_dir():
        raise ReportError(f"results table {p} is a directory, expected a CSV file")
    try:
        df = results_table.read(p)
    except UserError as e:              # not a results table (schema, status, numbers): refused, one line
        raise ReportError(str(e)) from None
    except Exception as e:  # pandas raises many types for a corrupt CSV
        raise ReportError(f"cannot read results table {p}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    df = df.copy()
    for c in NUMERIC + TEXT:
        if c not in df.columns:
            df[c] = pd.NA
    for c in NUMERIC:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
    for c in TEXT:
        df[c] = pd.Series([_to_text(v) for v in df[c].tolist()], index=df.index, dtype=object)
    for c in FLAGS:
        df[c] = df[c].astype(object).map(_to_bool)
    # status as stored; a table written before diverged/not_converged were told apart says `failed`, read
    # once here through the pretrainer's one mapping of an unsplit ``failed``
    df["status"] = [status.from_summary({"status": (s or "").lower(), "reason": r or ""})
                    for s, r in zip(df["status"], df["reason"])]
    df["mechanism"] = df["mechanism"].map(lambda s: s.replace("-", "_").lower() if s else s)
    df["shuffle_bn"] = df["shuffle_bn"].map(lambda s: s.lower() if s else s)
    # end-to-end: K is the batch size (the paper's Fig. 3) when the row does not say K
    e2e = (df["mechanism"] == "end_to_end") & df["moco_k"].isna()
    df.loc[e2e, "moco_k"] = df.loc[e2e, "batch_size"]
    bases = [p.resolve().parent, REPO_ROOT, Path.cwd()]
    uniq = []
    for b in bases:
        if b not in uniq:
            uniq.append(b)
    roots = [p.resolve().parent, runs_root()]
    return Results(df=df.reset_index(drop=True), path=p, exists=exists, base_dirs=uniq, roots=roots)


def read_curve(run_path: Path | None) -> pd.DataFrame | None:
    """Per-epoch metrics of one run (``metrics.jsonl``), or None if absent.

    A corrupt line is skipped (a run killed mid-write may leave a partial last line)."""
    if run_path is None:
        return None
    f = RunDir(run_path).metrics
    if not f.is_file():
        return None
    rows = []
    with open(f) as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    if not rows:
        return None
    df = pd.DataFrame(rows)
    for c in ("epoch", "loss", "pretext_acc1", "pretext_acc5", "lr", "knn_acc",
              "images_per_s", "seconds", "peak_mem_mb"):
        if c not in df.columns:
            df[c] = np.nan
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df.sort_values("epoch").reset_index(drop=True)


def accuracy_metric(rows: pd.DataFrame) -> str:
    """The accuracy we compare with the paper: linear top-1 where every finished
    run of the grid has it (the paper's protocol), else kNN top-1."""
    done = rows[rows["status"] == status.DONE]
    if len(done) and done["lincls_acc1"].notna().all():
        return "lincls_acc1"
    return "knn_acc"

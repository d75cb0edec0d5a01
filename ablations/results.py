"""The suite's one results table: every run of every grid (and every transfer
job) is one row; every report reads this table and nothing else.

The table is a CSV file (pandas), by default ``results/results.csv`` at the
repository root, or the path in ``$MOCOBENCH_RESULTS``.  Writers go through
:func:`upsert`, which takes an exclusive file lock (SLURM array tasks finish
at the same time), merges rows by ``run_id`` and replaces the file atomically
(temp file + rename), so a reader never sees a half-written table.

Columns (a row may leave the ones that do not apply empty):

identity      grid, run_id (resolved-config hash), preset, run_dir, status
              (pending|running|done|diverged|not_converged|error, see pretrain/status.py;
              done, diverged and not_converged are results), reason (why it diverged, did not
              converge or stopped), error_kind (error rows: oom|distributed|user|crash|lost|
              config_changed; an error is no result: kept out of tables and verdicts, retried
              by the next run), baseline (grid "baselines": random_init|raw_pixels, written by
              ``python -m ablations baselines``; empty for trained runs)
swept keys    mechanism, moco_k, moco_m, moco_t, shuffle_bn, bn_splits, mlp,
              aug_plus, cos, epochs, batch_size, lr (the one used: lr_scaling applied), seed,
              arch, dataset, precision
metrics       loss, pretext_acc1, pretext_acc5, knn_acc, knn_init (kNN of the same network at
              random init, where fail_below_init measured it), lincls_acc1, lincls_acc5
              (final values, accuracies in %)
cost          wall_s, images_per_s, peak_mem_mb, step_time_s, world_size (processes)
provenance    host, git_sha, finished_at (ISO 8601)
transfer      task (voc|coco), config, weights, trial, AP50, AP, AP75,
              APm (mask AP, COCO)
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from pretrain import status as S

IDENTITY = ["grid", "run_id", "preset", "run_dir", "status", "reason", "error_kind", "baseline"]
SWEPT = ["mechanism", "moco_k", "moco_m", "moco_t", "shuffle_bn", "bn_splits", "mlp",
         "aug_plus", "cos", "epochs", "batch_size", "lr", "seed", "arch", "dataset", "precision"]
METRICS = ["loss", "pretext_acc1", "pretext_acc5", "knn_acc", "knn_init", "lincls_acc1", "lincls_acc5"]
COST = ["wall_s", "images_per_s", "peak_mem_mb", "step_time_s", "world_size"]
PROVENANCE = ["host", "git_sha", "finished_at"]
TRANSFER = ["task", "config", "weights", "trial", "AP50", "AP", "AP75", "APm"]
COLUMNS = IDENTITY + SWEPT + METRICS + COST + PROVENANCE + TRANSFER

STATUSES = ("pending", "running", S.DONE, S.DIVERGED, S.NOT_CONVERGED, S.ERROR)
TEXT = IDENTITY + ["host", "git_sha", "finished_at", "task", "config", "weights"]


def default_path() -> Path:
    env = os.environ.get("MOCOBENCH_RESULTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "results" / "results.csv"


def read(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The results table (an empty one with every column if there is none yet)."""
    path = Path(path) if path else default_path()
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    # Ids and text are read as text: a hash such as "123456789012" or "1234e5678901" is not a number.
    df = pd.read_csv(path, dtype={c: str for c in TEXT})
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    extra = [c for c in df.columns if c not in COLUMNS]
    df = df[COLUMNS + extra]
    legacy = df["status"].astype(str) == S.LEGACY_FAILED       # rows written before diverged/not_converged
    if legacy.any():
        df.loc[legacy, "status"] = [S.from_summary({"status": S.LEGACY_FAILED, "reason": r})
                                    for r in df.loc[legacy, "reason"]]
    return df


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(str(path) + ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upsert(rows: Iterable[Mapping], path: str | os.PathLike | None = None,
           key: str | tuple = "run_id") -> pd.DataFrame:
    """Insert rows, or replace the existing rows with the same ``key``.

    ``key`` is one column or a tuple of columns (the ablation launcher uses ``("grid", "run_id")``:
    a run shared by two grids has one row in each).

    A row holding a result (status done, diverged or not_converged: ``pretrain.status.RESULTS``) is never
    replaced by a row that is not a result (pending, running, error): a finished result is never overwritten
    by a rerun. A result may be replaced by a result (a re-evaluation).
    Unknown columns are an error, so a typo cannot silently create a column.
    """
    path = Path(path) if path else default_path()
    keys = (key,) if isinstance(key, str) else tuple(key)
    rows = [dict(r) for r in rows]
    for r in rows:
        unknown = sorted(set(r) - set(COLUMNS))
        if unknown:
            raise ValueError(f"unknown results column(s): {', '.join(unknown)}")
        for k in keys:
            if k not in r or r[k] in (None, ""):
                raise ValueError(f"results row without {k!r}: {r}")
        if "status" in r and r["status"] not in STATUSES:
            raise ValueError(f"bad status {r['status']!r} (one of {', '.join(STATUSES)})")
    with _locked(path):
        df = read(path)
        for r in rows:
            match = pd.Series(True, index=df.index)
            for k in keys:
                match &= df[k].astype(str) == str(r[k])
            hit = df.index[match]
            if len(hit):
                i = hit[0]
                if df.at[i, "status"] in S.RESULTS and r.get("status", S.DONE) not in S.RESULTS:
                    continue
                for c, v in r.items():
                    if df[c].dtype != object and not _fits(df[c].dtype, v):
                        df[c] = df[c].astype(object)
                    df.at[i, c] = v
            else:
                df = pd.concat([df, pd.DataFrame([r], columns=df.columns).astype(object)],
                               ignore_index=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    return df


def _fits(dtype, value) -> bool:
    try:
        pd.Series([value]).astype(dtype)
        return True
    except (TypeError, ValueError):
        return False

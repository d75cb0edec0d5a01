"""The suite's one results table: every run of every grid (and every transfer
job) is one row; every report reads this table and nothing else.

The table is a CSV file (pandas), by default ``results/results.csv`` at the
repository root, or the path in ``$MOCOBENCH_RESULTS``.  Writers go through
:func:`upsert`, which takes an exclusive file lock (SLURM array tasks finish
at the same time), merges rows by ``run_id`` and replaces the file atomically
(temp file + rename), so a reader never sees a half-written table. A table reached
through a symbolic link (a shared table linked into a checkout) is written where the
link points, atomically beside its target: the link stays a link.

One row per run: a (grid, run_id) pair that occurs twice (tables concatenated by
hand, an appending tool) is read as one row, merged as :func:`upsert` merges (the
later row wins, except that a result is never replaced by a later non-result), with
one warning; a last line cut off mid-line (a writer killed while appending, a copy
stopped early) is never read as a result: it is dropped with one warning. The next
write leaves the table repaired.

Columns (a row may leave the ones that do not apply empty):

identity      grid, run_id (resolved-config hash), preset, run_dir, status
              (pending|running|done|diverged|not_converged|error, see pretrain/base/status.py;
              done, diverged and not_converged are results), reason (why it diverged, did not
              converge or stopped), error_kind (error rows: oom|distributed|user|crash|lost|
              config_changed; an error is no result: kept out of tables and verdicts, retried
              by the next run), baseline (grid "baselines": random_init|raw_pixels, written by
              ``python -m ablations baselines``; empty for trained runs)
swept keys    mechanism, moco_k, moco_m, moco_t, shuffle_bn, bn_splits, mlp,
              aug_plus, cos, epochs, batch_size, lr (as configured: at lr_ref_batch),
              lr_effective (the lr used: lr_scaling applied; a table written before this column
              existed held the lr used in lr, and reads it as lr_effective), seed, arch, dataset,
              precision
metrics       loss, pretext_acc1, pretext_acc5, knn_acc, knn_init (kNN of the same network at
              random init, where fail_below_init measured it), lincls_acc1, lincls_acc5
              (final values, accuracies in %); the last epoch's per-step loss statistics
              loss_osc (step-to-step variability, nats), loss_chance_share (share of steps at or
              above chance), loss_drop (first tenth minus last tenth of the epoch's steps),
              loss_rise (last epoch's mean loss minus the lowest earlier epoch's)
evaluation    eval_split (test: the test set; val: the validation split of training images,
              for design decisions), n_eval (the images scored)
lincls        lincls_protocol: which linear protocol lincls_acc1/5 come from, sgd
              (main_lincls.py's) or logreg (the converged probe, pretrain/eval/probe.py); empty in a
              table written before the column existed (sgd)
cost          wall_s, images_per_s, peak_mem_mb, step_time_s, world_size (processes)
provenance    host, git_sha, finished_at (ISO 8601)
transfer      task (voc|coco), config, weights, trial, AP50, AP, AP75,
              APm (mask AP, COCO)
"""
from __future__ import annotations

import csv
import fcntl
import io
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from pretrain.base import status as S
from pretrain.base.errors import UserError
from pretrain.base.fileio import atomic_path, stale_temps

from .envpaths import env_path

IDENTITY = ["grid", "run_id", "preset", "run_dir", "status", "reason", "error_kind", "baseline"]
SWEPT = ["mechanism", "moco_k", "moco_m", "moco_t", "shuffle_bn", "bn_splits", "mlp",
         "aug_plus", "cos", "epochs", "batch_size", "lr", "lr_effective", "seed", "arch", "dataset", "precision"]
METRICS = ["loss", "pretext_acc1", "pretext_acc5", "knn_acc", "knn_init", "lincls_acc1", "lincls_acc5",
           "loss_osc", "loss_chance_share", "loss_drop", "loss_rise"]
COST = ["wall_s", "images_per_s", "peak_mem_mb", "step_time_s", "world_size"]
PROVENANCE = ["host", "git_sha", "finished_at"]
TRANSFER = ["task", "config", "weights", "trial", "AP50", "AP", "AP75", "APm"]
LINCLS = ["lincls_protocol"]      # which linear protocol lincls_acc1/5 are: sgd (main_lincls.py) or logreg (the probe)
EVAL = ["eval_split", "n_eval"]   # the images kNN and the linear protocol scored: test | val, and how many
COLUMNS = IDENTITY + SWEPT + METRICS + LINCLS + EVAL + COST + PROVENANCE + TRANSFER

STATUSES = ("pending", "running", S.DONE, S.DIVERGED, S.NOT_CONVERGED, S.ERROR)
TEXT = IDENTITY + LINCLS + ["eval_split", "host", "git_sha", "finished_at", "task", "config", "weights"]
REQUIRED = ["grid", "run_id", "status"]
NUMERIC = (["moco_k", "moco_m", "moco_t", "bn_splits", "epochs", "batch_size", "lr", "lr_effective", "seed"]
           + METRICS + COST + ["n_eval"]
           + ["trial", "AP50", "AP", "AP75", "APm"])


def default_path() -> Path:
    """``$MOCOBENCH_RESULTS``, else ``results/results.csv`` in the checkout; a folder there (or a path under a
    file) is one error naming the variable (:func:`ablations.envpaths.env_path`)."""
    return env_path("MOCOBENCH_RESULTS", Path(__file__).resolve().parent.parent / "results" / "results.csv",
                    "file")


def _target(path: Path) -> Path:
    """The file a write of the table at ``path`` replaces: symbolic links resolved, so that the atomic rename
    replaces the table a link points to (a shared table), not the link."""
    return Path(os.path.realpath(path))


_WARNED: set = set()


def _warn(msg: str) -> None:
    """One ``warning:`` line on stderr, once per process (the table is read several times before the next
    write repairs it)."""
    if msg not in _WARNED:
        _WARNED.add(msg)
        print(f"warning: {msg}", file=sys.stderr, flush=True)


def _drop_torn_last_line(path: Path, text: str) -> str:
    """``text`` without its last record when that record was cut off mid-line: every writer of the table ends
    each row with a newline (pandas' ``to_csv``), so a last line without one, or with another number of
    fields than the header, is what a writer stopped mid-row leaves. Such a line would read as a row whose
    missing fields are empty (a row cut after its K is a ``done`` run with that K): it is dropped, with one
    warning. Records are counted as CSV counts them (a quoted field may hold a newline)."""
    lines = list(io.StringIO(text, newline=""))     # lines as CSV sees them (\n, \r\n, \r only)
    ends, counts = [], []
    reader = csv.reader(iter(lines))
    try:
        for rec in reader:
            ends.append(reader.line_num)
            counts.append(len(rec) if rec else None)
    except csv.Error:                   # an unterminated quote at the end: the last record is cut
        ends.append(len(lines))
        counts.append(-1)
    rows = [i for i, n in enumerate(counts) if n is not None]
    if len(rows) < 2:                   # no row below the header
        return text
    header, last = counts[rows[0]], rows[-1]
    no_newline = last == len(counts) - 1 and not text.endswith(("\n", "\r"))
    if not no_newline and counts[last] == header:
        return text
    start = ends[last - 1]              # the last row starts after the line the record before it ended on
    cut = "".join(lines[start:])
    _warn(f"results table {path}: dropped its last line, cut off mid-row ({' '.join(cut.split())[:60]!r}: "
          f"{'no newline at its end' if no_newline else f'{counts[last]} fields, the header has {header}'}); "
          f"it is no result, and the next write of the table removes it")
    return "".join(lines[:start])


def _one_row_per_run(path: Path, df: pd.DataFrame) -> pd.DataFrame:
    """One row per (grid, run_id): repeated rows are merged in file order as :func:`upsert` merges them (the
    later row replaces the earlier, except that a result is never replaced by a non-result), so a run is
    never counted twice (two seeds where there is one); one warning names how many runs had repeats."""
    key = df["grid"].astype(str) + "\x00" + df["run_id"].astype(str)
    dup = key.duplicated(keep=False)
    if not dup.any():
        return df
    keep: dict = {}
    for i in df.index[dup]:
        j = keep.get(key[i])
        if j is None or not (df.at[j, "status"] in S.RESULTS and df.at[i, "status"] not in S.RESULTS):
            keep[key[i]] = i
    drop = [i for i in df.index[dup] if keep[key[i]] != i]
    first = df.index[dup][0]
    _warn(f"results table {path}: {len(keep)} run(s) have more than one row (e.g. grid {df.at[first, 'grid']}, "
          f"run {df.at[first, 'run_id']}); kept one row per run (the last one; a later non-result never replaces a result), "
          f"and the next write of the table keeps only that one")
    return df.drop(index=drop).reset_index(drop=True)


def _refuse(path: Path, what: str) -> UserError:
    return UserError(f"{path} is not a mocobench results table ({what}); point $MOCOBENCH_RESULTS (or "
                     f"--results) at a results table or at a new file")


def read(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The results table (an empty one with every column if there is none yet, or an empty file).

    A file that is not a results table is refused with one :class:`UserError` and never rewritten: it must
    parse as CSV, hold ``grid``, ``run_id`` and ``status``, have no column outside :data:`COLUMNS` (a table of
    an older version lacks some: they read as empty), a known status in every row, and numbers in the numeric
    columns. A last line cut off mid-row is dropped and a run's repeated rows are read as one, each with a
    warning (see the module's docstring); the next :func:`upsert` writes the table without them.
    """
    path = Path(path) if path else default_path()
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    if path.is_dir():
        raise UserError(f"results table {path} is a directory, expected a CSV file")
    if path.stat().st_size == 0:
        return pd.DataFrame(columns=COLUMNS)
    # Ids and text are read as text: a hash such as "123456789012" or "1234e5678901" is not a number.
    try:
        text = path.read_bytes().decode("utf-8")
        text = _drop_torn_last_line(path, text)
        df = pd.read_csv(io.StringIO(text), dtype={c: str for c in TEXT})
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise _refuse(path, f"{type(e).__name__}: {' '.join(str(e).split())[:100]}") from None
    except OSError as e:
        raise UserError(f"cannot read the results table {path}: {e.strerror or e}") from None
    unknown = [str(c) for c in df.columns if c not in COLUMNS]
    missing = [c for c in REQUIRED if c not in df.columns]
    if unknown or missing:
        what = "; ".join(x for x in (f"unknown column(s) {', '.join(unknown[:6])}" if unknown else "",
                                     f"no {', '.join(missing)} column" if missing else "") if x)
        raise _refuse(path, what)
    if "lr_effective" not in df.columns and "lr" in df.columns:
        df["lr_effective"] = df["lr"]      # an older table: its lr column was the lr used (scaling applied)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    df = df[COLUMNS]
    unsplit = df["status"].astype(str) == S.UNSPLIT_FAILED      # one "failed" for diverged and not_converged
    if unsplit.any():
        df.loc[unsplit, "status"] = [S.from_summary({"status": S.UNSPLIT_FAILED, "reason": r})
                                    for r in df.loc[unsplit, "reason"]]
    bad = ~df["status"].isin(STATUSES)
    if bad.any():
        i = int(bad.idxmax())
        raise _refuse(path, f"line {i + 2}: status {df.at[i, 'status']!r}, not one of {', '.join(STATUSES)}")
    for c in NUMERIC:
        given = df[c].notna()
        num = pd.to_numeric(df[c], errors="coerce")
        garbage = given & num.isna()
        if garbage.any():
            i = int(garbage.idxmax())
            raise _refuse(path, f"line {i + 2}: {c} is {df.at[i, c]!r}, not a number")
    return _one_row_per_run(path, df)


def check_writable(path: str | os.PathLike | None = None) -> Path:
    """Before any work: the results table at ``path`` is a results table (:func:`read`) and can be written
    (its folder can be created, the file replaced); else one :class:`UserError` naming the path. Through a
    symbolic link, the checks are of the link's target (what :func:`upsert` replaces)."""
    path = Path(path) if path else default_path()
    read(path)
    path = _target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the folder of the results table {path}: {e.strerror or e}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write the results table {path}: permission denied")
    return path


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

    A row holding a result (status done, diverged or not_converged: ``pretrain.base.status.RESULTS``) is never
    replaced by a row that is not a result (pending, running, error): a finished result is never overwritten
    by a rerun. A result may be replaced by a result (a re-evaluation).
    Unknown columns are an error, so a typo cannot silently create a column. Through a symbolic link the
    link's target is locked and replaced (:func:`_target`); the link stays.
    """
    path = _target(Path(path) if path else default_path())
    keys = (key,) if isinstance(key, str) else tuple(key)
    rows = [dict(r) for r in rows]
    for r in rows:
        unknown = sorted(set(r) - set(COLUMNS))
        if unknown:
            raise ValueError(f"unknown results column(s): {', '.join(unknown)}")
        for k in keys:
            if k not in r or r[k] in (None, ""):
                raise ValueError(f"results row without {k!r}: {r}")
        if r.get("status") not in STATUSES:
            raise ValueError(f"bad status {r['status']!r} (one of {', '.join(STATUSES)})")
    try:
        with _locked(path):
            return _upsert_locked(rows, path, keys)
    except OSError as e:
        raise UserError(f"cannot write the results table {path}: {e.strerror or e}") from None


def _upsert_locked(rows: list[dict], path: Path, keys: tuple) -> pd.DataFrame:
    for stale in stale_temps(path.parent):       # a writer killed mid-write (we hold the lock)
        if stale.name.startswith(f".{path.name}."):
            stale.unlink(missing_ok=True)
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
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return df


def _fits(dtype, value) -> bool:
    try:
        pd.Series([value]).astype(dtype)
        return True
    except (TypeError, ValueError):
        return False

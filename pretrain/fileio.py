"""The suite's one home for writing files: every file is written atomically (a temp file in the same folder,
then ``os.replace``), so a killed process never leaves a half-written checkpoint, result, table or figure, and
a failed check never replaces what was there. Also the suite's one ``git_sha`` (the provenance column).

Temp files are named ``.<name>.<random>.tmp[<suffix>]`` (a suffix where the writer needs one, e.g. ``.pkl``
for detectron2 or ``.png`` for matplotlib); :func:`stale_temps` finds the ones a killed writer left behind.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def atomic_path(path, suffix: str = "", check: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path`` to write to; on success (and once ``check(tmp)`` passed, if given)
    it replaces ``path``. On any exception the temp file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)             # mkstemp makes 0600; give the file the usual permissions
    tmp = Path(tmp)
    try:
        yield tmp
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path, data: bytes, check: Callable[[Path], None] | None = None) -> None:
    with atomic_path(path, check=check) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def atomic_save(obj, path) -> None:
    """``torch.save`` atomically (checkpoints)."""
    import torch
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())


@contextmanager
def atomic_dir(path) -> Iterator[Path]:
    """Yield a temp folder beside ``path`` to fill; on success it replaces ``path`` (a whole dataset at once)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def stale_temps(folder) -> list[Path]:
    """The temp files of :func:`atomic_path` in ``folder`` (left there by a killed writer)."""
    folder = Path(folder)
    return sorted(set(folder.glob(".*.tmp")) | set(folder.glob(".*.tmp.*")))


def read_json(path) -> dict | None:
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def git_sha(repo=REPO) -> str:
    """The checkout's commit as 12 hex digits, ``-dirty`` appended when tracked files differ from it;
    ``unknown`` outside a git checkout. One format for every results row."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"

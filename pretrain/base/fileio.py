"""The suite's one home for writing files: every file is written atomically (a temp file in the same folder,
then ``os.replace``), so a killed process never leaves a half-written checkpoint, result, table or figure, and
a failed check never replaces what was there; :func:`refuse_overwrite` is the one check, before anything is
written, that no output replaces one of the command's inputs or a user's own file.

Temp files are named ``.<name>.<random>.tmp[<suffix>]`` (a suffix where the writer needs one, e.g. ``.pkl``
for detectron2 or ``.png`` for matplotlib); :func:`stale_temps` finds the ones a killed writer left behind.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from pretrain.base.errors import UserError


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
    except OSError as e:
        if e.filename is None and e.errno is not None:  # a failed write (ENOSPC, EIO): name the file it was for
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from None
        raise
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
    """``torch.save`` atomically (checkpoints). The file is serialised in memory first and then written with
    :func:`atomic_write_bytes`, so a full disk is an ``OSError`` (ENOSPC) naming ``path``, not torch's zip
    writer's ``RuntimeError``; the previous file stays as it was."""
    import torch
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getbuffer())


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


def same_file(a, b) -> bool:
    """Whether the paths ``a`` and ``b`` name one file: the same path once symlinks are resolved, or the same
    file under two names (a hard link)."""
    a, b = Path(a), Path(b)
    try:
        if a.resolve() == b.resolve():
            return True
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, RuntimeError):           # a symlink loop: no file to compare
        return False


def refuse_overwrite(outputs, inputs=(), ours: Callable[[Path], bool] | None = None, what: str = "output") -> None:
    """The one guard against an output that destroys an input, called before anything is written: a
    UserError when one of ``outputs`` is one of ``inputs`` (:func:`same_file`: symlinks and hard links
    included), or exists and ``ours(path)`` does not recognise it as a file of the kind the command writes
    (a user's own file of that name). ``ours`` None: an existing output that is no input may be replaced (a
    re-run rewrites its own result)."""
    for o in map(Path, outputs):
        for i in inputs:
            if i is not None and same_file(o, i):
                raise UserError(f"{what} {o} is the input {i}: writing it would destroy the input; choose "
                                f"another {what}")
        if ours is not None and (o.exists() or o.is_symlink()) and not ours(o):
            raise UserError(f"{what} {o} already exists and is not a file this command writes: not "
                            f"overwritten; move it away or choose another {what}")

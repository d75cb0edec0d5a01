"""A run directory: the names of its files (:class:`RunDir`, the only place they are spelled) and its one owner: an exclusive ``flock`` on ``<run_dir>/.lock`` held for the whole run.

Two ``python -m pretrain`` on one ``--output``, a relaunched grid whose killed launcher left its job training,
or one grid launched twice would otherwise train one run twice at once and lose one result (or mix one run's
``config.yaml`` with the other's checkpoint). The kernel drops the lock when its process dies (``kill -9``
included), so a lock is never stale; the pid and host written into the file only name the owner in messages.
On a cluster the run directories sit on a shared file system: ``flock`` there is an NFS/Lustre lock, which
Linux supports (NFSv4, Lustre with ``flock`` mounts).

Each process of a multi-process (DDP) run locks its own file (``.lock`` for rank 0, ``.lock.rank<R>``), so a
second launch of the same run fails on every rank at once instead of leaving its other ranks waiting in a
collective.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pretrain.base.errors import UserError
from pretrain.base.fileio import read_json, stale_temps
from pretrain.base.provenance import host, utc_now

LOCK = ".lock"


@dataclass(frozen=True)
class RunDir:
    """The files of one run directory (pretraining, the grid job, the linear protocol all write here)."""
    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def config(self) -> Path:         # the resolved config (config.yaml)
        return self.path / "config.yaml"

    @property
    def checkpoint(self) -> Path:     # everything needed to resume (checkpoint.pth, atomic, every epoch)
        return self.path / "checkpoint.pth"

    @property
    def metrics(self) -> Path:        # one JSON line per epoch (metrics.jsonl)
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:        # the run's result and status (summary.json)
        return self.path / "summary.json"

    @property
    def lincls(self) -> Path:         # the linear protocol's result (lincls.json)
        return self.path / "lincls.json"

    @property
    def job(self) -> Path:            # the executor and job id that trains it (job.json)
        return self.path / "job.json"

    @property
    def error_log(self) -> Path:      # the traceback of a run stopped by an error (error.log)
        return self.path / "error.log"

    def set_aside_summary(self, status: str, stamp: int) -> Path:
        """Move summary.json to ``summary.<status>.<stamp>.json`` (kept; the run is trained again)."""
        dest = self.path / f"summary.{status}.{stamp}.json"
        os.replace(self.summary, dest)
        return dest

    def read_summary(self) -> dict | None:
        return read_json(self.summary)

    def epochs_logged(self) -> int:
        """Epochs in metrics.jsonl (0 when there is none)."""
        try:
            with open(self.metrics) as f:
                return sum(1 for line in f if line.strip())
        except OSError:
            return 0


_held: dict[str, int] = {}             # lock path -> depth, for this process (a job's lock covers its run())


def _owner_text(fd: int) -> str:
    """What the lock's owner wrote into the lock file ('pid P on host H since T')."""
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
    except OSError:
        return "another process"


def lock_path(run_dir, rank: int = 0) -> Path:
    return Path(run_dir) / (LOCK if rank == 0 else f"{LOCK}.rank{rank}")


def is_run_dir(run_dir) -> bool:
    """Whether ``run_dir`` may hold a run: it is missing or empty, or the suite made it a run directory. Every
    run takes its lock (``.lock``, or ``.lock.rank<R>``) before it writes anything, and the grid launcher
    records the job (``job.json``) before the job first locks it; the lock file stays after the run. A
    directory without either (e.g. a folder holding the user's own ``config.yaml``) is not one, and a run
    would overwrite its files."""
    d = Path(run_dir)
    try:
        names = [e.name for e in os.scandir(d)]
    except FileNotFoundError:
        return True
    return not names or any(n == LOCK or n.startswith(LOCK + ".rank") or n == RunDir(d).job.name for n in names)


def prepare(run_dir) -> Path:
    """Create ``run_dir`` if needed; one UserError naming the path when it cannot hold a run (a file, a
    non-empty directory that is not a run directory (:func:`is_run_dir`), a read-only or missing parent, no
    permission)."""
    d = Path(run_dir)
    if d.exists() and not d.is_dir():
        raise UserError(f"--output {d} is an existing file, not a run directory; choose a directory")
    if d.is_dir() and os.access(d, os.R_OK | os.X_OK) and not is_run_dir(d):
        raise UserError(f"--output {d} is a non-empty directory that is not a run directory (no {LOCK}: no run "
                        f"of this suite wrote it); its files would be overwritten: choose a new or empty "
                        f"directory")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the run directory {d}: {e.strerror or e}") from None
    if not os.access(d, os.W_OK | os.X_OK):
        raise UserError(f"cannot write into the run directory {d}: permission denied")
    return d


def owner(run_dir, rank: int = 0) -> str | None:
    """Who holds the run directory's lock ('pid P on host H since T'), or None when nobody does."""
    p = lock_path(run_dir, rank)
    if str(p) in _held:
        return f"pid {os.getpid()} on host {host()} (this process)"
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        return _owner_text(fd)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextmanager
def lock(run_dir, rank: int = 0, wait_s: float = 0.0, poll_s: float = 5.0, on_wait=None):
    """Hold the run directory exclusively (re-entrant within one process). ``wait_s`` = 0: a directory held by
    another process is one UserError naming the owner; > 0: wait up to that long for it (``on_wait(owner)``
    is called once when waiting starts)."""
    d = prepare(run_dir)
    p = lock_path(d, rank)
    key = str(p)
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    try:
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise UserError(f"cannot create the lock file {p}: {e.strerror or e}") from None
    try:
        deadline, told = time.monotonic() + wait_s, False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise UserError(f"cannot lock {p}: {e.strerror or e}") from None
                who = _owner_text(fd)
                if time.monotonic() >= deadline:
                    raise UserError(f"{d} is in use by {who}: one run directory, one process; wait for it to "
                                    f"finish or choose another --output") from None
                if on_wait and not told:
                    on_wait(who)
                    told = True
                time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.05)))
        stamp = utc_now()
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {host()} since {stamp}".encode(), 0)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def clean_stale_temps(run_dir) -> list[Path]:
    """Remove the temp files an atomic write killed mid-way left behind (``pretrain.base.fileio``: up to a
    checkpoint's size). Only safe under :func:`lock`: no other process is writing in the directory."""
    gone = []
    for p in stale_temps(run_dir):
        try:
            p.unlink()
            gone.append(p)
        except FileNotFoundError:
            pass
    return gone

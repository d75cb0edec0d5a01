"""Provenance: where and when a result was made, in one format for every results row, summary and lock (the
checkout's commit, the host, the UTC time)."""
from __future__ import annotations

import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# what a result is computed by: an edit elsewhere (tests, scripts, docs) does not make a result's commit dirty
CODE = ("pretrain", "ablations", "reports", "transfer", "pyproject.toml")


def git_sha(repo=REPO) -> str:
    """The checkout's commit as 12 hex digits, ``-dirty`` appended when a tracked file of the suite's code
    (:data:`CODE`) differs from it; ``unknown`` outside a git checkout. One format for every results row."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def host() -> str:
    """This machine's host name."""
    return socket.gethostname()


def utc_now() -> str:
    """The current time as ISO 8601 UTC to the second (``2026-12-07T08:00:00+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stamp() -> dict:
    """``host``, ``git_sha`` and ``finished_at`` of a result written now (the results table's provenance)."""
    return {"host": host(), "git_sha": git_sha(), "finished_at": utc_now()}

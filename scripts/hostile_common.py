"""What every hostile-input case shares: the scratch context (:class:`Ctx`), running a real command in it, and
the one result row a case returns (exit codes, last stderr line, whether a traceback reached the user, what a
check of the files found). The cases live in ``scripts/hostile_inputs.py`` and ``scripts/hostile_*.py``."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PY = sys.executable
SHORT = ["--preset", "tiny", "--epochs", "1", "--max-steps", "2", "--subset", "512", "--moco-k", "256",
         "--knn-subset", "256", "--threads", "1", "--no-progress"]
LONG = ["--preset", "tiny", "--epochs", "2", "--max-steps", "40", "--subset", "4096", "--moco-k", "256",
        "--knn-subset", "256", "--threads", "1", "--no-progress"]


class Ctx:
    def __init__(self, repo: Path, tmp: Path):
        self.repo, self.tmp = repo, tmp
        self.env = {**os.environ, "MOCOBENCH_RUNS": str(tmp / "runs"), "MOCOBENCH_RESULTS": str(tmp / "results.csv"),
                    "MOCOBENCH_SUBMITIT": str(tmp / "submitit"), "PYTHONWARNINGS": "ignore",
                    # the checkout measured first on sys.path: else the editable install and detectron2's .pth
                    # hook (transfer.compat) would import this checkout's packages beside an older one's
                    "PYTHONPATH": os.pathsep.join([str(repo), *filter(None, [os.environ.get("PYTHONPATH")])])}

    def run(self, argv, env=None, timeout=600):
        return subprocess.run([PY, *argv], cwd=self.repo, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, argv, env=None):
        return subprocess.Popen([PY, *argv], cwd=self.repo, env={**self.env, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _last(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip() and "Warning" not in ln]
    return lines[-1].strip()[:160] if lines else ""


def _res(procs, check: str = "") -> dict:
    procs = procs if isinstance(procs, list) else [procs]
    return {"exit": ",".join(str(p.returncode) for p in procs),
            "stderr": " || ".join(_last(p.stderr) for p in procs if _last(p.stderr)),
            "traceback": any("Traceback (most recent call last)" in p.stderr for p in procs), "check": check}


def _popen_res(procs, check=""):
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        outs.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return _res(outs, check)


def _short_run(c: Ctx, out: Path, extra=()):
    r = c.run(["-m", "pretrain", *SHORT, *extra, "--output", str(out)])
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def refused(proc, check: str = "") -> dict:
    """The row of a case whose input must be refused: anything but exit code 2 is flagged (``NOT refused``)."""
    procs = proc if isinstance(proc, list) else [proc]
    ok = all(p.returncode == 2 for p in procs)
    return _res(procs, check if ok else " ".join(x for x in ("NOT refused", check) if x))


def holds(row: dict) -> bool:
    """Whether a case's row keeps the README's contract: no traceback reached the user, no exit code 1 (an
    uncaught error), the case could run (a hang is a setup failure), and its file check found nothing wrong
    (a check flags a bad outcome with an upper-case word: REWRITTEN, LEFT, RAN, NOT refused...)."""
    codes = str(row.get("exit", "")).split(",")
    alarm = any(len(w) >= 3 and w.isalpha() and w.isupper() for w in str(row.get("check", "")).split())
    return not row.get("traceback") and "1" not in codes and row.get("exit") not in ("setup failed",) \
        and not alarm

"""Helpers and fixtures shared by tests/ablations/test_ablations.py and tests/ablations/test_slurm_cluster.py (imported by them;
not a conftest.py, which the suite's lead owns).

``slurm_cluster``: a real single-node SLURM. Uses the cluster named by an exported ``SLURM_CONF`` when it
answers (``.ci/run`` starts one with ablations/slurm/cluster.sh), else starts one with cluster.sh (and stops it
after the session). In CI (``CI=true``) a cluster that cannot start is a failure; elsewhere, without root or
apt-get, the SLURM tests are skipped with the reason.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CLUSTER_SH = REPO / "ablations" / "slurm" / "cluster.sh"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_STARTED: list = []

# A few steps of the real pretrainer on the synthetic set (tiny preset: narrow ResNet-18, CIFAR stem).
FAST = {"dataset": "synthetic", "in_chans": 3, "width": 8, "batch_size": 32, "moco_k": 64, "max_steps": 2,
        "epochs": 2, "knn_every": 0, "knn_subset": 64, "subset": 64, "threads": 1}


def _answers(env=None) -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=15, env=env)
        return r.returncode == 0 and bool(r.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return False


def ensure_cluster() -> str:
    """SLURM_CONF of a running cluster (started here if needed); pytest.skip/fail as the module says."""
    if os.environ.get("SLURM_CONF") and _answers():
        return os.environ["SLURM_CONF"]
    if not IN_CI and (os.geteuid() != 0 or not shutil.which("apt-get")):
        pytest.skip("SLURM tests need a running cluster (export SLURM_CONF) or root + apt-get to start one "
                    "with ablations/slurm/cluster.sh")
    t0 = time.monotonic()
    r = subprocess.run(["bash", str(CLUSTER_SH), "up"], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        pytest.fail(f"cluster.sh up failed (rc {r.returncode}): {r.stderr.strip()[-2000:]}")
    conf = [ln.split("=", 1)[1] for ln in r.stdout.splitlines() if ln.startswith("export SLURM_CONF=")]
    assert conf, f"cluster.sh up printed no SLURM_CONF line: {r.stdout!r}"
    os.environ["SLURM_CONF"] = conf[-1]
    if "already up" not in r.stderr:
        _STARTED.append(time.monotonic() - t0)
    assert _answers(), "cluster.sh up returned 0 but sinfo does not answer"
    return conf[-1]


@pytest.fixture(scope="session")
def slurm_cluster():
    conf = ensure_cluster()
    yield conf
    if _STARTED:
        _STARTED.clear()
        subprocess.run(["bash", str(CLUSTER_SH), "down"], capture_output=True, text=True, timeout=120)


def write_grid(path: Path, name: str, sweep: list, fixed: dict | None = None, evals=("knn",), seeds=1) -> Path:
    """A small grid file in the format of ablations/grids/*.yaml (one seed unless ``seeds``; None: the
    preset's default)."""
    g = {"name": name, "paper": "test", "eval": list(evals), "fixed": {**FAST, **(fixed or {})}, "sweep": sweep,
         "presets": {"tiny": {}}}
    if seeds is not None:
        g["seeds"] = seeds
    path.write_text(yaml.safe_dump(g))
    return path


def metrics(run_dir: Path) -> list[dict]:
    p = Path(run_dir) / "metrics.jsonl"
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()] if p.exists() else []


def wait_until(pred, timeout_s: float, what: str, poll_s: float = 0.5):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def preempt(job) -> None:
    """Preempt a running job (submitit's ``_interrupt``): it checkpoints, is requeued, and resumes.

    submitit's local controller does not forward the preemption signal (SIGUSR2) to its tasks (it dies of
    it), so for the local executor the signal goes to the task processes, as SLURM delivers it to them."""
    import signal

    import submitit
    if isinstance(job, submitit.LocalJob):
        pid = job._process.pid if job._process is not None else None
        kids = []
        if pid:
            for t in Path(f"/proc/{pid}/task").glob("*/children"):
                kids += [int(x) for x in t.read_text().split()]
        if not kids:
            raise RuntimeError(f"local job {job.job_id} has no running task to preempt")
        for k in kids:
            os.kill(k, signal.SIGUSR2)
        return
    job._interrupt()

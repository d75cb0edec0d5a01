"""The real single-node SLURM of ablations/slurm/cluster.sh: jobs run (sbatch, srun), accounting answers (sacct),
the node exposes the machine's CPUs and memory, two 1-CPU jobs run side by side (DefMemPerCPU), and the
script's down/status are idempotent. ``executor auto`` picks SLURM exactly when a cluster answers."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ablations.executors import resolve_executor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/ helpers, any import mode
from conftest_ablations import CLUSTER_SH, slurm_cluster, wait_until  # noqa: F401

pytestmark = pytest.mark.timeout(300)


def sh(*cmd, timeout=30) -> str:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(cmd)}: rc {r.returncode}: {r.stderr}"
    return r.stdout


def sacct_state(job_id: str) -> str:
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "state"], capture_output=True,
                         text=True, timeout=15).stdout.split()
    return out[0] if out else ""


@pytest.mark.slurm
def test_sbatch_and_srun_run_and_sacct_sees_them(slurm_cluster, tmp_path):
    jid = sh("sbatch", "--parsable", "-o", str(tmp_path / "%j.out"), "--wrap", "echo hello from $SLURM_JOB_ID").strip()
    wait_until(lambda: sacct_state(jid) == "COMPLETED", 60, f"sbatch job {jid} COMPLETED in sacct")
    assert (tmp_path / f"{jid}.out").read_text().strip() == f"hello from {jid}"
    out = sh("srun", "-n", "2", "-J", "mocobench-srun-test", "hostname", timeout=60).split()
    assert len(out) == 2
    srun_id = wait_until(lambda: [ln.split("|")[0] for ln in sh("sacct", "-n", "-X", "-P", "-S", "now-10minutes",
                                                                  "--name", "mocobench-srun-test", "-o",
                                                                  "jobid,state").split()
                                   if ln.endswith("|COMPLETED")], 30, "the srun job in sacct")
    assert srun_id


@pytest.mark.slurm
def test_node_has_machine_cpus_and_memory_and_runs_jobs_side_by_side(slurm_cluster, tmp_path):
    node = sh("scontrol", "show", "node")
    cpus = int(re.search(r"CPUTot=(\d+)", node).group(1))
    real = int(re.search(r"RealMemory=(\d+)", node).group(1))
    mem_total_mb = int(re.search(r"MemTotal:\s+(\d+)", open("/proc/meminfo").read()).group(1)) // 1024
    assert cpus == os.cpu_count()
    assert 0.8 * mem_total_mb < real < mem_total_mb
    if cpus < 2:
        pytest.skip("one CPU: jobs cannot run side by side")
    # DefMemPerCPU: a 1-CPU job takes 1 GiB, not the whole node, so two of them run at the same time.
    ids = [sh("sbatch", "--parsable", "-n", "1", "-o", "/dev/null", "--wrap", "sleep 6").strip() for _ in range(2)]
    try:
        wait_until(lambda: sh("squeue", "-h", "-j", ",".join(ids), "-t", "R", "-o", "%i").split() and
                   len(sh("squeue", "-h", "-j", ",".join(ids), "-t", "R", "-o", "%i").split()) == 2,
                   30, "both 1-CPU jobs RUNNING at once")
    finally:
        subprocess.run(["scancel", *ids], timeout=15)


@pytest.mark.slurm
def test_executor_auto_is_slurm_only_when_a_cluster_answers(slurm_cluster, monkeypatch, tmp_path):
    assert resolve_executor("auto") == "slurm"
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "no-such-slurm.conf"))
    assert resolve_executor("auto") == "local"


def test_down_is_idempotent_and_status_says_not_up(tmp_path):
    env = {**os.environ, "MOCOBENCH_SLURM_DIR": str(tmp_path / "state")}
    for _ in range(2):
        r = subprocess.run(["bash", str(CLUSTER_SH), "down"], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    r = subprocess.run(["bash", str(CLUSTER_SH), "status"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "not configured" in r.stderr
    r = subprocess.run(["bash", str(CLUSTER_SH), "bogus"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "usage" in r.stderr


@pytest.mark.slurm
def test_pretrain_in_a_two_task_allocation_alone_in_the_script_and_as_a_group_under_srun(slurm_cluster, tmp_path):
    """`python -m pretrain` in the batch script of `sbatch --ntasks 2` is one process (it used to wait for a
    peer forever); the same command under `srun` is a 2-process group (shuffle_bn auto -> ddp)."""
    repo = Path(__file__).resolve().parents[2]
    fast = ("--dataset synthetic --in-chans 3 --width 8 --batch-size 32 --moco-k 64 --max-steps 2 --epochs 1 "
            "--subset 64 --knn-subset 64 --threads 1 --workers 0 --no-progress")
    cmd = f"{sys.executable} -m pretrain --preset tiny {fast}"
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\ncd {repo}\nexport PYTHONPATH={repo}\n"
                      f"{cmd} --output {tmp_path / 'alone'} || exit 1\n"
                      f"srun --kill-on-bad-exit=1 {cmd} --output {tmp_path / 'group'} || exit 2\n")
    jid = sh("sbatch", "--parsable", "-n", "2", "-c", "1", "-t", "5", "-o", str(tmp_path / "job.out"),
             str(script)).strip()
    wait_until(lambda: sacct_state(jid) in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), 240,
               f"job {jid} to end")
    log = (tmp_path / "job.out").read_text() if (tmp_path / "job.out").exists() else ""
    assert sacct_state(jid) == "COMPLETED", log[-3000:]
    import json
    alone = json.loads((tmp_path / "alone" / "summary.json").read_text())
    group = json.loads((tmp_path / "group" / "summary.json").read_text())
    assert alone["status"] == group["status"] == "done"
    assert alone["world_size"] == 1 and group["world_size"] == 2 and alone["run_id"] != group["run_id"]

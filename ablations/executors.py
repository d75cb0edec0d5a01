"""submitit executors for the suite (grids and transfer jobs): which one (always named explicitly), its SLURM
parameters (flags or a YAML profile), the processes per run, and where its logs go."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import submitit

from pretrain.base.errors import UserError
from pretrain.base.provenance import REPO
from pretrain.base.yamlio import read_yaml_mapping

from .envpaths import env_path

EXECUTORS = ("slurm", "local", "debug", "auto")
# SLURM/launch parameters: flag / profile key -> type.


PARAMS = {"partition": str, "nodes": int, "gpus_per_node": int, "ntasks_per_node": int, "cpus_per_task": int,
          "time": int, "mem_gb": float, "constraint": str, "account": str, "qos": str,
          "array_parallelism": int, "parallel": int, "signal_delay_s": int}


# the smallest value of each numeric parameter (0 GPUs: a CPU job; everything else counts something)
MINIMUM = {"nodes": 1, "gpus_per_node": 0, "ntasks_per_node": 1, "cpus_per_task": 1, "time": 1, "mem_gb": 0.001,
           "array_parallelism": 1, "parallel": 1, "signal_delay_s": 0}


def check_params(params: dict) -> dict:
    """The launch parameters (profile and flags merged), each checked once: a count below its minimum
    (:data:`MINIMUM`: ``--parallel 0``, a negative time) or a memory that is not a finite number is one
    UserError naming the parameter, not a silent ``1`` or a scheduler's rejection later."""
    for k, v in params.items():
        if v is None or k not in MINIMUM:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < MINIMUM[k]:
            flag = "--" + k.replace("_", "-")
            raise UserError(f"{flag} (or the profile's {k}) must be "
                            f"{'a number > 0' if k == 'mem_gb' else f'an integer >= {MINIMUM[k]}'}, got {v!r}")
    return params


def slurm_answers(timeout_s: float = 10) -> bool:
    """True when a SLURM controller answers ``sinfo`` (the test for ``--executor auto``)."""
    if not shutil.which("sinfo"):
        return False
    conf = os.environ.get("SLURM_CONF")
    if conf and not Path(conf).is_file():
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=timeout_s)
        return out.returncode == 0 and bool(out.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return False


def resolve_executor(kind: str) -> str:
    if kind not in EXECUTORS:
        raise UserError(f"unknown executor {kind!r} (one of {', '.join(EXECUTORS)})")
    if kind == "auto":
        return "slurm" if slurm_answers() else "local"
    if kind == "slurm" and not slurm_answers():
        raise UserError("executor slurm: no SLURM controller answers sinfo (is SLURM_CONF exported? "
                        "`make slurm-up` starts a local one)")
    return kind


def load_profile(path: str | None) -> dict:
    """SLURM parameters from a YAML profile (keys as the flags: partition, gpus_per_node, time, ...)."""
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise UserError(f"profile not found: {p}")
    d = read_yaml_mapping(p, "a profile")
    bad = sorted(set(d) - set(PARAMS))
    if bad:
        raise UserError(f"{p}: unknown profile key(s) {', '.join(bad)} (known: {', '.join(PARAMS)})")
    out = {}
    for k, v in d.items():
        try:
            out[k] = PARAMS[k](v) if v is not None else None
        except (TypeError, ValueError):
            raise UserError(f"{p}: {k} must be {PARAMS[k].__name__}, got {v!r}") from None
    return out


def local_visible_gpus() -> tuple[int, ...]:
    """The GPU indices this process sees: $CUDA_VISIBLE_DEVICES when it lists indices, else all the driver
    has (``torch.cuda.device_count()``; () without CUDA)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [x.strip() for x in env.split(",") if x.strip()]
        if all(x.isdigit() for x in ids):
            return tuple(int(x) for x in ids)
    import torch
    return tuple(range(torch.cuda.device_count())) if torch.cuda.is_available() else ()


def make_executor(kind: str, folder: Path, params: dict, name: str = "mocobench"):
    """A submitit executor, always chosen explicitly (submitit's auto-detection picks SLURM whenever srun
    is on PATH). One task per GPU: ntasks_per_node defaults to gpus_per_node."""
    gpus = params.get("gpus_per_node") or 0
    tasks = params.get("ntasks_per_node") or max(gpus, 1)
    if kind == "slurm":
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
        p = {"job_name": name, "time": params.get("time") or 120, "nodes": params.get("nodes") or 1,
             "ntasks_per_node": tasks, "cpus_per_task": params.get("cpus_per_task") or 1,
             "signal_delay_s": params.get("signal_delay_s") or 90, "stderr_to_stdout": True}
        if gpus:
            p["gpus_per_node"] = gpus
        for k in ("partition", "constraint", "account", "qos", "array_parallelism"):
            if params.get(k):
                p[k] = params[k]
        if params.get("mem_gb"):
            p["mem"] = f"{int(math.ceil(params['mem_gb'] * 1024))}MB"
        ex.update_parameters(**p)
        return ex
    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=3)
        # submitit sets the job's CUDA_VISIBLE_DEVICES to its first gpus_per_node GPUs ("" for 0): without
        # --gpus-per-node the job sees the GPUs this process sees (else a GPU workstation trains on its CPU)
        visible = local_visible_gpus()
        shown = {"gpus_per_node": gpus} if gpus else {"gpus_per_node": len(visible), "visible_gpus": visible}
        ex.update_parameters(timeout_min=params.get("time") or 120, tasks_per_node=tasks,
                             signal_delay_s=params.get("signal_delay_s") or 30, **shown)
        return ex
    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    raise UserError(f"unknown executor {kind!r}")


def launch_world(params: dict | None) -> int:
    """Processes of one run under these launch parameters: tasks per node (default: one per GPU) x nodes.
    Part of each run's identity (per-process batch, BN layout)."""
    params = params or {}
    gpus = params.get("gpus_per_node") or 0
    return (params.get("ntasks_per_node") or max(gpus, 1)) * (params.get("nodes") or 1)


def submitit_base() -> Path:
    """Where submitit's logs go: ``$MOCOBENCH_SUBMITIT``, else ``submitit_logs/`` in the checkout (a file there
    is one error naming the variable: :func:`ablations.envpaths.env_path`)."""
    return env_path("MOCOBENCH_SUBMITIT", REPO / "submitit_logs", "dir")


def submitit_folder(kind: str, grid: str, preset: str) -> Path:
    """A fresh folder per submission (``slurmctld -c`` restarts job ids at 1, so ids are not unique)."""
    base = submitit_base()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    folder = base / grid / Path(preset).stem / f"{kind}-{stamp}"
    return folder / "%j" if kind == "slurm" else folder

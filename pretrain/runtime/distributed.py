"""Process-group setup (torchrun or SLURM environment; gloo on CPU, NCCL on GPU) and the collectives the
mechanisms need, with autograd where keys carry gradient (end-to-end)."""
from __future__ import annotations

import os
import re
import subprocess
from datetime import timedelta

import torch
import torch.distributed as dist

from pretrain.base.errors import UserError
from pretrain.runtime.launchenv import env_int


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def is_main() -> bool:
    return rank() == 0


def _first_host(nodelist: str) -> str:
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True,
                             timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    except (OSError, subprocess.TimeoutExpired):
        pass
    m = re.match(r"([^,\[]+)(\[(\d+))?", nodelist)
    return m.group(1) + (m.group(3) or "") if m else "127.0.0.1"


def in_srun_step() -> bool:
    """True inside a task of an ``srun`` step (the tasks SLURM launched together), not in the batch script.

    ``sbatch --ntasks 8`` runs its script once, with SLURM_NTASKS=8: a plain ``python -m pretrain`` there is
    one process and must not wait for 7 peers. Only srun's tasks carry SLURM_STEP_NUM_TASKS, and the batch
    step's SLURM_STEP_ID is not a number of a task step."""
    step = os.environ.get("SLURM_STEP_ID", os.environ.get("SLURM_STEPID", ""))
    return "SLURM_PROCID" in os.environ and "SLURM_STEP_NUM_TASKS" in os.environ and step.isdigit()


def slurm_world_size() -> int:
    """Processes of this srun step (1 outside a step)."""
    return env_int("SLURM_STEP_NUM_TASKS", 1, minimum=1) if in_srun_step() else 1


def planned_world_size() -> int:
    """The number of processes of this launch, read from the environment before the process group exists:
    the group's size if initialised, torchrun's WORLD_SIZE, else the tasks of the srun step, else 1."""
    if is_dist():
        return world_size()
    if os.environ.get("WORLD_SIZE", "").strip():
        return env_int("WORLD_SIZE", 1, minimum=1)
    return slurm_world_size()


def planned_rank() -> int:
    """This process's global rank, read from the environment before the process group exists (torchrun's
    RANK, else an srun step's SLURM_PROCID, else 0)."""
    if os.environ.get("RANK", "").strip():
        r = env_int("RANK", 0)
        if r >= planned_world_size():
            raise UserError(f"$RANK={r} is not below $WORLD_SIZE={planned_world_size()}")
        return r
    return env_int("SLURM_PROCID", 0) if in_srun_step() else 0


def export_torchrun_env(rank: int, world: int, local_rank: int, master_addr: str, job_id: str) -> None:
    """The one place that writes the process environment: torchrun's RANK, WORLD_SIZE, LOCAL_RANK and (unless
    set) MASTER_ADDR / MASTER_PORT (20000 + job id mod 20000: jobs sharing a node get different ports), for a
    launcher that is not torchrun (an srun step, a submitit job). A process that already has RANK keeps it."""
    if "RANK" in os.environ or world <= 1:
        return
    os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"] = str(rank), str(world), str(local_rank)
    os.environ.setdefault("MASTER_ADDR", master_addr)
    digits = "".join(ch for ch in str(job_id) if ch.isdigit()) or "0"
    os.environ.setdefault("MASTER_PORT", str(20000 + int(digits) % 20000))


def env_from_slurm() -> None:
    """torchrun's variables from a multi-task ``srun`` step (one task per GPU), if not set already."""
    if slurm_world_size() <= 1:
        return
    export_torchrun_env(env_int("SLURM_PROCID", 0), env_int("SLURM_STEP_NUM_TASKS", 1, minimum=1),
                        env_int("SLURM_LOCALID", 0),
                        _first_host(os.environ.get("SLURM_STEP_NODELIST",
                                                   os.environ.get("SLURM_JOB_NODELIST", "127.0.0.1"))),
                        os.environ.get("SLURM_JOB_ID", "0"))


def local_world_size() -> int:
    """Processes of this launch on this node (torchrun's LOCAL_WORLD_SIZE, srun's tasks on the node)."""
    for var in ("LOCAL_WORLD_SIZE", "SLURM_STEP_TASKS_PER_NODE" if in_srun_step() else ""):
        v = os.environ.get(var, "") if var else ""
        m = re.match(r"\d+", v)
        if m:
            return max(int(m.group(0)), 1)
    return 1


def cuda_index(local_rank: int, visible: int) -> int:
    """This process's CUDA ordinal: with one visible GPU per task (``--gpus-per-task 1``, or
    CUDA_VISIBLE_DEVICES set per task) it is 0; with the node's GPUs all visible, the local rank."""
    if visible < 1:
        raise UserError("device cuda: no CUDA device is visible to this process")
    if visible == 1:
        return 0
    if local_rank < visible:
        return local_rank
    raise UserError(f"local rank {local_rank} sees {visible} GPUs: launch one process per GPU "
                    f"(torchrun --nproc_per_node {visible}, or srun --gpus-per-task 1)")


_GROUPS = 0


def init(device: str, timeout_min: int = 60) -> torch.device:
    """Initialise the process group when launched with several processes; returns this process's device."""
    env_from_slurm()
    ws = env_int("WORLD_SIZE", 1, minimum=1)
    local_rank = env_int("LOCAL_RANK", 0)
    if ws > 1:
        planned_rank()                    # RANK checked against WORLD_SIZE before any rendezvous
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda", cuda_index(local_rank, torch.cuda.device_count())) if use_cuda \
        else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if ws > 1 and not is_dist():
        # each group of this process gets its own key prefix in the launcher's store: a second group after the
        # first was destroyed (pretraining, then the linear protocol) must not read the first one's keys
        global _GROUPS
        _GROUPS += 1
        store, r, w = next(dist.rendezvous("env://", timeout=timedelta(minutes=timeout_min)))
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", store=dist.PrefixStore(
            f"mocobench/{_GROUPS}", store), rank=r, world_size=w, timeout=timedelta(minutes=timeout_min))
    return dev


def cleanup() -> None:
    if is_dist():
        dist.destroy_process_group()


def workers_per_process(workers_per_node: int) -> int:
    """DataLoader workers of one process: the node's workers shared by its processes, rounded up (official
    ``main_moco.py``: ``workers = (workers + ngpus_per_node - 1) // ngpus_per_node``)."""
    n = local_world_size()
    return (workers_per_node + n - 1) // n if workers_per_node else 0


def shard_sizes(n: int, world: int) -> list[int]:
    """Sizes of ``world`` contiguous shards of ``n`` items (the first ``n % world`` one larger)."""
    return [n // world + (1 if r < n % world else 0) for r in range(world)]


def shard_range(n: int, rank_: int, world: int) -> tuple[int, int]:
    """[lo, hi) of rank ``rank_``'s contiguous shard: every item in exactly one shard, no padding."""
    sizes = shard_sizes(n, world)
    lo = sum(sizes[:rank_])
    return lo, lo + sizes[rank_]


@torch.no_grad()
def all_gather_list(x: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``x`` (same shape on all ranks), in rank order."""
    if not is_dist():
        return [x]
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return out


@torch.no_grad()
def all_gather_varsize(x: torch.Tensor) -> torch.Tensor:
    """Concatenation over ranks of tensors whose first dimension differs between ranks."""
    if not is_dist():
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [int(v) for v in torch.cat(all_gather_list(n)).tolist()]
    pad = torch.zeros((max(sizes) - x.shape[0], *x.shape[1:]), dtype=x.dtype, device=x.device)
    parts = all_gather_list(torch.cat([x, pad]))
    return torch.cat([p[:s] for p, s in zip(parts, sizes)])


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """All-gather without gradient (official MoCo ``concat_all_gather``)."""
    if not is_dist():
        return x
    out = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, 0)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient and returns this rank's slice."""

    @staticmethod
    def forward(ctx, x):
        ctx.n = x.shape[0]
        out = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, 0)

    @staticmethod
    def backward(ctx, g):
        g = g.contiguous().clone()
        dist.all_reduce(g)
        r = rank()
        return g[r * ctx.n:(r + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    return _GatherWithGrad.apply(x) if is_dist() else x


class _AllReduceWithGrad(torch.autograd.Function):
    """Sum over ranks; the gradient of a sum is the sum of the gradients."""

    @staticmethod
    def forward(ctx, x):
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, g):
        g = g.clone()
        dist.all_reduce(g)
        return g


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceWithGrad.apply(x) if is_dist() else x

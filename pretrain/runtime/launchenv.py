"""The launch environment as numbers: what torchrun (RANK, WORLD_SIZE, LOCAL_RANK) and SLURM (SLURM_PROCID,
SLURM_STEP_NUM_TASKS, SLURM_CPUS_PER_TASK, ...) put in a process's environment, read with one check. Torch-free,
so the grid launcher can read it too."""
from __future__ import annotations

import os

from pretrain.base.errors import UserError


def env_int(name: str, default: int, minimum: int = 0) -> int:
    """An integer a launcher put in the environment (torchrun's RANK, WORLD_SIZE, LOCAL_RANK; SLURM's task
    numbers): unset or empty is ``default``; anything that is not an integer >= ``minimum`` is one UserError
    naming the variable (a stale ``export WORLD_SIZE=x`` in a shell must not become a traceback)."""
    v = os.environ.get(name, "").strip()
    if not v:
        return default
    try:
        n = int(v)
    except ValueError:
        raise UserError(f"${name}={v!r} is not an integer (it tells this process its place in a multi-process "
                        f"launch: unset it, or launch with torchrun / srun)") from None
    if n < minimum:
        raise UserError(f"${name}={n} must be >= {minimum}")
    return n

"""Seeding: one formula for the seed of an epoch on a rank, used by pretraining and the linear protocol, so a
resumed run draws exactly the numbers of an uninterrupted one."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_for(seed: int, epoch: int, rank: int) -> int:
    """The seed of ``epoch`` on ``rank`` for the run seed ``seed`` (a 31-bit integer)."""
    return (seed * 1_000_003 + epoch * 7919 + rank * 104_729) % (2 ** 31)


def seed_all(seed: int, epoch: int, rank: int) -> int:
    """Reseed torch, ``random`` and numpy with :func:`seed_for` at the start of an epoch; returns that seed."""
    s = seed_for(seed, epoch, rank)
    torch.manual_seed(s)
    random.seed(s)
    np.random.seed(s)
    return s

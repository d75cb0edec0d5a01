"""Learning-rate schedules as pure functions of the epoch (official ``adjust_learning_rate``)."""
from __future__ import annotations

import math


def step_lr(base_lr: float, epoch: int, milestones) -> float:
    """MoCo v1: lr x 0.1 at each milestone epoch (120 and 160 of 200)."""
    for m in milestones:
        base_lr *= 0.1 if epoch >= m else 1.0
    return base_lr


def cosine_lr(base_lr: float, epoch: int, epochs: int) -> float:
    """MoCo v2 (``--cos``): half-period cosine from base_lr to 0 over the run, set once per epoch."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


def lr_at(cfg, epoch: int) -> float:
    return cosine_lr(cfg.effective_lr, epoch, cfg.epochs) if cfg.cos else step_lr(cfg.effective_lr, epoch,
                                                                                  cfg.schedule)

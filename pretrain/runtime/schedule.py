"""Learning-rate schedules as pure functions of the epoch (official ``adjust_learning_rate``)."""
from __future__ import annotations

import math


def step_lr(base_lr: float, epoch: int, milestones) -> float:
    """MoCo v1: lr x 0.1 at each milestone epoch (120 and 160 of 200)."""
    for m in milestones:
        base_lr *= 0.1 if epoch >= m else 1.0
    return base_lr


def cosine_lr(base_lr: float, epoch: int, epochs: int, first_epoch: int = 0) -> float:
    """MoCo v2 (``--cos``): half-period cosine from base_lr towards 0 over the run, set once per epoch.

    ``epoch`` counts from 0 (the trainer's numbering); ``first_epoch`` is the number the formula gives the
    first epoch: 0 in the official ``main_moco.py`` (epochs 0..epochs-1: the first epoch at base_lr), 1 in the
    CIFAR-10 demo (epochs 1..epochs: the first epoch at base_lr * 0.5 * (1 + cos(pi / epochs)), the last at 0).
    """
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * (epoch + first_epoch) / epochs))


def lr_at(cfg, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (0-based) of ``cfg``'s run."""
    if cfg.cos:
        return cosine_lr(cfg.effective_lr, epoch, cfg.epochs, cfg.cos_first_epoch)
    return step_lr(cfg.effective_lr, epoch, cfg.schedule)

"""The paper's "fail" as declared criteria (MoCo Sec. 4.1, m = 0: "the training loss oscillates and fails to
converge"): the per-epoch summaries of the step losses and the test that marks a run ``not_converged``."""
from __future__ import annotations

import math

import numpy as np

from pretrain.config import Config

#: per-step losses kept in an epoch's record (metrics.jsonl, the checkpoint): at most this many, as block means
STEP_LOSS_POINTS = 500


def loss_stats(step_loss: list, chance: float) -> dict:
    """An epoch's per-step training losses, summarised for the paper's "fail" ("the training loss oscillates and
    fails to converge", MoCo Sec. 4.1):

    - ``loss_osc``: the step-to-step variability, RMS of successive differences / sqrt 2 (nats; for independent
      noise of standard deviation s around a smooth curve it is s, and a slow trend barely moves it);
    - ``loss_chance_share``: the share of steps whose loss is at or above the chance level ln(1 + negatives);
    - ``loss_drop``: mean of the epoch's first tenth of steps minus mean of its last tenth (> 0: still falling).
    """
    x = np.asarray(step_loss, dtype=float)
    if len(x) < 2:
        return {"loss_osc": None, "loss_chance_share": None, "loss_drop": None}
    tenth = max(1, len(x) // 10)
    return {"loss_osc": float(np.sqrt(np.mean(np.diff(x) ** 2) / 2.0)),
            "loss_chance_share": float(np.mean(x >= chance)),
            "loss_drop": float(x[:tenth].mean() - x[-tenth:].mean())}


def loss_rise(history: list) -> float | None:
    """How far the last epoch's mean loss is above the lowest mean loss of the epochs before it (nats; < 0: the
    last epoch is the lowest). None with fewer than two epochs."""
    losses = [r.get("loss") for r in history]
    if len(losses) < 2 or any(v is None for v in losses):
        return None
    return float(losses[-1] - min(losses[:-1]))


def block_means(x: list, points: int = STEP_LOSS_POINTS) -> list:
    """``x`` itself when it has at most ``points`` values, else the means of ``points`` consecutive blocks."""
    if len(x) <= points:
        return [round(float(v), 5) for v in x]
    return [round(float(b.mean()), 5) for b in np.array_split(np.asarray(x, dtype=float), points)]


def chance_loss(cfg: Config) -> float:
    """InfoNCE of a model that cannot tell the positive from the negatives: ln(1 + negatives)."""
    negatives = cfg.batch_size - 1 if cfg.mechanism == "end_to_end" else cfg.moco_k
    return math.log(1 + negatives)


def not_converged(cfg: Config, history: list, knn_init: float | None = None) -> str:
    """The paper's "fail" (m = 0: "the training loss oscillates and fails to converge") as two declared tests;
    the reason names each one that fired ('' = converged):

    - ``fail_loss_frac`` (> 0): the last epoch's mean loss is still >= fail_loss_frac x the chance level
      ln(1 + negatives);
    - ``fail_below_init`` (with the kNN monitor): the final kNN top-1 is strictly below ``knn_init``, the kNN
      top-1 of the same network at its random initialisation (same seed, kNN protocol and data);
    - ``fail_loss_rise`` (> 0): the last epoch's mean loss is >= fail_loss_rise nats above the lowest mean loss of
      an earlier epoch (:func:`loss_rise`): the loss went back up instead of converging.
    """
    if not history:
        return ""
    reasons = []
    if cfg.fail_loss_frac:
        last, chance = history[-1]["loss"], chance_loss(cfg)
        if last >= cfg.fail_loss_frac * chance:
            reasons.append(f"last-epoch loss {last:.3f} >= {cfg.fail_loss_frac:g} x the chance level "
                           f"ln(1 + negatives) = {chance:.3f} (fail_loss_frac)")
    rise = loss_rise(history)
    if cfg.fail_loss_rise and rise is not None and rise >= cfg.fail_loss_rise:
        reasons.append(f"last-epoch loss {history[-1]['loss']:.3f} is {rise:.3f} above the lowest earlier epoch's "
                       f"(>= {cfg.fail_loss_rise:g} nats, fail_loss_rise)")
    final_knn = history[-1].get("knn_acc")
    if cfg.fail_below_init and cfg.knn_monitor and final_knn is not None and knn_init is not None:
        if final_knn < knn_init:
            reasons.append(f"final kNN top-1 {final_knn:.2f}% < {knn_init:.2f}% of the same network at random "
                           f"initialisation (fail_below_init)")
    return ("did not converge: " + "; ".join(reasons)) if reasons else ""

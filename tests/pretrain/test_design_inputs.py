"""What design decisions read, and the paper's "fail" measured: the validation split (disjoint from the
pretraining subset and the test set), the seed ranges (design seeds never confirmatory), the per-step loss
statistics and the declared "fail" criterion ``fail_loss_rise``."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ablations.baselines import plan as baseline_plan
from ablations.grid import DESIGN_SEEDS, default_seed_start, expand, load_grid
from pretrain.data import datasets as data
from pretrain.config import EVAL_KEYS, config_hash, load_config
from pretrain.base.errors import UserError
from pretrain.engine.criteria import block_means, loss_rise, loss_stats, not_converged
from pretrain.engine.lifecycle import run

from conftest import synthetic_overrides


# -- the validation split ---------------------------------------------------------------------------------------

def test_val_split_is_disjoint_from_the_pretraining_subset_and_fixed():
    n, subset = 60000, 20000
    tr, val = data.subset_indices(n, subset), data.val_indices(n, subset)
    assert len(val) == data.VAL_IMAGES == 10000
    assert not set(tr.tolist()) & set(val.tolist())
    assert torch.equal(val, data.val_indices(n, subset))               # the same for every run and seed
    assert torch.equal(val, data.val_indices(n, 30000))                # whatever subset leaves room for it
    with pytest.raises(UserError, match="subset 55000 \\+ 10000 > the 60000 training images"):
        data.val_indices(n, 55000)
    with pytest.raises(UserError, match="outside the pretraining subset"):
        data.val_indices(n, 0)                                          # all images pretrain: no room


def test_eval_split_val_scores_training_images_outside_the_subset(monkeypatch):
    """eval_splits with eval_split val: the scored images are training images (never test images) outside the
    pretraining subset; the kNN memory (the subset) is the same as with eval_split test."""
    n = 30000
    imgs = torch.arange(n, dtype=torch.int64).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    train = data.Split(imgs, torch.arange(n) % 10)
    test = data.Split(-torch.ones(500, 1, 2, 2, dtype=torch.int64), torch.zeros(500, dtype=torch.int64))
    monkeypatch.setattr(data, "load_split", lambda cfg, is_train: train if is_train else test)
    cfg = dataclasses.replace(load_config("tiny"), subset=15000)
    tr_t, te_t = data.eval_splits(cfg)
    tr_v, te_v = data.eval_splits(dataclasses.replace(cfg, eval_split="val"))
    assert torch.equal(tr_t.images, tr_v.images) and len(te_t) == 500 and len(te_v) == 10000
    ids_tr, ids_v = set(tr_v.images[:, 0, 0, 0].tolist()), set(te_v.images[:, 0, 0, 0].tolist())
    assert min(ids_v) >= 0 and not ids_tr & ids_v


def test_eval_split_is_an_evaluation_key_checked_like_the_others():
    cfg = load_config("tiny")
    assert "eval_split" in EVAL_KEYS and "fail_loss_rise" in EVAL_KEYS
    assert config_hash(cfg, 1) == config_hash(dataclasses.replace(cfg, eval_split="val"), 1)   # same training
    with pytest.raises(UserError, match="eval_split"):
        load_config("tiny", {"eval_split": "train"})
    with pytest.raises(UserError, match="fail_loss_rise must be >= 0"):
        load_config("tiny", {"fail_loss_rise": -1.0})


# -- seeds --------------------------------------------------------------------------------------------------------

def test_confirmatory_seeds_are_fresh_and_design_seeds_are_apart():
    start = default_seed_start("tiny")
    assert start == 1000 and start not in DESIGN_SEEDS and not set(range(7)) & set(DESIGN_SEEDS)
    grid = load_grid("table1_momentum")
    seeds = sorted({s.cfg.seed for s in expand(grid, "tiny", seeds=3)})
    assert seeds == [1000, 1001, 1002]
    assert sorted({s.cfg.seed for s in expand(grid, "tiny", seeds=2, seed_start=100)}) == [100, 101]
    assert sorted({s.cfg.seed for s in expand(grid, "tiny", seeds=2, seed_start=0)}) == [0, 1]
    with pytest.raises(UserError, match="--seed-start must be an integer >= 0"):
        expand(grid, "tiny", seeds=2, seed_start=-1)


def test_baselines_follow_the_seed_range():
    todo = baseline_plan("tiny", 2, seed_start=100)
    assert [(b, s) for b, s, _, _ in todo] == [("random_init", 100), ("random_init", 101), ("raw_pixels", 100)]
    assert len({rid for *_, rid in todo}) == 3


# -- the per-step loss and the "fail" criterion ---------------------------------------------------------------------

def _converging(n=156, seed=0):
    rng = np.random.default_rng(seed)
    return list(6.0 - 2.0 * np.arange(n) / n + rng.normal(0, 0.05, n))


def _oscillating(n=156, seed=0):
    rng = np.random.default_rng(seed)
    return list(7.0 + 0.8 * np.sin(np.arange(n) * 2.5) + rng.normal(0, 0.3, n))


def test_loss_stats_tell_an_oscillating_loss_from_a_converging_one():
    chance = np.log(4097)
    conv, osc = loss_stats(_converging(), chance), loss_stats(_oscillating(), chance)
    assert 0.04 < conv["loss_osc"] < 0.07                 # the noise's sd (0.05): a steady trend barely adds
    assert osc["loss_osc"] > 0.5                         # a step-to-step swing of +-0.8 nats
    assert conv["loss_drop"] > 1.5 and abs(osc["loss_drop"]) < 0.5
    assert conv["loss_chance_share"] == 0.0
    assert loss_stats([], chance) == {"loss_osc": None, "loss_chance_share": None, "loss_drop": None}


def _epochs(per_epoch_steps):
    return [{"loss": float(np.mean(x))} for x in per_epoch_steps]


def test_fail_loss_rise_flags_a_loss_that_goes_back_up_only():
    """The design seeds' pattern (ablations/README.md): a learner's epoch-mean loss falls to its lowest in the
    last epoch; m = 0's goes back up (seed 100: 6.18 -> 6.36, seed 101: 6.56 -> 7.49)."""
    cfg = dataclasses.replace(load_config("tiny"), fail_loss_rise=0.1)
    converging = _epochs([_converging(seed=e) for e in range(5)])
    for r, e in zip(converging, range(5)):
        r["loss"] -= 0.5 * e                                       # 6.0, 5.5, ... : the last is the lowest
    assert loss_rise(converging) < 0 and not_converged(cfg, converging) == ""
    m0 = [{"loss": v} for v in (6.69, 6.18, 6.43, 6.53, 6.36)]     # design seed 100's m = 0 run
    assert loss_rise(m0) == pytest.approx(0.18)
    reason = not_converged(cfg, m0)
    assert "fail_loss_rise" in reason and reason.startswith("did not converge")
    wobbling = [{"loss": v} for v in (7.0, 6.9, 7.1, 6.95, 7.05)]      # oscillates around chance level, no fall
    assert loss_rise(wobbling) == pytest.approx(0.15) and "fail_loss_rise" in not_converged(cfg, wobbling)
    assert not_converged(dataclasses.replace(cfg, fail_loss_rise=0.0), m0) == ""              # off
    assert loss_rise(m0[:1]) is None


def test_block_means_keep_short_epochs_and_compress_long_ones():
    assert block_means([1.0, 2.0, 3.0]) == [1.0, 2.0, 3.0]
    long = list(np.arange(5000, dtype=float))
    b = block_means(long, 500)
    assert len(b) == 500 and b[0] == pytest.approx(4.5) and b[-1] == pytest.approx(4994.5)


def test_a_run_records_its_per_step_losses(tmp_path):
    cfg = load_config("tiny", synthetic_overrides(epochs=2, max_steps=5, threads=1))
    s = run(cfg, tmp_path / "r", progress=False)
    recs = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [len(r["step_loss"]) for r in recs] == [5, 5]
    last = recs[-1]
    assert last["loss"] == pytest.approx(np.mean(last["step_loss"]), abs=1e-4)
    assert s["loss_osc"] == pytest.approx(loss_stats(last["step_loss"], s["chance_loss"])["loss_osc"], abs=1e-3)
    assert s["n_eval"] == 200                                     # the synthetic test set

"""The memory bank's initialisation (bank_init): ``random`` is today's bank (same RNG draws, same run ids);
``features`` fills every entry with the initial encoder's feature of the un-augmented image before the first
step (scripts/bank_diagnostic.py and ablations/README.md say why)."""
import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_DESIGN_V1, synthetic_overrides
from pretrain.data.augment import BatchedAugment, normalize_batch
from pretrain.models.memory_bank import MemoryBank
from pretrain.models.mechanism import accuracy
from pretrain.models.build import build_pretrainer
from pretrain.config import config_hash, load_config
from pretrain.data.datasets import pretrain_split, stats
from pretrain.models.encoder import encoder_for
from pretrain.base.errors import UserError


def small_cfg(**kw):
    kw = {"bank_init": "random", **kw}                           # the tiny preset's own is features
    return load_config("tiny", synthetic_overrides(mechanism="memory_bank", precision="fp32", channels_last=False,
                                                   **kw))


def built(cfg, seed=0):
    torch.manual_seed(seed)
    split = pretrain_split(cfg)
    return build_pretrainer(cfg, len(split.images)), split


def test_random_keeps_todays_draws_and_run_ids():
    # the reference tiny set's memory bank run (fig3, K 4096, seed 0): reports/reference/tiny-v1/results.csv
    v1 = {**TINY_DESIGN_V1, "mechanism": "memory_bank", "moco_k": 4096}     # that set's design: bank_init random
    assert config_hash(load_config("tiny", v1), 1) == "e8ee33c844e5"
    assert config_hash(load_config("tiny", {**v1, "bank_init": "features"}), 1) != "e8ee33c844e5"
    moco = {**TINY_DESIGN_V1, "moco_k": 4096}                      # MoCo's run id ignores bank_init
    assert config_hash(load_config("tiny", {**moco, "bank_init": "features"}), 1) == \
        config_hash(load_config("tiny", moco), 1)
    cfg = small_cfg()
    model, split = built(cfg)
    after = torch.rand(4)
    assert "bank_filled" not in model.state_dict()               # today's checkpoint layout
    torch.manual_seed(0)                                         # today's order: encoder, then the bank
    encoder_for(cfg)
    expected = F.normalize(torch.randn(len(split.images), cfg.moco_dim), dim=1)
    assert torch.equal(model.bank, expected)
    assert torch.equal(torch.rand(4), after)
    feat, _ = built(small_cfg(bank_init="features"))             # features draws the same numbers
    assert torch.equal(torch.rand(4), after)
    assert not bool(feat.bank_filled)


def test_features_first_step_positive_is_the_unaugmented_feature():
    cfg = small_cfg(bank_init="features")
    model, split = built(cfg)
    model.train()
    enc0 = copy.deepcopy(model.encoder_q)                        # the initial encoder, for the expected values
    bn0 = [b.clone() for b in model.encoder_q.buffers()]
    mean, std = stats(cfg)
    b = cfg.batch_size
    with torch.no_grad():                                        # f(x): un-augmented, training-mode BN per batch
        want = torch.cat([F.normalize(enc0(normalize_batch(split.images[s:s + b], mean, std, cfg.image_size)),
                                      dim=1) for s in range(0, len(split.images), b)])
    g = torch.Generator().manual_seed(1)
    idx = torch.randperm(len(split.images), generator=g)[:b]
    aug = BatchedAugment(cfg.image_size, cfg.aug_plus, mean, std, crop_scale=(cfg.crop_scale_min, 1.0))
    im_q = aug(split.images[idx], g)
    model.fill_bank()                                            # what the first forward does first
    assert bool(model.bank_filled)
    assert all(torch.equal(x, y) for x, y in zip(model.encoder_q.buffers(), bn0))   # BN running stats untouched
    torch.testing.assert_close(model.bank, want, atol=1e-5, rtol=1e-5)
    filled, model.bank_filled[...] = model.bank.clone(), False
    with torch.no_grad():                                        # frozen encoder: no optimizer step
        q = F.normalize(enc0(im_q), dim=1)
        logits, labels = model(im_q, None, idx)                  # fills again (same encoder), then the step
    assert bool(model.bank_filled)
    torch.testing.assert_close(logits[:, 0] * model.T, (q * want[idx]).sum(1), atol=1e-5, rtol=1e-5)
    # the pretext task is far above chance from the first step (un-augmented queries in another batch than
    # the fill's: BN statistics differ); with the random bank the positive is a random vector: chance
    model.bank.copy_(filled)
    im_u = normalize_batch(split.images[idx], mean, std, cfg.image_size)
    with torch.no_grad():
        logits, labels = model(im_u, None, idx)
    acc1 = accuracy(logits, labels, (1,))[0]
    chance = 100.0 / logits.shape[1]
    assert acc1 >= 50 * chance, (acc1, chance)
    rnd, _ = built(small_cfg())
    with torch.no_grad():
        lr, lab = rnd(im_u, None, idx)
    assert accuracy(lr, lab, (1,))[0] <= 5 * chance
    # the bank is filled once: a resumed model (bank_filled in its state) is not filled again
    again, _ = built(cfg, seed=5)
    again.load_state_dict(model.state_dict())
    bank = again.bank.clone()
    with torch.no_grad():
        again(im_q, None, idx)
    changed = (again.bank != bank).any(1)
    assert changed.sum() <= b and not changed[~torch.isin(torch.arange(len(bank)), idx)].any()


def test_bank_init_values():
    with pytest.raises(UserError, match="bank_init"):
        build_pretrainer(small_cfg(bank_init="zeros"), 256)
    with pytest.raises(ValueError, match="training images"):
        MemoryBank(torch.nn.Linear(4, 4), dim=4, K=8, num_images=16, bank_init="features")

"""Augmentations: per-sample randomness in the batched path, the crop distribution, identities, and the
per-image path refusing batch tensors."""
import math

import pytest
import torch

from pretrain.augment import (BatchedAugment, TwoCrops, color_jitter, gaussian_blur, pil_transform, resized_crop,
                              sample_crops)


def test_crop_boxes_follow_random_resized_crop():
    g = torch.Generator().manual_seed(0)
    b = sample_crops(4000, 28, 28, g, "cpu")
    top, left, h, w = b.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 28).all() and (left + w <= 28).all()
    area = h * w / 28 ** 2
    # rounding to whole pixels widens the [0.2, 1] x [3/4, 4/3] window slightly
    assert area.min() > 0.15 and area.max() <= 1.0
    ratio = w / h
    assert ratio.min() > 0.6 and ratio.max() < 1.7
    assert 0.5 < area.mean() < 0.7          # E[U(0.2, 1)] = 0.6
    # per-sample parameters: boxes differ from sample to sample
    assert len({tuple(x) for x in b[:100].tolist()}) > 90


def test_batched_views_are_random_per_sample():
    x = torch.full((64, 1, 28, 28), 128, dtype=torch.uint8)
    x[:, :, :, :14] = 255                              # left half white: flips and crops show up
    aug = BatchedAugment(28, aug_plus=False, mean=[0.5], std=[0.5])
    g = torch.Generator().manual_seed(0)
    p = aug.params(64, 28, 28, g, "cpu")
    assert 10 < int(p["flip"].sum()) < 54 and 2 < int(p["gray"].sum()) < 30
    assert p["b"].std() > 0.1 and len(set(map(tuple, p["order"].tolist()))) > 10
    v1, v2 = aug(x, g), aug(x, g)
    assert v1.shape == (64, 1, 28, 28) and v1.dtype == torch.float32
    # identical inputs, different outputs per sample and per view
    assert len({round(float(v.sum()), 3) for v in v1}) > 50
    assert not torch.allclose(v1, v2)


def test_aug_plus_draws_blur_and_applies_jitter_with_p08():
    aug = BatchedAugment(32, aug_plus=True, mean=[0.5] * 3, std=[0.5] * 3)
    p = aug.params(4000, 32, 32, torch.Generator().manual_seed(1), "cpu")
    jittered = (p["b"] != 1).float().mean().item()
    blurred = (p["sigma"] > 0).float().mean().item()
    assert abs(jittered - 0.8) < 0.03 and abs(blurred - 0.5) < 0.03
    s = p["sigma"][p["sigma"] > 0]
    assert s.min() >= 0.1 and s.max() <= 2.0
    assert p["h"].abs().max() <= 0.1 + 1e-6                # aug+ hue 0.1 (v1: 0.4)
    rgb = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    assert aug(rgb, torch.Generator().manual_seed(2)).shape == (8, 3, 32, 32)


def test_identities():
    x = torch.rand(6, 3, 16, 16)
    one, zero = torch.ones(6), torch.zeros(6)
    order = torch.arange(4).repeat(6, 1)
    assert torch.allclose(color_jitter(x.clone(), one, one, one, zero, order), x, atol=1e-6)
    assert torch.allclose(gaussian_blur(x, zero), x)
    blurred = gaussian_blur(x, torch.full((6,), 1.5))
    assert blurred.std() < x.std() and torch.allclose(blurred.mean(), x.mean(), atol=0.02)
    full = torch.tensor([[0.0, 0.0, 16.0, 16.0]]).repeat(6, 1)
    assert torch.allclose(resized_crop(x, full, 16, torch.zeros(6, dtype=torch.bool)), x, atol=1e-5)
    flipped = resized_crop(x, full, 16, torch.ones(6, dtype=torch.bool))
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)


def test_hue_shift_matches_torchvision():
    import torchvision.transforms.functional as TF
    x = torch.rand(3, 3, 8, 8)
    h = torch.tensor([0.1, -0.3, 0.25])
    order = torch.tensor([[3, 0, 1, 2]] * 3)
    ones = torch.ones(3)
    ours = color_jitter(x.clone(), ones, ones, ones, h, order)
    ref = torch.stack([TF.adjust_hue(x[i], float(h[i])) for i in range(3)])
    assert torch.allclose(ours, ref, atol=1e-4)


def test_contrast_and_saturation_match_torchvision():
    import torchvision.transforms.functional as TF
    x = torch.rand(2, 3, 8, 8)
    f = torch.tensor([0.7, 1.3])
    ones, zero = torch.ones(2), torch.zeros(2)
    ours = color_jitter(x.clone(), ones, f, ones, zero, torch.tensor([[1, 0, 2, 3]] * 2))
    ref = torch.stack([TF.adjust_contrast(x[i], float(f[i])) for i in range(2)])
    assert torch.allclose(ours, ref, atol=1e-5)
    ours = color_jitter(x.clone(), ones, ones, f, zero, torch.tensor([[2, 0, 1, 3]] * 2))
    ref = torch.stack([TF.adjust_saturation(x[i], float(f[i])) for i in range(2)])
    assert torch.allclose(ours, ref, atol=1e-5)


def test_per_image_path_gives_two_independent_views_and_refuses_batches():
    tc = TwoCrops(pil_transform(28, aug_plus=True, mean=[0.5], std=[0.5]))
    img = (torch.rand(1, 28, 28) * 255).to(torch.uint8)
    q, k = tc(img)
    assert q.shape == k.shape == (1, 28, 28) and not torch.equal(q, k)
    with pytest.raises(ValueError, match="batch tensor"):
        tc(torch.zeros(4, 1, 28, 28, dtype=torch.uint8))

"""Augmentations: per-sample randomness in the batched path, the crop distribution, identities, the
per-image path refusing batch tensors; the batched ops against torchvision's per-image ops, batching that
mixes no samples, no host sync, and the crop-scale / blur options."""
import itertools

import pytest
import torch

from pretrain.data.augment import BatchedAugment, TwoCrops, color_jitter, gaussian_blur, pil_transform, resized_crop, sample_crops


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


# -- batched == per sample; no host sync; crop scale and blur options -----------------------------------------

def _tv_jitter(img, b, c, s, h, order):
    """torchvision's per-image ColorJitter ops in the given order (the reference of the batched version)."""
    import torchvision.transforms.functional as TF
    for op in order.tolist():
        if op == 0:
            img = TF.adjust_brightness(img, float(b))
        elif op == 1:
            img = TF.adjust_contrast(img, float(c))
        elif op == 2:
            img = TF.adjust_saturation(img, float(s))
        else:
            img = TF.adjust_hue(img, float(h))
    return img


@pytest.mark.parametrize("channels", [3, 1])
def test_color_jitter_with_per_sample_orders_matches_torchvision(channels):
    g = torch.Generator().manual_seed(3)
    n = 48                                            # every one of the 24 orders, twice
    x = torch.rand(n, channels, 8, 8, generator=g)
    b, c, s = (torch.rand(n, generator=g) * 0.8 + 0.6 for _ in range(3))
    h = torch.rand(n, generator=g) * 0.8 - 0.4
    h[::5] = 0                                        # RandomApply's "not applied" samples have hue 0
    order = torch.tensor(list(itertools.permutations(range(4))) * 2)
    ours = color_jitter(x.clone(), b, c, s, h, order)
    ref = torch.stack([_tv_jitter(x[i], b[i], c[i], s[i], h[i], order[i]) for i in range(n)])
    assert torch.allclose(ours, ref, atol=1e-5), (ours - ref).abs().max()


def test_blur_matches_torchvision_per_sample_and_sigma_zero_is_exact():
    import torchvision.transforms.functional as TF
    from pretrain.data.augment import BLUR_RADIUS
    assert BLUR_RADIUS == 6                           # ceil(3 * 2.0): fixed, not drawn
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    sigma = torch.tensor([0.1, 0.7, 1.3, 2.0, 0.0])
    ours = gaussian_blur(x, sigma)
    for i in range(4):
        ref = TF.gaussian_blur(x[i], kernel_size=2 * BLUR_RADIUS + 1, sigma=float(sigma[i]))
        assert torch.allclose(ours[i], ref, atol=1e-5), i
    assert torch.equal(ours[4], x[4])                 # not blurred: exactly the input


@pytest.mark.parametrize("aug_plus,blur,channels", [(False, True, 1), (False, True, 3), (True, True, 3),
                                                    (True, False, 3), (True, True, 1)])
def test_batched_view_of_each_sample_equals_its_view_alone(aug_plus, blur, channels):
    """Batching mixes nothing: sample i of the batch equals the pipeline run on image i with its parameters."""
    aug = BatchedAugment(24, aug_plus, [0.4] * channels, [0.2] * channels, crop_scale=(0.08, 1.0), blur=blur)
    x = torch.randint(0, 256, (12, channels, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    p = aug.params(12, 32, 32, torch.Generator().manual_seed(6), "cpu")
    assert ("sigma" in p) == (aug_plus and blur)
    batched = aug.apply(x, p)
    for i in range(12):
        alone = aug.apply(x[i:i + 1], {k: v[i:i + 1] for k, v in p.items()})
        assert torch.allclose(batched[i:i + 1], alone, atol=1e-5), i


def test_no_blur_is_the_blur_pipeline_with_sigma_zero():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    with_blur = BatchedAugment(32, True, [0.5] * 3, [0.5] * 3)
    no_blur = BatchedAugment(32, True, [0.5] * 3, [0.5] * 3, blur=False)
    p = no_blur.params(8, 32, 32, torch.Generator().manual_seed(8), "cpu")
    assert "sigma" not in p
    assert torch.equal(no_blur.apply(x, p), with_blur.apply(x, {**p, "sigma": torch.zeros(8)}))


def test_crop_scale_option():
    aug = BatchedAugment(32, True, [0.5] * 3, [0.5] * 3, crop_scale=(0.08, 1.0), blur=False)
    top, left, h, w = aug.params(4000, 32, 32, torch.Generator().manual_seed(9), "cpu")["boxes"].unbind(1)
    area = h * w / 32 ** 2
    default = BatchedAugment(32, True, [0.5] * 3, [0.5] * 3)
    top, left, h, w = default.params(4000, 32, 32, torch.Generator().manual_seed(9), "cpu")["boxes"].unbind(1)
    area_default = h * w / 32 ** 2
    # E[U(0.08, 1)] = 0.54 vs E[U(0.2, 1)] = 0.6, both a little lower after rejecting boxes that do not fit
    assert area.min() < 0.1 < 0.15 < area_default.min()
    assert 0.44 < area.mean() < 0.54 and 0.04 < float(area_default.mean() - area.mean()) < 0.08
    assert default.crop_scale == (0.2, 1.0) and default.blur
    # the per-image path: RandomResizedCrop's scale, and no GaussianBlur with blur=False (the CIFAR demo)
    import torchvision.transforms as T
    from pretrain.data.augment import GaussianBlur
    names = lambda tf: [type(t).__name__ for t in tf.transforms]
    demo = pil_transform(32, True, [0.5] * 3, [0.5] * 3, crop_scale=(0.08, 1.0), blur=False)
    assert names(demo) == ["RandomResizedCrop", "RandomApply", "RandomGrayscale", "RandomHorizontalFlip",
                           "ToTensor", "Normalize"]
    assert demo.transforms[0].scale == (0.08, 1.0)
    v2 = pil_transform(224, True, [0.5] * 3, [0.5] * 3)
    assert v2.transforms[0].scale == (0.2, 1.0)
    assert any(isinstance(t, T.RandomApply) and isinstance(t.transforms[0], GaussianBlur) for t in v2.transforms)
    v1 = pil_transform(224, False, [0.5] * 3, [0.5] * 3, crop_scale=(0.5, 1.0))
    assert v1.transforms[0].scale == (0.5, 1.0)


@pytest.mark.parametrize("aug_plus,blur,channels", [(False, True, 1), (False, True, 3), (True, True, 3),
                                                    (True, False, 3), (True, True, 1)])
def test_batched_augment_makes_no_host_sync(aug_plus, blur, channels):
    """The whole call runs on the meta device (shapes only, no data): anything that reads a value back to the
    host (.item(), bool(t), float(t), .tolist()) or has a data-dependent shape (boolean-mask indexing,
    nonzero) raises there, as it would stall a CUDA stream. Parameters come from a CPU generator."""
    x = torch.empty(16, channels, 28, 28, dtype=torch.uint8, device="meta")
    with pytest.raises((RuntimeError, NotImplementedError)):       # the probe does catch a sync
        bool(x.float().mean() > 0)
    with pytest.raises((RuntimeError, NotImplementedError)):
        x[x > 0]
    aug = BatchedAugment(24, aug_plus, [0.5] * channels, [0.5] * channels, blur=blur)
    y = aug(x, torch.Generator().manual_seed(0))
    assert y.shape == (16, channels, 24, 24) and y.device.type == "meta" and y.dtype == torch.float32


def test_mean_and_std_are_copied_to_a_device_once():
    aug = BatchedAugment(28, False, [0.5], [0.5])
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    aug(x, torch.Generator().manual_seed(0))
    first = aug.stats_on("cpu")
    aug(x, torch.Generator().manual_seed(1))
    assert aug.stats_on(torch.device("cpu"))[0] is first[0] and len(aug._stats) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batched_augment_makes_no_cuda_sync():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device="cuda")
    for aug_plus in (False, True):
        aug = BatchedAugment(32, aug_plus, [0.5] * 3, [0.5] * 3)
        g = torch.Generator(device="cuda").manual_seed(0)
        aug(x, g)                                     # first call: the one copy of mean/std to the device
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            aug(x, g)
        finally:
            torch.cuda.set_sync_debug_mode("default")

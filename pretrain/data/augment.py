"""MoCo's augmentations, two crops per image, in two interchangeable implementations.

- Per image (``augment_on=workers``): torchvision's PIL transforms in DataLoader workers, exactly the
  official ``main_moco.py`` pipelines (v1, and v2 "aug+").
- Batched (``augment_on=batched``): the same distributions on a uint8 batch tensor on the training device,
  every random parameter drawn per sample in one go (torchvision's v2 transforms would draw ONE set of
  parameters for a whole batch tensor; :class:`BatchedAugment` never does). Its control flow and shapes
  depend only on the batch shape and the options, never on drawn values: no host-device sync per call
  (tests/pretrain/data/test_augment.py runs it on the meta device, where any read-back raises).

v1 (He et al. 2020, Sec. 4): RandomResizedCrop(scale 0.2-1), RandomGrayscale(0.2), ColorJitter(0.4, 0.4,
0.4, 0.4), horizontal flip. v2 aug+ (Chen et al. 2020): ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8,
RandomGrayscale(0.2), GaussianBlur(sigma in [0.1, 2]) with p 0.5, horizontal flip. Options for other recipes:
``crop_scale`` (the CIFAR-10 demo's RandomResizedCrop(32) uses torchvision's default 0.08-1) and ``blur=False``
(the demo's aug+ has no blur).
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import ImageFilter

CROP_SCALE = (0.2, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
BLUR_SIGMA = (0.1, 2.0)


class GaussianBlur:
    """Gaussian blur with sigma drawn uniformly from ``sigma`` (official MoCo v2 / SimCLR)."""

    def __init__(self, sigma=BLUR_SIGMA):
        self.sigma = sigma

    def __call__(self, x):
        return x.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


def pil_transform(size: int, aug_plus: bool, mean, std, crop_scale=CROP_SCALE, blur: bool = True) -> T.Compose:
    """One random view, per image (the official ``main_moco.py`` pipelines). ``crop_scale``: RandomResizedCrop's
    area range; ``blur=False`` drops aug+'s Gaussian blur (the official CIFAR-10 demo)."""
    crop_scale = tuple(crop_scale)
    if aug_plus:
        ops = [T.RandomResizedCrop(size, scale=crop_scale),
               T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
               T.RandomGrayscale(p=0.2)]
        if blur:
            ops.append(T.RandomApply([GaussianBlur()], p=0.5))
        ops.append(T.RandomHorizontalFlip())
    else:
        ops = [T.RandomResizedCrop(size, scale=crop_scale),
               T.RandomGrayscale(p=0.2),
               T.ColorJitter(0.4, 0.4, 0.4, 0.4),
               T.RandomHorizontalFlip()]
    return T.Compose(ops + [T.ToTensor(), T.Normalize(mean, std)])


class TwoCrops:
    """Two independent views of one image (query and key)."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, img):
        if isinstance(img, torch.Tensor):
            if img.dim() != 3:
                raise ValueError("per-image augmentation got a batch tensor: its random parameters would be "
                                 "shared by the whole batch; use BatchedAugment (augment_on=batched)")
            img = T.functional.to_pil_image(img)
        return [self.transform(img), self.transform(img)]


# -- batched, per-sample parameters ---------------------------------------------------------------------------

def _uniform(n, lo, hi, g, device):
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def sample_crops(n: int, h: int, w: int, g: torch.Generator, device, scale=CROP_SCALE, ratio=CROP_RATIO,
                 attempts: int = 10) -> torch.Tensor:
    """RandomResizedCrop's box distribution (torchvision ``get_params``) for ``n`` samples at once.

    Returns (n, 4) float boxes ``top, left, height, width`` in pixels.
    """
    area = h * w
    target = area * _uniform(n * attempts, scale[0], scale[1], g, device).view(n, attempts)
    logr = _uniform(n * attempts, math.log(ratio[0]), math.log(ratio[1]), g, device).view(n, attempts)
    ar = torch.exp(logr)
    cw = torch.sqrt(target * ar).round()
    ch = torch.sqrt(target / ar).round()
    ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1, device=device))
    # fallback (no attempt fits): central crop with the ratio clamped, as torchvision
    in_ratio = w / h
    if in_ratio < ratio[0]:
        fw, fh = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        fh, fw = h, round(h * ratio[1])
    else:
        fw, fh = w, h
    rows = torch.arange(n, device=device)
    sel = first.clamp(min=0)
    cw = torch.where(first >= 0, cw[rows, sel], torch.full((n,), float(fw), device=device))
    ch = torch.where(first >= 0, ch[rows, sel], torch.full((n,), float(fh), device=device))
    u = torch.rand(n, 2, generator=g, device=device)
    top = torch.where(first >= 0, torch.floor(u[:, 0] * (h - ch + 1)), torch.full((n,), float((h - fh) // 2),
                                                                                  device=device))
    left = torch.where(first >= 0, torch.floor(u[:, 1] * (w - cw + 1)), torch.full((n,), float((w - fw) // 2),
                                                                                    device=device))
    return torch.stack([top, left, ch, cw], 1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: int, flip: torch.Tensor) -> torch.Tensor:
    """Crop each sample's box, resize to ``size`` (bilinear) and flip where ``flip``; one grid_sample."""
    n, _, h, w = x.shape
    top, left, ch, cw = boxes.unbind(1)
    sx = cw / w
    sy = ch / h
    cx = (left + cw / 2) / w * 2 - 1
    cy = (top + ch / 2) / h * 2 - 1
    sx = torch.where(flip, -sx, sx)
    theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = sx, cx
    theta[:, 1, 1], theta[:, 1, 2] = sy, cy
    grid = F.affine_grid(theta, (n, x.shape[1], size, size), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    return (0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)


def _rgb2hsv(img):
    r, g, b = img.unbind(1)
    maxc = img.max(1).values
    minc = img.min(1).values
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    crd = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), 1)


def _hsv2rgb(img):
    """torchvision's ``_hsv2rgb`` with the six-way selection as a gather (the same values, bit for bit)."""
    h, s, v = img.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = (i.to(torch.int64) % 6).unsqueeze(1)
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    r = torch.stack((v, q, p, p, t, v), 1).gather(1, i)
    g = torch.stack((t, v, v, q, p, p), 1).gather(1, i)
    b = torch.stack((p, p, t, v, v, q), 1).gather(1, i)
    return torch.cat((r, g, b), 1)


def _bc(v):
    return v.view(-1, 1, 1, 1)


def _blend_step(x, kind, b, c, s):
    """One position of ColorJitter for every sample at once: ``kind`` (n,) is the op each sample applies here
    (0 brightness, 1 contrast, 2 saturation, anything else: none). Every op is the same per-sample affine map
    ``clamp(a * x + wm * mean(gray(x)) + wg * gray(x), 0, 1)``: brightness (b, 0, 0), contrast (c, 1 - c, 0),
    saturation (s, 0, 1 - s), none (1, 0, 0). The zero terms add exact zeros and ``1 * x`` clamped to [0, 1]
    is ``x``, so each sample gets exactly torchvision's value of its own op (no gather/scatter, no host sync)."""
    one, zero = torch.ones_like(b), torch.zeros_like(b)
    is_b, is_c = kind == 0, kind == 1
    is_s = (kind == 2) if x.shape[1] == 3 else torch.zeros_like(is_b)    # saturation: identity on gray images
    a = torch.where(is_b, b, torch.where(is_c, c, torch.where(is_s, s, one)))
    wm = torch.where(is_c, 1 - c, zero)
    gray = _gray(x)
    y = _bc(a) * x + _bc(wm) * gray.mean((1, 2, 3), keepdim=True)
    if x.shape[1] == 3:
        y = y + _bc(torch.where(is_s, 1 - s, zero)) * gray
    return y.clamp(0, 1)


def _hue_shift(x, h):
    """torchvision ``adjust_hue`` per sample; samples with h == 0 are returned unchanged."""
    hsv = _rgb2hsv(x)
    hsv = torch.stack((torch.fmod(hsv[:, 0] + h.view(-1, 1, 1) + 1.0, 1.0), hsv[:, 1], hsv[:, 2]), 1)
    return torch.where(_bc(h != 0), _hsv2rgb(hsv), x)


def color_jitter(x, b, c, s, h, order):
    """torchvision ColorJitter on a batch with per-sample factors and a per-sample random order of the four
    operations (``order``: n x 4 permutation of 0 brightness, 1 contrast, 2 saturation, 3 hue).

    Data-independent control flow (no host sync): brightness, contrast and saturation are one per-sample
    affine step per position (:func:`_blend_step`). On RGB images the hue shift runs once for the whole
    batch: positions before each sample's hue position, the hue shift, then the positions after it (gray
    images: saturation and hue are identities, as in torchvision)."""
    if x.shape[1] != 3:
        for pos in range(4):
            x = _blend_step(x, order[:, pos], b, c, s)
        return x
    hue_pos = (order == 3).int().argmax(1)
    none = torch.full_like(order[:, 0], -1)
    for pos in range(3):                                   # before the hue shift (hue at 0: nothing before)
        x = _blend_step(x, torch.where(hue_pos > pos, order[:, pos], none), b, c, s)
    x = _hue_shift(x, h)
    for pos in range(1, 4):                                # after the hue shift (hue at 3: nothing after)
        x = _blend_step(x, torch.where(hue_pos < pos, order[:, pos], none), b, c, s)
    return x


BLUR_RADIUS = math.ceil(3 * BLUR_SIGMA[1])                 # 6 pixels: the kernel covers 3 sigma of the widest blur


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, max_sigma: float = BLUR_SIGMA[1]) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma (sigma 0 = no blur, exactly), reflect padding.

    The kernel radius is fixed, ceil(3 * max_sigma) (6 px for sigma <= 2), clamped to what reflect padding
    allows on the image, so the shapes never depend on the drawn sigmas (no host sync). Earlier versions used
    ceil(3 * the batch's largest sigma): the same radius for nearly every batch of the usual sizes, otherwise
    a narrower truncation; a wider one is closer to the exact Gaussian (PIL's blur is not truncated at 3 sigma
    either)."""
    n, c, h, w = x.shape
    radius = min(int(math.ceil(3 * max_sigma)), (min(h, w) - 1) // 2)
    if radius <= 0:
        return x
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    on = (sigma > 0).view(-1, 1)
    sig = sigma.to(x.dtype).clamp(min=1e-6).view(-1, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / sig) ** 2)
    k = torch.where(on, k, (t == 0).to(x.dtype).view(1, -1))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)             # (n*c, ks)
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


class BatchedAugment:
    """One random view of every image of a uint8 batch (N, C, H, W), all parameters drawn per sample.

    ``crop_scale``: RandomResizedCrop's area range (official 0.2-1; the CIFAR-10 demo's torchvision default
    0.08-1). ``blur=False`` drops aug+'s Gaussian blur (the CIFAR-10 demo). The call never synchronises with
    the host: every shape and branch depends only on the batch shape and the config, not on drawn values."""

    def __init__(self, size: int, aug_plus: bool, mean, std, crop_scale=CROP_SCALE, blur: bool = True):
        self.size, self.aug_plus = size, aug_plus
        self.crop_scale, self.blur = tuple(float(v) for v in crop_scale), bool(blur)
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self._stats: dict = {}                                  # device -> (mean, std) there (copied once)

    def params(self, n: int, h: int, w: int, g: torch.Generator, device) -> dict:
        p = {"boxes": sample_crops(n, h, w, g, device, scale=self.crop_scale),
             "flip": torch.rand(n, generator=g, device=device) < 0.5,
             "gray": torch.rand(n, generator=g, device=device) < 0.2,
             "order": torch.argsort(torch.rand(n, 4, generator=g, device=device), 1)}
        hue = 0.1 if self.aug_plus else 0.4
        p["b"] = _uniform(n, 0.6, 1.4, g, device)
        p["c"] = _uniform(n, 0.6, 1.4, g, device)
        p["s"] = _uniform(n, 0.6, 1.4, g, device)
        p["h"] = _uniform(n, -hue, hue, g, device)
        if self.aug_plus:
            apply = torch.rand(n, generator=g, device=device) < 0.8       # RandomApply(ColorJitter, p=0.8)
            p["b"] = torch.where(apply, p["b"], torch.ones_like(p["b"]))
            p["c"] = torch.where(apply, p["c"], torch.ones_like(p["c"]))
            p["s"] = torch.where(apply, p["s"], torch.ones_like(p["s"]))
            p["h"] = torch.where(apply, p["h"], torch.zeros_like(p["h"]))
            if self.blur:
                blur = torch.rand(n, generator=g, device=device) < 0.5
                p["sigma"] = torch.where(blur, _uniform(n, *BLUR_SIGMA, g, device), torch.zeros(n, device=device))
        return p

    def stats_on(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        device = torch.device(device)
        if device not in self._stats:
            self._stats[device] = (self.mean.to(device), self.std.to(device))
        return self._stats[device]

    def apply(self, x: torch.Tensor, p: dict) -> torch.Tensor:
        """The view of uint8 ``x`` for given parameters ``p`` (:meth:`params`); sample i depends only on x[i]
        and the i-th entry of every parameter."""
        x = resized_crop(x.float() / 255.0, p["boxes"], self.size, p["flip"])
        x = x.clamp(0, 1)
        if self.aug_plus:                      # v2 order: jitter, grayscale, blur
            x = color_jitter(x, p["b"], p["c"], p["s"], p["h"], p["order"])
            x = torch.where(_bc(p["gray"]), _gray(x).expand_as(x), x)
            if self.blur:
                x = gaussian_blur(x, p["sigma"])
        else:                                  # v1 order: grayscale, jitter
            x = torch.where(_bc(p["gray"]), _gray(x).expand_as(x), x)
            x = color_jitter(x, p["b"], p["c"], p["s"], p["h"], p["order"])
        mean, std = self.stats_on(x.device)
        return (x - mean) / std

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        return self.apply(x, self.params(n, h, w, g, x.device))


def normalize_batch(x: torch.Tensor, mean, std, size: int | None = None) -> torch.Tensor:
    """Evaluation view of a uint8 batch: scaled to [0, 1], resized to ``size`` if needed, normalised."""
    x = x.float() / 255.0
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s

"""MoCo's augmentations, two crops per image, in two interchangeable implementations.

- Per image (``augment_on=workers``): torchvision's PIL transforms in DataLoader workers, exactly the
  official ``main_moco.py`` pipelines (v1, and v2 "aug+").
- Batched (``augment_on=batched``): the same distributions on a uint8 batch tensor on the training device,
  every random parameter drawn per sample in one go (torchvision's v2 transforms would draw ONE set of
  parameters for a whole batch tensor; :class:`BatchedAugment` never does).

v1 (He et al. 2020, Sec. 4): RandomResizedCrop(scale 0.2-1), RandomGrayscale(0.2), ColorJitter(0.4, 0.4,
0.4, 0.4), horizontal flip. v2 aug+ (Chen et al. 2020): ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8,
RandomGrayscale(0.2), GaussianBlur(sigma in [0.1, 2]) with p 0.5, horizontal flip.
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image, ImageFilter

CROP_SCALE = (0.2, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)
BLUR_SIGMA = (0.1, 2.0)


class GaussianBlur:
    """Gaussian blur with sigma drawn uniformly from ``sigma`` (official MoCo v2 / SimCLR)."""

    def __init__(self, sigma=BLUR_SIGMA):
        self.sigma = sigma

    def __call__(self, x):
        return x.filter(ImageFilter.GaussianBlur(radius=random.uniform(*self.sigma)))


def pil_transform(size: int, aug_plus: bool, mean, std) -> T.Compose:
    """One random view, per image (the official ``main_moco.py`` pipelines)."""
    if aug_plus:
        ops = [T.RandomResizedCrop(size, scale=CROP_SCALE),
               T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
               T.RandomGrayscale(p=0.2),
               T.RandomApply([GaussianBlur()], p=0.5),
               T.RandomHorizontalFlip()]
    else:
        ops = [T.RandomResizedCrop(size, scale=CROP_SCALE),
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
    h, s, v = img.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int32) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    mask = i.unsqueeze(1) == torch.arange(6, device=i.device).view(-1, 1, 1)
    a1 = torch.stack((v, q, p, p, t, v), 1)
    a2 = torch.stack((t, v, v, q, p, p), 1)
    a3 = torch.stack((p, p, t, v, v, q), 1)
    a4 = torch.stack((a1, a2, a3), 1)
    return torch.einsum("...ijk,...xijk->...xjk", mask.to(img.dtype), a4)


def _bc(v):
    return v.view(-1, 1, 1, 1)


def color_jitter(x, b, c, s, h, order):
    """torchvision ColorJitter on a batch with per-sample factors and a per-sample random order of the four
    operations (``order``: n x 4 permutation of 0 brightness, 1 contrast, 2 saturation, 3 hue)."""
    for pos in range(4):
        for op in range(4):
            sel = order[:, pos] == op
            if not bool(sel.any()):
                continue
            xs = x[sel]
            if op == 0:
                xs = (xs * _bc(b[sel])).clamp(0, 1)
            elif op == 1:
                m = _gray(xs).mean((1, 2, 3)).view(-1, 1, 1, 1)
                cs = _bc(c[sel])
                xs = (cs * xs + (1 - cs) * m).clamp(0, 1)
            elif op == 2:
                if xs.shape[1] == 3:
                    ss = _bc(s[sel])
                    xs = (ss * xs + (1 - ss) * _gray(xs)).clamp(0, 1)
            else:
                if xs.shape[1] == 3:
                    hs = h[sel]
                    moved = hs != 0
                    if bool(moved.any()):
                        hsv = _rgb2hsv(xs[moved])
                        hsv[:, 0] = torch.fmod(hsv[:, 0] + hs[moved].view(-1, 1, 1) + 1.0, 1.0)
                        xs = xs.clone()
                        xs[moved] = _hsv2rgb(hsv)
            x = x.clone() if x.requires_grad else x
            x[sel] = xs
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with a per-sample sigma (sigma 0 = no blur), reflect padding."""
    n, c, h, w = x.shape
    radius = int(math.ceil(3 * float(sigma.max()))) if bool((sigma > 0).any()) else 0
    radius = min(radius, (min(h, w) - 1) // 2)
    if radius == 0:
        return x
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    sig = sigma.clamp(min=1e-6).view(-1, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / sig) ** 2)
    k = torch.where((sigma > 0).view(-1, 1), k, (t == 0).to(x.dtype).view(1, -1))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)             # (n*c, ks)
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


class BatchedAugment:
    """One random view of every image of a uint8 batch (N, C, H, W), all parameters drawn per sample."""

    def __init__(self, size: int, aug_plus: bool, mean, std):
        self.size, self.aug_plus = size, aug_plus
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)

    def params(self, n: int, h: int, w: int, g: torch.Generator, device) -> dict:
        p = {"boxes": sample_crops(n, h, w, g, device),
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
            blur = torch.rand(n, generator=g, device=device) < 0.5
            p["sigma"] = torch.where(blur, _uniform(n, *BLUR_SIGMA, g, device), torch.zeros(n, device=device))
        return p

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        p = self.params(n, h, w, g, x.device)
        x = resized_crop(x.float() / 255.0, p["boxes"], self.size, p["flip"])
        x = x.clamp(0, 1)
        if self.aug_plus:                      # v2 order: jitter, grayscale, blur
            x = color_jitter(x, p["b"], p["c"], p["s"], p["h"], p["order"])
            x = torch.where(_bc(p["gray"]), _gray(x).expand_as(x), x)
            x = gaussian_blur(x, p["sigma"])
        else:                                  # v1 order: grayscale, jitter
            x = torch.where(_bc(p["gray"]), _gray(x).expand_as(x), x)
            x = color_jitter(x, p["b"], p["c"], p["s"], p["h"], p["order"])
        return (x - self.mean.to(x.device)) / self.std.to(x.device)


def normalize_batch(x: torch.Tensor, mean, std, size: int | None = None) -> torch.Tensor:
    """Evaluation view of a uint8 batch: scaled to [0, 1], resized to ``size`` if needed, normalised."""
    x = x.float() / 255.0
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s

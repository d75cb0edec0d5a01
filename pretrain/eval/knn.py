"""kNN monitor: weighted kNN on L2-normalised features (k = 200, t = 0.1), as the official MoCo CIFAR-10 demo
(after Wu et al. 2018): :func:`knn_accuracy` of an encoder on the labelled sets of
:func:`pretrain.data.loaders.eval_loaders`, every process scoring its shard of the test images."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pretrain.data import datasets as data
from pretrain.data.augment import normalize_batch
from pretrain.data.loaders import eval_loaders
from pretrain.models.encoder import backbone_forward, feature_dim
from pretrain.runtime import distributed as D
from pretrain.runtime.precision import autocast_dtype


def feature_dtype(device: torch.device) -> torch.dtype:
    """The stored features: fp16 on CUDA (half the memory of a 1.28M x 2048 bank), fp32 on the CPU."""
    return torch.float16 if device.type == "cuda" else torch.float32


@torch.no_grad()
def extract(encoder, images, cfg, device, feature: str = "backbone", batch_size: int = 512) -> torch.Tensor:
    """Normalised features of every image: a uint8 tensor (N, C, H, W) or a DataLoader of (image, label).
    The encoder runs under the run's autocast precision; the features are returned in fp32. ``feature``:
    ``backbone`` (pooled features before ``fc``) or ``head`` (the module's output: the encoder's normalised
    head, or for raw pixels an ``nn.Flatten()`` of the normalised images)."""
    was_training = encoder.training
    encoder.eval()
    mean, std = data.stats(cfg)
    amp = autocast_dtype(getattr(cfg, "precision", "fp32"))
    mf = torch.channels_last if getattr(cfg, "channels_last", False) else torch.contiguous_format
    feats = []
    batches = (images.split(batch_size) if isinstance(images, torch.Tensor) else (x for x, _ in images))
    for x in batches:
        if isinstance(images, torch.Tensor):
            x = normalize_batch(x.to(device), mean, std, cfg.image_size)
        else:
            x = x.to(device, non_blocking=True)
        x = x.contiguous(memory_format=mf)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            f = backbone_forward(encoder, x) if feature == "backbone" else encoder(x)
        feats.append(F.normalize(f.float(), dim=1))
    encoder.train(was_training)
    if not feats:
        dim = (feature_dim(encoder) if feature == "backbone" else
               cfg.in_chans * cfg.image_size ** 2 if isinstance(encoder, torch.nn.Flatten) else cfg.moco_dim)
        return torch.empty(0, dim, device=device)
    return torch.cat(feats)


def _shard(images, n: int):
    """This process's contiguous shard of ``images`` (every image in exactly one shard, no padding)."""
    lo, hi = D.shard_range(n, D.rank(), D.world_size())
    if isinstance(images, torch.Tensor):
        return images[lo:hi], lo, hi
    sub = torch.utils.data.Subset(images.dataset, range(lo, hi))
    return torch.utils.data.DataLoader(sub, batch_size=images.batch_size, num_workers=images.num_workers,
                                       pin_memory=images.pin_memory), lo, hi


@torch.no_grad()
def knn_accuracy(encoder, cfg, device, sets=None, chunk: int = 1024, feature: str | None = None) -> float:
    """Top-1 weighted-kNN accuracy (%) of the test set against the training set's features
    (``feature``: default ``cfg.knn_feature``; see :func:`extract`).

    With several processes every rank extracts its shard of the training features (the bank) and of the test
    features; the test features are all-gathered, each rank ranks the test images against its own shard of the
    bank, and the per-shard top-k (similarities and labels) are all-gathered and merged: no process holds the
    whole bank, and every rank returns the same number. One process gives the same result.
    """
    (tr_x, tr_y), (te_x, te_y) = sets if sets is not None else eval_loaders(cfg)
    feature = feature or cfg.knn_feature
    dtype = feature_dtype(device)
    x, lo, hi = _shard(tr_x, len(tr_y))
    bank = extract(encoder, x, cfg, device, feature).to(dtype).t().contiguous()     # D x n_shard
    bank_labels = tr_y[lo:hi].to(device)
    x, _, _ = _shard(te_x, len(te_y))
    test = D.all_gather_varsize(extract(encoder, x, cfg, device, feature).to(dtype))
    classes = int(max(int(tr_y.max()), int(te_y.max())) + 1)
    k = min(cfg.knn_k, len(tr_y))
    per_shard = min(k, max(D.shard_sizes(len(tr_y), D.world_size())))
    correct = torch.zeros((), dtype=torch.long, device=device)
    for f, y in zip(test.split(chunk), te_y.to(device).split(chunk)):
        sim = torch.full((f.shape[0], per_shard), -float("inf"), device=device)
        lab = torch.zeros((f.shape[0], per_shard), dtype=torch.long, device=device)
        if bank.shape[1]:
            kk = min(per_shard, bank.shape[1])
            s, i = torch.mm(f, bank).float().topk(kk, dim=1)
            sim[:, :kk], lab[:, :kk] = s, bank_labels[i]
        if D.world_size() > 1:
            sim = torch.cat(D.all_gather_list(sim), 1)
            lab = torch.cat(D.all_gather_list(lab), 1)
        sim, j = sim.topk(k, dim=1)
        lab = torch.gather(lab, 1, j)
        weight = (sim / cfg.knn_t).exp()
        scores = torch.zeros(f.shape[0], classes, device=device).scatter_add_(1, lab, weight)
        correct += (scores.argmax(1) == y).sum()
    return 100.0 * correct.item() / len(te_y)

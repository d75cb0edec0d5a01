"""Shuffling BN (paper Sec. 3.3, Fig. A.1) and the BN layouts it is compared with.

The paper's problem: with per-GPU BN, a query and its positive key are normalised with statistics of the
same sub-batch, which leaks a "signature" that lets the model cheat the pretext task. The fix shuffles the
key mini-batch before the key encoder and un-shuffles after, so the statistics of a query and of its
positive key come from two different subsets.

Modes (``--shuffle-bn``):
- ``ddp``: the official scheme across processes (gather, one permutation broadcast from rank 0, each rank
  encodes its slice, gather back and un-shuffle).
- ``split``: one process; BN split along the batch into ``bn_splits`` sub-batches (SplitBatchNorm of the
  official CIFAR demo) and the key batch shuffled in the process.
- ``off``: the same BN layout as ``split``/``ddp`` without the shuffle (the cheating case of Fig. A.1).
- ``sync``: BN statistics over the whole global batch (SyncBatchNorm on GPU; an all-reduce of the
  moments on CPU, :class:`GlobalBatchNorm`), no shuffle.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from pretrain.base.errors import UserError
from pretrain.runtime import distributed as D


class SplitBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are computed over ``num_splits`` sub-batches (the official MoCo
    CIFAR demo's SplitBatchNorm, simulating multi-GPU BN in one process).

    Sample ``n`` falls in sub-batch ``n % num_splits``. Parameters and buffers are those of BatchNorm2d, so
    checkpoints keep torchvision's names. In eval mode it is plain BN with the running statistics.
    """

    def __init__(self, num_features: int, num_splits: int, **kw):
        super().__init__(num_features, **kw)
        self.num_splits = num_splits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = self.num_splits
        if not self.training or s == 1:
            return super().forward(x)
        if n % s:
            raise ValueError(f"SplitBatchNorm: batch of {n} is not divisible by bn_splits={s}")
        rm = self.running_mean.repeat(s)
        rv = self.running_var.repeat(s)
        out = F.batch_norm(x.reshape(-1, c * s, h, w), rm, rv, self.weight.repeat(s), self.bias.repeat(s),
                           True, self.momentum, self.eps).view(n, c, h, w)
        with torch.no_grad():
            self.running_mean.copy_(rm.view(s, c).mean(0))
            self.running_var.copy_(rv.view(s, c).mean(0))
        return out


def split_groups(n: int, num_splits: int) -> torch.Tensor:
    """The BN sub-batch of each position of a batch of ``n`` under :class:`SplitBatchNorm`."""
    return torch.arange(n) % num_splits


class GlobalBatchNorm(nn.BatchNorm2d):
    """BN whose training statistics are over the batch of all processes: the moments (sum, sum of squares,
    count) are all-reduced with gradient. Works under gloo on CPU, where torch's SyncBatchNorm refuses."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not D.is_dist():
            return super().forward(x)
        c = x.shape[1]
        cnt = torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), cnt])
        stats = D.all_reduce_with_grad(stats)
        total = stats[-1]
        mean = stats[:c] / total
        var = stats[c:2 * c] / total - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            unbiased = var * total / (total - 1).clamp(min=1)
            self.running_mean.mul_(1 - self.momentum).add_(mean.detach(), alpha=self.momentum)
            self.running_var.mul_(1 - self.momentum).add_(unbiased.detach(), alpha=self.momentum)
        inv = torch.rsqrt(var + self.eps)
        return ((x - mean[None, :, None, None]) * (inv * self.weight)[None, :, None, None]
                + self.bias[None, :, None, None])


def _replace_bn(module: nn.Module, make) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and type(child) is nn.BatchNorm2d:
            new = make(child.num_features)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            _replace_bn(child, make)
    return module


def resolve_mode(mode: str, world: int) -> str:
    if mode == "auto":
        return "ddp" if world > 1 else "split"
    if mode == "split" and world > 1:
        raise UserError(f"shuffle_bn=split shuffles the key batch inside one process, but with {world} processes "
                        f"BN is per process and a shuffle inside it changes nothing (no shuffle at all): use "
                        f"shuffle_bn=ddp (the paper's Shuffling BN across processes) or auto")
    if mode == "ddp" and world == 1:
        raise UserError("shuffle_bn=ddp needs several processes (launch with torchrun or as SLURM tasks); "
                        "in one process use split")
    return mode


def convert_bn(encoder: nn.Module, mode: str, bn_splits: int, world: int, device: torch.device) -> nn.Module:
    """Give ``encoder`` the BN layout of ``mode``: split sub-batches in one process (``split``, and ``off`` in
    one process), statistics over all processes (``sync``), or per-process BN (``ddp``, and ``off`` under DDP)."""
    if mode in ("split", "off") and world == 1 and bn_splits > 1:
        return _replace_bn(encoder, lambda c: SplitBatchNorm(c, bn_splits))
    if mode == "sync" and world > 1:
        if device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(encoder)
        return _replace_bn(encoder, GlobalBatchNorm)
    return encoder


class KeyShuffle:
    """Shuffle the key mini-batch before the key encoder and un-shuffle the keys after.

    ``encode(encoder, x)`` returns the keys of ``x`` in the original order (the keys of this process's
    samples). Gradient flows through the un-shuffle, so end-to-end keys can be shuffled too.
    """

    def __init__(self, mode: str):
        self.mode = mode

    def encode(self, encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "split":
            x, idx_unshuffle = batch_shuffle_single(x)
            return encoder(x)[idx_unshuffle]
        if self.mode == "ddp":
            x, idx_unshuffle = batch_shuffle_ddp(x)
            return batch_unshuffle_ddp(encoder(x), idx_unshuffle)
        return encoder(x)


@torch.no_grad()
def batch_shuffle_single(x: torch.Tensor):
    idx_shuffle = torch.randperm(x.shape[0], device=x.device)
    return x[idx_shuffle], torch.argsort(idx_shuffle)


@torch.no_grad()
def batch_shuffle_ddp(x: torch.Tensor):
    """Official MoCo ``_batch_shuffle_ddp``: gather, permute with rank 0's permutation, keep this rank's slice."""
    n_this = x.shape[0]
    x_all = D.concat_all_gather(x)
    n_all = x_all.shape[0]
    idx_shuffle = torch.randperm(n_all, device=x.device)
    dist.broadcast(idx_shuffle, src=0)
    idx_unshuffle = torch.argsort(idx_shuffle)
    idx_this = idx_shuffle.view(n_all // n_this, -1)[D.rank()]
    return x_all[idx_this], idx_unshuffle


def batch_unshuffle_ddp(k: torch.Tensor, idx_unshuffle: torch.Tensor) -> torch.Tensor:
    """Official ``_batch_unshuffle_ddp``, differentiable: gather the keys, restore the order, keep this rank's."""
    k_all = D.gather_with_grad(k) if torch.is_grad_enabled() else D.concat_all_gather(k)
    n_this = k.shape[0]
    idx_this = idx_unshuffle.view(k_all.shape[0] // n_this, -1)[D.rank()]
    return k_all[idx_this]

"""MoCo (paper Fig. 2c, Algorithm 1): a momentum key encoder (Eq. 2) and a FIFO queue of K keys."""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from pretrain.runtime import distributed as D

from .mechanism import Mechanism
from .registry import REGISTRY
from .shuffle_bn import KeyShuffle


@REGISTRY.register("moco")
class MoCo(Mechanism):
    """MoCo (He et al. 2020, Algorithm 1), as the official ``moco/builder.py``: a momentum key encoder
    (theta_k <- m theta_k + (1 - m) theta_q) and a queue of the K most recent keys."""

    def __init__(self, encoder_q: nn.Module, dim: int = 128, K: int = 65536, m: float = 0.999, T: float = 0.07,
                 shuffle: str = "off", amp_dtype: torch.dtype | None = None):
        super().__init__(encoder_q, T, amp_dtype)
        self.K, self.m = K, m
        self.key_shuffle = KeyShuffle(shuffle)
        # key encoder: a copy of the query encoder, updated only by momentum (Eq. 2)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @classmethod
    def from_config(cls, cfg, encoder_q, *, num_images=0, shuffle="off", amp_dtype=None) -> "MoCo":
        return cls(encoder_q, dim=cfg.moco_dim, K=cfg.moco_k, m=cfg.moco_m, T=cfg.moco_t, shuffle=shuffle,
                   amp_dtype=amp_dtype)

    @torch.no_grad()
    def _momentum_update_key_encoder(self) -> None:
        """theta_k <- m theta_k + (1 - m) theta_q (Eq. 2), over parameters only (buffers are not averaged),
        as fused multi-tensor ops."""
        pk = list(self.encoder_k.parameters())
        pq = list(self.encoder_q.parameters())
        torch._foreach_mul_(pk, self.m)
        torch._foreach_add_(pk, pq, alpha=1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys: torch.Tensor) -> None:
        """Enqueue the mini-batch's keys (all processes) replacing the oldest; wraps around when K is not a
        multiple of the batch size (the official code asserts it is). The pointer stays on the device: no host
        synchronisation (the official ``int(self.queue_ptr)`` is one per step)."""
        keys = D.concat_all_gather(keys)
        n = keys.shape[0]
        if n > self.K:                       # only the newest K keys fit
            keys, n = keys[-self.K:], self.K
        idx = (self.queue_ptr + torch.arange(n, device=keys.device)) % self.K
        self.queue[:, idx] = keys.T.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + n) % self.K)

    def contrast(self, q, im_k, idx=None):
        with torch.no_grad():
            self._momentum_update_key_encoder()
            k = self.embed(self.step_encoder("encoder_k"), im_k, self.key_shuffle)   # keys: N x C
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)        # N x 1
        l_neg = torch.einsum("nc,ck->nk", q, self.queue.clone().detach())   # N x K
        self._dequeue_and_enqueue(k)
        return l_pos, l_neg

"""The three contrastive mechanisms of the paper's Fig. 2/3, all else equal.

Each is a module whose ``forward(im_q, im_k, idx)`` returns ``(logits, labels)`` for the InfoNCE loss
(Eq. 1): ``logits = [q.k+, q.k-_1 .. q.k-_K] / tau`` with the positive in column 0.

- :class:`MoCo` (Fig. 2c): momentum key encoder (Eq. 2) and a FIFO queue of K keys.
- :class:`EndToEnd` (Fig. 2a): keys from the query encoder itself, with gradient; the negatives are the
  other keys of the mini-batch (all processes), so K = batch size.
- :class:`MemoryBank` (Fig. 2b, Wu et al. 2018): one stored feature per training image; the positive is the
  image's own bank entry, K negatives are drawn uniformly from the bank, and the bank entries of the batch
  are updated with momentum after the step.

Pick one with ``MECHANISMS[name]``; a variant overrides one method (moco-v3 style).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import distributed as D
from .shuffle_bn import KeyShuffle

MECHANISMS: dict[str, type] = {}


def register(name: str):
    def deco(cls):
        MECHANISMS[name] = cls
        cls.mechanism = name
        return cls
    return deco


AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a ``precision`` config value (None = fp32, no autocast)."""
    return AUTOCAST_DTYPES[precision]


def info_nce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """InfoNCE (paper Eq. 1) = cross-entropy of the (K+1)-way softmax with the positive as the label."""
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def accuracy_t(logits: torch.Tensor, labels: torch.Tensor, topk=(1, 5)) -> torch.Tensor:
    """Top-k accuracies in % as one tensor on the logits' device (no host sync)."""
    maxk = min(max(topk), logits.shape[1])
    pred = logits.topk(maxk, 1).indices
    correct = pred.eq(labels[:, None])
    return torch.stack([correct[:, :min(k, maxk)].any(1).float().mean() * 100 for k in topk])


@torch.no_grad()
def accuracy(logits: torch.Tensor, labels: torch.Tensor, topk=(1, 5)) -> list[float]:
    """Top-k accuracy in % (the pretext task: is the positive among the k largest logits)."""
    return accuracy_t(logits, labels, topk).tolist()


@register("moco")
class MoCo(nn.Module):
    """MoCo (He et al. 2020, Algorithm 1), as the official ``moco/builder.py``."""

    uses_key_view = True

    def __init__(self, encoder_q: nn.Module, dim: int = 128, K: int = 65536, m: float = 0.999, T: float = 0.07,
                 shuffle: str = "off", num_images: int = 0, bank_m: float = 0.5,
                 amp_dtype: torch.dtype | None = None):
        super().__init__()
        self.K, self.m, self.T = K, m, T
        self.amp_dtype = amp_dtype           # autocast dtype of the encoders' forward passes (None = fp32)
        self.key_shuffle = KeyShuffle(shuffle)
        self.encoder_q = encoder_q
        self.build_dictionary(dim, K, num_images, bank_m)

    # -- the dictionary ----------------------------------------------------------------------------------
    def build_dictionary(self, dim: int, K: int, num_images: int, bank_m: float) -> None:
        # key encoder: a copy of the query encoder, updated only by momentum (Eq. 2)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

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
        multiple of the batch size (the official code asserts it is)."""
        keys = D.concat_all_gather(keys)
        n = keys.shape[0]
        if n > self.K:                       # only the newest K keys fit
            keys, n = keys[-self.K:], self.K
        ptr = int(self.queue_ptr)
        idx = (ptr + torch.arange(n, device=keys.device)) % self.K
        self.queue[:, idx] = keys.T.to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + n) % self.K

    # -- mixed precision: only the encoders run under autocast -------------------------------------------
    def embed(self, encoder: nn.Module, x: torch.Tensor, shuffle: bool = False) -> torch.Tensor:
        """L2-normalised fp32 features of ``encoder(x)``; the encoder runs under autocast (``amp_dtype``),
        normalisation, logits, loss and the queue/bank stay fp32. ``shuffle``: through the key shuffle."""
        def run(inp):
            with torch.autocast(inp.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                return encoder(inp)
        f = self.key_shuffle.encode(run, x) if shuffle else run(x)
        return F.normalize(f.float(), dim=1)

    # -- one step -------------------------------------------------------------------------------------
    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor, idx: torch.Tensor | None = None):
        q = self.embed(self.encoder_q, im_q)                         # queries: N x C
        with torch.no_grad():
            self._momentum_update_key_encoder()
            k = self.embed(self.encoder_k, im_k, shuffle=True)       # keys: N x C
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)        # N x 1
        l_neg = torch.einsum("nc,ck->nk", q, self.queue.clone().detach())   # N x K
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        self._dequeue_and_enqueue(k)
        return logits, labels


@register("end_to_end")
class EndToEnd(MoCo):
    """End-to-end (Fig. 2a): the key encoder is the query encoder, keys carry gradient, and the dictionary is
    the current mini-batch over all processes: K = batch size, K - 1 negatives per query."""

    def build_dictionary(self, dim, K, num_images, bank_m) -> None:
        pass

    def forward(self, im_q, im_k, idx=None):
        q = self.embed(self.encoder_q, im_q)
        k = self.embed(self.encoder_q, im_k, shuffle=True)
        k_all = D.gather_with_grad(k)                                 # Ntot x C, with gradient
        n = q.shape[0]
        sim = torch.einsum("nc,mc->nm", q, k_all)                    # N x Ntot
        pos = torch.arange(n, device=q.device) + D.rank() * n        # column of each query's own key
        mask = torch.zeros_like(sim, dtype=torch.bool)
        mask[torch.arange(n, device=q.device), pos] = True
        l_pos = sim[mask].view(n, 1)
        l_neg = sim[~mask].view(n, -1)                               # N x (Ntot - 1)
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(n, dtype=torch.long, device=q.device)
        return logits, labels


@register("memory_bank")
class MemoryBank(MoCo):
    """Memory bank (Fig. 2b; Wu et al. 2018, as the paper's baseline): only the query encoder is trained; the
    keys are stored features of every training image. Positive = the image's own entry; K negatives drawn
    uniformly from the bank (one draw per step, shared by the batch); after the logits, the batch's entries
    are updated: v <- normalize(bank_m * v + (1 - bank_m) * q)."""

    uses_key_view = False

    def build_dictionary(self, dim, K, num_images, bank_m) -> None:
        if num_images < 1:
            raise ValueError("memory_bank needs the number of training images")
        self.bank_m = bank_m
        self.register_buffer("bank", F.normalize(torch.randn(num_images, dim), dim=1))

    @torch.no_grad()
    def _update_bank(self, q: torch.Tensor, idx: torch.Tensor) -> None:
        q, idx = D.concat_all_gather(q), D.concat_all_gather(idx)
        v = self.bank[idx] * self.bank_m + q.to(self.bank.dtype) * (1.0 - self.bank_m)
        self.bank[idx] = F.normalize(v, dim=1)

    def sample_negatives(self) -> torch.Tensor:
        return torch.randint(0, self.bank.shape[0], (self.K,), device=self.bank.device)

    def forward(self, im_q, im_k=None, idx=None):
        if idx is None:
            raise ValueError("memory_bank needs the images' dataset indices")
        q = self.embed(self.encoder_q, im_q)
        with torch.no_grad():
            pos = self.bank[idx].clone()
            neg = self.bank[self.sample_negatives()].clone()
        l_pos = torch.einsum("nc,nc->n", q, pos).unsqueeze(-1)
        l_neg = torch.einsum("nc,kc->nk", q, neg)
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        self._update_bank(q.detach(), idx)
        return logits, labels


def build_model(cfg, encoder_q: nn.Module, num_images: int, shuffle: str,
                amp_dtype: torch.dtype | None = None) -> MoCo:
    cls = MECHANISMS[cfg.mechanism]
    return cls(encoder_q, dim=cfg.moco_dim, K=cfg.moco_k, m=cfg.moco_m, T=cfg.moco_t, shuffle=shuffle,
               num_images=num_images, bank_m=cfg.bank_m, amp_dtype=amp_dtype)

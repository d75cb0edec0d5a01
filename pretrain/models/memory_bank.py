"""Memory bank (paper Fig. 2b, Wu et al. 2018): one stored feature per training image; the positive is the
image's own entry, K negatives are drawn uniformly from the bank, and the batch's entries are updated with
momentum ``bank_m`` after the step."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from pretrain.base.errors import UserError
from pretrain.data import datasets as data
from pretrain.data.augment import normalize_batch
from pretrain.runtime import distributed as D

from .mechanism import Mechanism
from .registry import REGISTRY


@REGISTRY.register("memory_bank")
class MemoryBank(Mechanism):
    """Memory bank (Fig. 2b; Wu et al. 2018, as the paper's baseline): only the query encoder is trained; the
    keys are stored features of every training image. Positive = the image's own entry; K negatives drawn
    uniformly from the bank (one draw per step, shared by the batch); after the logits, the batch's entries
    are updated: v <- normalize(bank_m * v + (1 - bank_m) * q).

    ``bank_init``: ``random`` (NPID's, the default: random unit vectors, so until an entry's first update its
    positive is noise) or ``features`` (a documented deviation: before the first step, every entry is the
    initial query encoder's normalised feature of the un-augmented image, computed in training mode, BN
    statistics of the fill batches, running statistics left untouched). Both draw the same random numbers
    (the random bank is drawn and then overwritten), so only the bank's starting values differ. ``features``
    needs the training images (``images``: uint8 N x C x H x W in dataset-index order, with their ``mean``,
    ``std`` and ``image_size``); whether the bank was filled is the buffer ``bank_filled`` (checkpointed, so a
    resumed run does not fill it again)."""

    uses_key_view = False
    BANK_INIT = ("random", "features")

    def __init__(self, encoder_q: nn.Module, dim: int = 128, K: int = 65536, T: float = 0.07,
                 num_images: int = 0, bank_m: float = 0.5, amp_dtype: torch.dtype | None = None,
                 bank_init: str = "random", images: torch.Tensor | None = None, mean=None, std=None,
                 image_size: int | None = None, fill_batch: int = 256):
        super().__init__(encoder_q, T, amp_dtype)
        if num_images < 1:
            raise ValueError("memory_bank needs the number of training images")
        if bank_init not in self.BANK_INIT:
            raise ValueError(f"bank_init must be one of {', '.join(self.BANK_INIT)}, got {bank_init!r}")
        self.K, self.bank_m, self.bank_init = K, bank_m, bank_init
        self.register_buffer("bank", F.normalize(torch.randn(num_images, dim), dim=1))
        if bank_init == "features":
            if images is None or len(images) != num_images:
                raise ValueError("bank_init features needs the training images (one per bank entry)")
            self._fill_images, self._fill_stats = images, (mean, std, image_size)
            self.fill_batch, self._fill_checked = int(fill_batch), False
            self.register_buffer("bank_filled", torch.zeros((), dtype=torch.bool))

    @classmethod
    def from_config(cls, cfg, encoder_q, *, num_images=0, shuffle="off", amp_dtype=None) -> "MemoryBank":
        init = getattr(cfg, "bank_init", "random")
        kw = {}
        if init == "features":
            if cfg.dataset == "imagefolder":
                raise UserError("bank_init features needs a tensor dataset (not imagefolder)")
            mean, std = data.stats(cfg)
            kw = dict(images=data.pretrain_split(cfg).images, mean=mean, std=std, image_size=cfg.image_size,
                      fill_batch=cfg.batch_size)
        elif init not in cls.BANK_INIT:
            raise UserError(f"bank_init must be one of {', '.join(cls.BANK_INIT)}, got {init!r}")
        return cls(encoder_q, dim=cfg.moco_dim, K=cfg.moco_k, T=cfg.moco_t, num_images=num_images,
                   bank_m=cfg.bank_m, amp_dtype=amp_dtype, bank_init=init, **kw)

    @torch.no_grad()
    def fill_bank(self) -> None:
        """bank_init features: every entry <- the current query encoder's normalised feature of its un-augmented
        image (training-mode forward, as the queries; BN running statistics restored afterwards). Batches of
        ``fill_batch`` in index order; the last one is the last ``fill_batch`` images (a full batch, so
        SplitBatchNorm's split sizes hold)."""
        enc, dev = self.encoder_q, self.bank.device
        mean, std, size = self._fill_stats
        saved = [b.detach().clone() for b in enc.buffers()]
        was_training = enc.training
        enc.train()
        mf = (torch.channels_last if any(p.dim() == 4 and not p.is_contiguous() for p in enc.parameters())
              else torch.contiguous_format)         # the encoder's memory format (channels_last weights)
        n, b = self.bank.shape[0], min(self.fill_batch, self.bank.shape[0])
        starts = list(range(0, n - b + 1, b))
        if starts[-1] + b < n:
            starts.append(n - b)
        for s in starts:
            x = normalize_batch(self._fill_images[s:s + b].to(dev), mean, std, size).contiguous(memory_format=mf)
            self.bank[s:s + b] = self.embed(enc, x).to(self.bank.dtype)
        for buf, old in zip(enc.buffers(), saved):
            buf.copy_(old)
        enc.train(was_training)
        self.bank_filled.fill_(True)

    def forward(self, im_q, im_k=None, idx=None):
        if self.bank_init == "features" and not self._fill_checked:
            if not bool(self.bank_filled):   # once, before the first query (after a resume: already filled)
                self.fill_bank()
            self._fill_checked = True        # the buffer is read (a host sync) only at the first step
        return super().forward(im_q, im_k, idx)

    @torch.no_grad()
    def _update_bank(self, q: torch.Tensor, idx: torch.Tensor) -> None:
        q, idx = D.concat_all_gather(q), D.concat_all_gather(idx)
        v = self.bank[idx] * self.bank_m + q.to(self.bank.dtype) * (1.0 - self.bank_m)
        self.bank[idx] = F.normalize(v, dim=1)

    def sample_negatives(self) -> torch.Tensor:
        return torch.randint(0, self.bank.shape[0], (self.K,), device=self.bank.device)

    def contrast(self, q, im_k, idx):
        if idx is None:
            raise ValueError("memory_bank needs the images' dataset indices")
        with torch.no_grad():
            pos = self.bank[idx].clone()
            neg = self.bank[self.sample_negatives()].clone()
        l_pos = torch.einsum("nc,nc->n", q, pos).unsqueeze(-1)
        l_neg = torch.einsum("nc,kc->nk", q, neg)
        self._update_bank(q.detach(), idx)
        return l_pos, l_neg

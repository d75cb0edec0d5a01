"""The three contrastive mechanisms of the paper's Fig. 2/3, all else equal, and :func:`build_pretrainer`.

Each is a :class:`Mechanism` whose ``forward(im_q, im_k, idx)`` returns ``(logits, labels)`` for the InfoNCE
loss (Eq. 1): ``logits = [q.k+, q.k-_1 .. q.k-_K] / tau`` with the positive in column 0. The step that all
share (encode the queries, contrast them with a positive and negatives, scale by 1/tau) is the base class's
``forward``; a variant overrides one hook, :meth:`Mechanism.contrast` (moco-v3 style), and its constructor
takes only what it uses:

- :class:`MoCo` (Fig. 2c): momentum key encoder (Eq. 2, m) and a FIFO queue of K keys.
- :class:`EndToEnd` (Fig. 2a): keys from the query encoder itself, with gradient; the negatives are the
  other keys of the mini-batch (all processes), so K = batch size: it has neither K nor m.
- :class:`MemoryBank` (Fig. 2b, Wu et al. 2018): one stored feature per training image; the positive is the
  image's own bank entry, K negatives are drawn uniformly from the bank, and the bank entries of the batch
  are updated with momentum (bank_m) after the step.

The names live in :data:`pretrain.mechanisms.MECHANISMS` (the one list); each class registers under its name.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data
from . import distributed as D
from .augment import normalize_batch
from .encoder import encoder_for
from .errors import UserError
from .mechanisms import MECHANISMS
from .shuffle_bn import KeyShuffle, convert_bn, resolve_mode

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


class Mechanism(nn.Module):
    """What the three mechanisms share: the query encoder, the temperature tau (``T``), mixed precision of the
    encoders, and the step of Algorithm 1 around the one hook a variant overrides, :meth:`contrast`."""

    name: str = ""                      # set by @MECHANISMS.register
    uses_key_view = True                # whether forward needs the second augmented view im_k

    def __init__(self, encoder_q: nn.Module, T: float = 0.07, amp_dtype: torch.dtype | None = None):
        super().__init__()
        self.T = T
        self.amp_dtype = amp_dtype           # autocast dtype of the encoders' forward passes (None = fp32)
        self.encoder_q = encoder_q

    @classmethod
    def from_config(cls, cfg, encoder_q: nn.Module, *, num_images: int = 0, shuffle: str = "off",
                    amp_dtype: torch.dtype | None = None) -> "Mechanism":
        """This mechanism as ``cfg`` describes it: each variant reads only the keys it uses."""
        raise NotImplementedError

    # -- mixed precision: only the encoders run under autocast -------------------------------------------
    def embed(self, encoder: nn.Module, x: torch.Tensor, shuffle: KeyShuffle | None = None) -> torch.Tensor:
        """L2-normalised fp32 features of ``encoder(x)``; the encoder runs under autocast (``amp_dtype``),
        normalisation, logits, loss and the queue/bank stay fp32. ``shuffle``: through this key shuffle."""
        def run(inp):
            with torch.autocast(inp.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                return encoder(inp)
        f = shuffle.encode(run, x) if shuffle is not None else run(x)
        return F.normalize(f.float(), dim=1)

    # -- one step (Algorithm 1) ----------------------------------------------------------------------------
    def contrast(self, q: torch.Tensor, im_k: torch.Tensor | None,
                 idx: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The mechanism: ``(l_pos, l_neg)``, N x 1 and N x negatives, of the queries ``q`` (N x C); updates
        the dictionary (queue, bank) after computing them."""
        raise NotImplementedError

    def forward(self, im_q: torch.Tensor, im_k: torch.Tensor | None = None, idx: torch.Tensor | None = None):
        q = self.embed(self.encoder_q, im_q)                         # queries: N x C
        l_pos, l_neg = self.contrast(q, im_k, idx)                   # N x 1, N x K
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)   # positives: column 0
        return logits, labels


@MECHANISMS.register("moco")
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
        multiple of the batch size (the official code asserts it is)."""
        keys = D.concat_all_gather(keys)
        n = keys.shape[0]
        if n > self.K:                       # only the newest K keys fit
            keys, n = keys[-self.K:], self.K
        ptr = int(self.queue_ptr)
        idx = (ptr + torch.arange(n, device=keys.device)) % self.K
        self.queue[:, idx] = keys.T.to(self.queue.dtype)
        self.queue_ptr[0] = (ptr + n) % self.K

    def contrast(self, q, im_k, idx=None):
        with torch.no_grad():
            self._momentum_update_key_encoder()
            k = self.embed(self.encoder_k, im_k, self.key_shuffle)   # keys: N x C
        l_pos = torch.einsum("nc,nc->n", q, k).unsqueeze(-1)        # N x 1
        l_neg = torch.einsum("nc,ck->nk", q, self.queue.clone().detach())   # N x K
        self._dequeue_and_enqueue(k)
        return l_pos, l_neg


@MECHANISMS.register("end_to_end")
class EndToEnd(Mechanism):
    """End-to-end (Fig. 2a): the key encoder is the query encoder, keys carry gradient, and the dictionary is
    the current mini-batch over all processes: K = batch size, K - 1 negatives per query."""

    def __init__(self, encoder_q: nn.Module, T: float = 0.07, shuffle: str = "off",
                 amp_dtype: torch.dtype | None = None):
        super().__init__(encoder_q, T, amp_dtype)
        self.key_shuffle = KeyShuffle(shuffle)

    @classmethod
    def from_config(cls, cfg, encoder_q, *, num_images=0, shuffle="off", amp_dtype=None) -> "EndToEnd":
        return cls(encoder_q, T=cfg.moco_t, shuffle=shuffle, amp_dtype=amp_dtype)

    def contrast(self, q, im_k, idx=None):
        k = self.embed(self.encoder_q, im_k, self.key_shuffle)
        k_all = D.gather_with_grad(k)                                 # Ntot x C, with gradient
        n = q.shape[0]
        sim = torch.einsum("nc,mc->nm", q, k_all)                    # N x Ntot
        pos = torch.arange(n, device=q.device) + D.rank() * n        # column of each query's own key
        mask = torch.zeros_like(sim, dtype=torch.bool)
        mask[torch.arange(n, device=q.device), pos] = True
        return sim[mask].view(n, 1), sim[~mask].view(n, -1)          # N x 1, N x (Ntot - 1)


@MECHANISMS.register("memory_bank")
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


MECHANISMS.check_complete()


def build_pretrainer(cfg, num_images: int, world: int = 1, device: torch.device | str = "cpu",
                     precision: str | None = None, channels_last: bool | None = None) -> Mechanism:
    """The pretrainer a resolved config describes, as the Trainer trains it: the query encoder
    (:func:`pretrain.encoder.encoder_for`), given the BN layout of ``cfg.shuffle_bn`` with ``world`` processes,
    in the config's memory format (``channels_last`` overrides it), wrapped in ``cfg.mechanism``'s module
    (under ``precision``'s autocast, default the config's) on ``device``. ``num_images``: the training images
    (the memory bank holds one entry each). Draws from torch's global RNG in this order: encoder, then the
    dictionary (queue or bank)."""
    device = torch.device(device)
    mode = resolve_mode(cfg.shuffle_bn, world)
    channels_last = cfg.channels_last if channels_last is None else channels_last
    enc = convert_bn(encoder_for(cfg), mode, cfg.bn_splits, world, device)
    enc = enc.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    model = MECHANISMS[cfg.mechanism].from_config(cfg, enc, num_images=num_images, shuffle=mode,
                                                  amp_dtype=autocast_dtype(precision or cfg.precision))
    return model.to(device)

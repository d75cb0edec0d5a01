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

The names and each one's config rules live in :data:`pretrain.config.mechanisms.MECHANISMS`; each class
registers under its name in :data:`pretrain.models.registry.REGISTRY`, one file per mechanism (:mod:`.moco`,
:mod:`.end_to_end`, :mod:`.memory_bank`); :func:`pretrain.models.build.build_pretrainer` builds one.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .shuffle_bn import KeyShuffle


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

    name: str = ""                      # set by @REGISTRY.register
    uses_key_view = True                # whether forward needs the second augmented view im_k

    def __init__(self, encoder_q: nn.Module, T: float = 0.07, amp_dtype: torch.dtype | None = None):
        super().__init__()
        self.T = T
        self.amp_dtype = amp_dtype           # autocast dtype of the encoders' forward passes (None = fp32)
        self.encoder_q = encoder_q
        self._step_encoders: dict = {}       # name -> the compiled encoder of the step (compile_encoders)

    # -- the fast step: compiled encoders ------------------------------------------------------------------
    def compile_encoders(self, mode: str) -> None:
        """``torch.compile`` the encoders (``encoder_q``, and ``encoder_k`` where the mechanism has one) for the
        training step, in ``mode`` (:data:`pretrain.config.schema.COMPILE_MODES`; off = eager). The compiled
        callables share the modules' parameters and buffers and are kept outside the module tree, so state dicts
        keep their names and every other use of an encoder (kNN, the bank fill, export) runs it eagerly."""
        self._step_encoders = {} if mode == "off" else {
            name: torch.compile(getattr(self, name), mode=None if mode == "default" else mode)
            for name in ("encoder_q", "encoder_k") if isinstance(getattr(self, name, None), nn.Module)}

    def step_encoder(self, name: str) -> nn.Module:
        """The encoder ``name`` as the training step runs it: compiled (:meth:`compile_encoders`) or the module."""
        compiled = self._step_encoders.get(name)
        return compiled if compiled is not None else getattr(self, name)

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
        q = self.embed(self.step_encoder("encoder_q"), im_q)         # queries: N x C
        l_pos, l_neg = self.contrast(q, im_k, idx)                   # N x 1, N x K
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)   # positives: column 0
        return logits, labels

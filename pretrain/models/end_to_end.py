"""End-to-end (paper Fig. 2a): the keys come from the query encoder itself, with gradient; the negatives are the
other keys of the mini-batch over all processes, so K is the batch size."""
from __future__ import annotations

import torch
import torch.nn as nn

from pretrain.runtime import distributed as D

from .mechanism import Mechanism
from .registry import REGISTRY
from .shuffle_bn import KeyShuffle


@REGISTRY.register("end_to_end")
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
        k = self.embed(self.step_encoder("encoder_q"), im_k, self.key_shuffle)
        k_all = D.gather_with_grad(k)                                 # Ntot x C, with gradient
        n = q.shape[0]
        sim = torch.einsum("nc,mc->nm", q, k_all)                    # N x Ntot
        pos = torch.arange(n, device=q.device) + D.rank() * n        # column of each query's own key
        mask = torch.zeros_like(sim, dtype=torch.bool)
        mask[torch.arange(n, device=q.device), pos] = True
        return sim[mask].view(n, 1), sim[~mask].view(n, -1)          # N x 1, N x (Ntot - 1)

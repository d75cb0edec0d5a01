"""Precision: the autocast dtype each ``precision`` config value names (fp32 runs without autocast)."""
from __future__ import annotations

import torch

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a ``precision`` config value (None = fp32, no autocast)."""
    return AUTOCAST_DTYPES[precision]

"""Building the pretrainer a config describes: the query encoder with the BN layout of ``shuffle_bn``, wrapped in
the config's mechanism (looked up in the registry, whose three implementations this module imports)."""
from __future__ import annotations

import torch

from pretrain.runtime.precision import autocast_dtype

from . import end_to_end, memory_bank, moco  # noqa: F401  (each registers its mechanism)
from .encoder import encoder_for
from .mechanism import Mechanism
from .registry import REGISTRY
from .shuffle_bn import convert_bn, resolve_mode

REGISTRY.check_complete()


def build_pretrainer(cfg, num_images: int, world: int = 1, device: torch.device | str = "cpu",
                     precision: str | None = None, channels_last: bool | None = None,
                     compile_mode: str | None = None) -> Mechanism:
    """The pretrainer a resolved config describes, as the Trainer trains it: the query encoder
    (:func:`pretrain.models.encoder.encoder_for`), given the BN layout of ``cfg.shuffle_bn`` with ``world``
    processes, in the config's memory format (``channels_last`` overrides it), wrapped in ``cfg.mechanism``'s
    module (under ``precision``'s autocast, default the config's) on ``device``, its encoders compiled for the
    step in ``compile_mode`` (default the config's ``compile``; :meth:`Mechanism.compile_encoders`).
    ``num_images``: the training images (the memory bank holds one entry each). Draws from torch's global RNG in
    this order: encoder, then the dictionary (queue or bank)."""
    device = torch.device(device)
    mode = resolve_mode(cfg.shuffle_bn, world)
    channels_last = cfg.channels_last if channels_last is None else channels_last
    enc = convert_bn(encoder_for(cfg), mode, cfg.bn_splits, world, device)
    enc = enc.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    model = REGISTRY[cfg.mechanism].from_config(cfg, enc, num_images=num_images, shuffle=mode,
                                                  amp_dtype=autocast_dtype(precision or cfg.precision))
    model = model.to(device)
    model.compile_encoders(compile_mode or cfg.compile)
    return model

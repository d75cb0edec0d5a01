"""Baselines beside every result, with the suite's own protocols: the network at random initialisation and
raw pixels.

- :func:`initial_encoder`: the query encoder exactly as ``pretrain.engine.trainer.Trainer`` initialises it before any
  training step (same seed handling), so "random init" of seed s is the starting point of every run of seed s.
- :func:`knn_random_init`, :func:`knn_raw_pixels`: the weighted kNN of :mod:`pretrain.knn` (same k, t, train
  subset and test set); raw pixels are the flattened normalised images at ``cfg.image_size``, L2-normalised as
  every kNN feature.
- :func:`linear_random_init`, :func:`linear_raw_pixels`: the fixed-size linear protocol of
  :mod:`pretrain.lincls` (:func:`pretrain.eval.lincls.fixed_protocol`: official defaults lr 30, momentum 0.9, wd 0,
  batch 256, 100 epochs, x0.1 at 60/80, cached features, fc N(0, 0.01)) on the random-init backbone and on raw
  pixels. Fixed-size datasets only.

``python -m pretrain.knn --preset P`` prints both kNN baselines; ``python -m ablations baselines --preset P``
writes them (kNN and linear) into the results table.
"""
from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn as nn

from pretrain.base.errors import UserError
from pretrain.eval.knn import knn_accuracy
from pretrain.eval.lincls import fixed_protocol
from pretrain.eval.protocol import LinclsConfig
from pretrain.models.encoder import backbone_forward, encoder_for, feature_dim
from pretrain.runtime.seeding import seed_all

RANDOM_INIT, RAW_PIXELS = "random_init", "raw_pixels"
BASELINES = (RANDOM_INIT, RAW_PIXELS)


def initial_encoder(cfg) -> nn.Module:
    """The query encoder of ``pretrain.engine.trainer.Trainer(cfg, ...)`` before training, bit for bit: the Trainer
    seeds every RNG with ``seed_all(cfg.seed, 0, rank)``, builds its data (which draws from no global RNG) and
    then the encoder; under DDP rank 0's initialisation is broadcast, so rank 0's seed is the one. The plain
    torchvision modules are returned (the Trainer's BN layout, e.g. split BN, has the same state and is the
    same function in eval mode). The global RNG states are restored afterwards."""
    states = torch.get_rng_state(), random.getstate(), np.random.get_state()
    try:
        seed_all(cfg.seed, 0, 0)
        return encoder_for(cfg)
    finally:
        torch.set_rng_state(states[0])
        random.setstate(states[1])
        np.random.set_state(states[2])


def _fixed_size_only(cfg, what: str) -> None:
    if cfg.dataset == "imagefolder":
        raise UserError(f"{what} needs a fixed-size dataset (cifar10/100, stl10, fashion_mnist, synthetic); "
                        f"imagefolder (ImageNet) is not supported")


def _device(device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def knn_random_init(cfg, device, sets=None) -> float:
    """kNN top-1 (%) of the network at its random initialisation (:func:`initial_encoder`), the run's kNN
    protocol (``knn_k``, ``knn_t``, ``knn_feature``, ``subset``, ``knn_subset``)."""
    device = _device(device)
    return knn_accuracy(initial_encoder(cfg).to(device), cfg, device, sets)


def knn_raw_pixels(cfg, device, sets=None) -> float:
    """kNN top-1 (%) on raw pixels: the flattened normalised images at ``cfg.image_size``, L2-normalised,
    with the run's k, t, train subset and test set (independent of the seed and the network)."""
    _fixed_size_only(cfg, "the raw-pixel baseline")
    device = _device(device)
    return knn_accuracy(nn.Flatten(), cfg, device, sets, feature="head")


def _linear(cfg, feats, dim: int, lc, device, progress: bool, sets) -> dict:
    lc = lc or LinclsConfig()
    torch.manual_seed(lc.seed)                      # the fc initialisation, as pretrain.eval.lincls.run seeds it
    return fixed_protocol(lc, cfg, feats, dim, _device(device), progress, sets)


def linear_random_init(cfg, lc=None, device="cpu", progress: bool = False, sets=None) -> dict:
    """The fixed-size linear protocol (``lc``: default the official LinclsConfig) on the frozen, eval-mode
    backbone of the random-init network."""
    _fixed_size_only(cfg, "the linear protocol of a baseline")
    dev = _device(device)
    enc = initial_encoder(cfg).to(dev).eval()
    for p in enc.parameters():
        p.requires_grad = False

    @torch.no_grad()
    def feats(x):
        return backbone_forward(enc, x)

    return _linear(cfg, feats, feature_dim(enc), lc, dev, progress, sets)


def linear_raw_pixels(cfg, lc=None, device="cpu", progress: bool = False, sets=None) -> dict:
    """The fixed-size linear protocol on raw pixels (flattened normalised images at ``cfg.image_size``)."""
    _fixed_size_only(cfg, "the linear protocol of a baseline")
    return _linear(cfg, lambda x: x.flatten(1), cfg.in_chans * cfg.image_size ** 2, lc, device, progress, sets)

"""Validation of a whole config: every range and choice, and each mechanism's own rules
(:data:`pretrain.config.mechanisms.MECHANISMS`), as one UserError naming the key."""
from __future__ import annotations

import math
from dataclasses import fields

from pretrain.base.errors import UserError

from .mechanisms import MECHANISMS
from .schema import STR_CHOICES, Config

# how validate() names a float key in its messages
FLOAT_LABELS = {"moco_t": "moco_t (tau)", "moco_m": "moco_m (m)", "knn_t": "knn_t (the kNN temperature)"}


def validate(cfg: Config) -> Config:
    """``cfg`` itself when every key is in range and the mechanism's rules hold; else one UserError."""
    def bad(msg: str):
        raise UserError(msg)

    for f in fields(Config):
        if f.type == "float" and not math.isfinite(getattr(cfg, f.name)):
            bad(f"{FLOAT_LABELS.get(f.name, f.name)} must be a finite number, got {getattr(cfg, f.name)}")
    for name, choices in STR_CHOICES.items():       # every string key with a fixed set of values
        if getattr(cfg, name) not in choices:
            bad(f"{name} must be one of {', '.join(choices)}, got '{getattr(cfg, name)}'")
    if cfg.precision == "fp16" and cfg.device == "cpu":
        bad("precision fp16 needs CUDA (autocast on the CPU is bf16); use --precision bf16 or fp32")
    if not 0.0 < cfg.crop_scale_min <= 1.0:
        bad(f"crop_scale_min must be in (0, 1], got {cfg.crop_scale_min}")
    if cfg.cos_first_epoch < 0:
        bad(f"cos_first_epoch must be >= 0, got {cfg.cos_first_epoch}")
    if cfg.dist_timeout_min < 1:
        bad(f"dist_timeout_min must be >= 1, got {cfg.dist_timeout_min}")
    if cfg.moco_k < 1:
        bad(f"moco_k (K) must be >= 1, got {cfg.moco_k}")
    if not 0.0 <= cfg.moco_m <= 1.0:
        bad(f"moco_m (m) must be in [0, 1], got {cfg.moco_m}")
    if not 0.0 <= cfg.bank_m < 1.0:
        bad(f"bank_m must be in [0, 1), got {cfg.bank_m}")
    if not cfg.moco_t > 0:
        bad(f"moco_t (tau) must be > 0, got {cfg.moco_t}")
    if not cfg.knn_t > 0:
        bad(f"knn_t (the kNN temperature) must be > 0, got {cfg.knn_t}")
    if cfg.stem_stride not in (1, 2):
        bad(f"stem_stride must be 1 or 2, got {cfg.stem_stride}")
    if cfg.stem_stride != 1 and not cfg.cifar_stem:
        bad(f"stem_stride {cfg.stem_stride} needs cifar_stem: true (the torchvision stem has its own strides)")
    for name in ("batch_size", "epochs", "moco_dim", "image_size", "in_chans", "width", "bn_splits", "lr_ref_batch",
                 "knn_k"):
        if getattr(cfg, name) < 1:
            bad(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("subset", "workers", "knn_every", "max_steps", "threads", "knn_subset"):
        if getattr(cfg, name) < 0:
            bad(f"{name} must be >= 0, got {getattr(cfg, name)}")
    for name in ("fail_loss_frac", "fail_loss_rise"):
        if not getattr(cfg, name) >= 0:
            bad(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.eval_split == "val" and cfg.dataset in ("imagefolder", "stl10"):
        bad(f"eval_split val needs a fixed-size dataset with one training set (not {cfg.dataset})")
    for name in ("fail_below_init", "knn_monitor"):
        if not isinstance(getattr(cfg, name), bool):
            bad(f"{name} must be true or false, got {getattr(cfg, name)!r}")
    if not cfg.lr > 0:
        bad(f"lr must be > 0, got {cfg.lr}")
    if cfg.dataset == "imagefolder" and cfg.augment_on == "batched":
        bad("augment_on=batched needs fixed-size images (cifar10/100, stl10, fashion_mnist, synthetic); "
            "use augment_on=workers for imagefolder")
    if sorted(cfg.schedule) != list(cfg.schedule):
        bad(f"schedule must be increasing epochs, got {cfg.schedule}")
    for problem in MECHANISMS[cfg.mechanism].problems(cfg):     # the mechanism's own rules
        bad(problem)
    return cfg

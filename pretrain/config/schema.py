"""The run's config as one dataclass (detectron2 style: defaults in one place; presets are YAML files that
inherit with ``_base_``, command-line flags override: :mod:`pretrain.config.load`).

The dataclass defaults are the paper's ImageNet MoCo v1 settings (He et al. 2020, Sec. 4 and the official
``main_moco.py``): ResNet-50, K = 65536, m = 0.999, tau = 0.07, SGD lr 0.03 at batch 256, momentum 0.9,
weight decay 1e-4, 200 epochs, lr x0.1 at epochs 120 and 160. Also the key groups outside a run's identity
and the choices of every string-valued key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass, field, fields

from .mechanisms import MECHANISMS

SHUFFLE_BN = ("auto", "ddp", "split", "off", "sync")
DATASETS = ("imagefolder", "cifar10", "cifar100", "stl10", "fashion_mnist", "synthetic")
AUGMENT_ON = ("workers", "batched")
PRECISIONS = ("fp32", "bf16", "fp16")
# torch.compile modes of the encoders' training forward; off = the official eager step
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
# The keys outside a run's identity (run_identity: its hash, its directory, and what a resume must match), in
# one place. RUNTIME_KEYS: how/where a run runs, not what it computes; may differ on resume.
RUNTIME_KEYS = ("workers", "device", "threads", "data", "dist_timeout_min")
# EVAL_KEYS: what is measured after/beside training (kNN monitor, the "fail" criteria); a finished run whose
# evaluation settings changed is re-evaluated from its checkpoint, not trained again
EVAL_KEYS = ("knn_monitor", "knn_every", "knn_k", "knn_t", "knn_feature", "knn_subset", "eval_split",
             "fail_loss_frac", "fail_below_init", "fail_loss_rise")
EVAL_SPLITS = ("test", "val")


@dataclass
class Config:
    # --- data -------------------------------------------------------------------------------------
    dataset: str = "imagefolder"      # imagefolder (ImageNet layout) | cifar10 | cifar100 | stl10 | fashion_mnist | synthetic
    data: str = ""                    # dataset root ('' = the dataset's default location)
    subset: int = 0                   # use the first N training images of a fixed random order (0 = all)
    image_size: int = 224             # crop size of the augmentations
    augment_on: str = "workers"       # workers: per image in DataLoader workers | batched: on tensors, on the device
    workers: int = 32                 # DataLoader worker processes per node, shared by its processes (official)
    aug_plus: bool = False            # MoCo v2 augmentation (blur, stronger colour jitter)
    crop_scale_min: float = 0.2       # RandomResizedCrop's smallest area fraction (official main_moco 0.2; CIFAR demo 0.08)
    blur: bool = True                 # aug_plus: the Gaussian blur of MoCo v2 (the CIFAR demo has none)
    # --- model ------------------------------------------------------------------------------------
    arch: str = "resnet50"            # any torchvision ResNet constructor name
    cifar_stem: bool = False          # 3x3 stride-1 first conv, no max-pool (small images)
    stem_stride: int = 1              # cifar_stem's conv stride: 1 (CIFAR demo) | 2 (first stage at half resolution)
    in_chans: int = 3
    width: int = 64                   # channels of the first stage (torchvision: 64)
    moco_dim: int = 128               # feature dimension
    mlp: bool = False                 # MoCo v2 MLP head
    # --- contrastive mechanism ----------------------------------------------------------------------
    mechanism: str = "moco"           # moco | end_to_end | memory_bank (paper Fig. 3)
    moco_k: int = 65536               # K: queue size (moco), negatives per step (memory_bank); end_to_end: = batch
    moco_m: float = 0.999             # m: momentum of the key encoder (Eq. 2)
    moco_t: float = 0.07              # tau: softmax temperature (Eq. 1)
    bank_m: float = 0.5               # memory bank: v <- normalize(bank_m * v + (1 - bank_m) * q) (Wu et al. 2018)
    bank_init: str = "random"         # memory bank's initial entries: random (NPID) | features (initial encoder's)
    shuffle_bn: str = "auto"          # auto (ddp if world > 1 else split) | ddp | split | off | sync
    bn_splits: int = 8                # split: BN sub-batches in one process (official CIFAR demo's SplitBatchNorm)
    # --- optimisation -----------------------------------------------------------------------------
    epochs: int = 200
    batch_size: int = 256             # total over all processes
    lr: float = 0.03                  # at lr_ref_batch
    lr_ref_batch: int = 256
    lr_scaling: str = "none"          # none | linear (lr * batch_size / lr_ref_batch)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: list = field(default_factory=lambda: [120, 160])   # lr x0.1 at these epochs (ignored with cos)
    cos: bool = False                 # MoCo v2 cosine schedule
    cos_first_epoch: int = 0          # number of the first epoch in the cosine formula (main_moco 0; CIFAR demo 1)
    precision: str = "fp32"           # fp32 | bf16 | fp16: autocast around the encoders (fp16 only on CUDA, GradScaler)
    channels_last: bool = False       # model and batches in channels_last memory format
    # torch.compile of the encoders in the training step: off (the official eager step) | default (inductor) |
    # reduce-overhead (+ CUDA graphs) | max-autotune; kNN, the bank fill and export stay eager. Equal to the eager
    # step within the tolerance of tests/pretrain/engine/test_fast_step.py, not bit for bit
    compile: str = "off"
    # --- evaluation & bookkeeping -------------------------------------------------------------------
    knn_monitor: bool = False         # weighted-kNN monitor (the CIFAR demo's; official main_moco has none)
    knn_every: int = 10               # kNN monitor every N epochs (and at the end; 0 = only at the end)
    knn_k: int = 200
    knn_t: float = 0.1
    knn_feature: str = "backbone"     # backbone (pooled features) | head (normalised moco_dim output, as the CIFAR demo)
    knn_subset: int = 0               # kNN: first N test images (0 = all)
    # what kNN and the linear protocol score: test (the dataset's test set) or val (pretrain.data.datasets.VAL_IMAGES
    # training images outside the pretraining subset, fixed for every run and seed): design decisions read val
    eval_split: str = "test"
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda
    threads: int = 0                  # torch CPU threads per process (0 = torch's default)
    dist_timeout_min: int = 60        # timeout of the process group's collectives (minutes)
    max_steps: int = 0                # stop each epoch after N steps (0 = full epochs; for tests and benchmarks)
    fail_on_nan: bool = True
    # the paper's "fail" (m = 0: "the training loss oscillates and fails to converge"), two declared tests, each
    # recording the run as not_converged (pretrain/engine/criteria.py:not_converged): the last-epoch loss is >=
    # fail_loss_frac x the chance level ln(1 + negatives) (0 = never) ...
    fail_loss_frac: float = 0.0
    # ... or (fail_below_init, needs knn_monitor) the final kNN top-1 is strictly below the kNN top-1 of the same
    # network at its random initialisation (same seed, kNN settings and data; stored as knn_init)
    fail_below_init: bool = False
    # ... or (fail_loss_rise > 0) the loss fails to converge: the last epoch's mean loss is >= fail_loss_rise nats
    # above the lowest mean loss of an earlier epoch (it went back up: pretrain/engine/criteria.py:not_converged)
    fail_loss_rise: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def effective_lr(self) -> float:
        if self.lr_scaling == "linear":
            return self.lr * self.batch_size / self.lr_ref_batch
        return self.lr


FIELD_NAMES = [f.name for f in fields(Config)]
FIELD_DEFAULTS = {f.name: f.default for f in fields(Config) if f.default is not MISSING}


# the choices of the string-valued keys (an unquoted YAML off/no/false reads as a boolean: see _coerce_str)
STR_CHOICES = {"mechanism": tuple(MECHANISMS), "shuffle_bn": SHUFFLE_BN, "dataset": DATASETS, "augment_on": AUGMENT_ON,
               "precision": PRECISIONS, "compile": COMPILE_MODES, "lr_scaling": ("none", "linear"),
               "knn_feature": ("backbone", "head"), "device": ("auto", "cpu", "cuda"), "eval_split": EVAL_SPLITS,
               "bank_init": ("random", "features")}

"""One config object for the pretrainer (detectron2 style: defaults in one place, presets are YAML files
that inherit with ``_base_``, command-line flags override).

The dataclass defaults are the paper's ImageNet MoCo v1 settings (He et al. 2020, Sec. 4 and the official
``main_moco.py``): ResNet-50, K = 65536, m = 0.999, tau = 0.07, SGD lr 0.03 at batch 256, momentum 0.9,
weight decay 1e-4, 200 epochs, lr x0.1 at epochs 120 and 160.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import math
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError
from .mechanisms import MECHANISMS

PRESET_DIR = Path(__file__).resolve().parent / "presets"

SHUFFLE_BN = ("auto", "ddp", "split", "off", "sync")
DATASETS = ("imagefolder", "cifar10", "cifar100", "stl10", "fashion_mnist", "synthetic")
AUGMENT_ON = ("workers", "batched")
PRECISIONS = ("fp32", "bf16", "fp16")
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
    # --- evaluation & bookkeeping -------------------------------------------------------------------
    knn_monitor: bool = False         # weighted-kNN monitor (the CIFAR demo's; official main_moco has none)
    knn_every: int = 10               # kNN monitor every N epochs (and at the end; 0 = only at the end)
    knn_k: int = 200
    knn_t: float = 0.1
    knn_feature: str = "backbone"     # backbone (pooled features) | head (normalised moco_dim output, as the CIFAR demo)
    knn_subset: int = 0               # kNN: first N test images (0 = all)
    # what kNN and the linear protocol score: test (the dataset's test set) or val (pretrain.data.VAL_IMAGES
    # training images outside the pretraining subset, fixed for every run and seed): design decisions read val
    eval_split: str = "test"
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda
    threads: int = 0                  # torch CPU threads per process (0 = torch's default)
    dist_timeout_min: int = 60        # timeout of the process group's collectives (minutes)
    max_steps: int = 0                # stop each epoch after N steps (0 = full epochs; for tests and benchmarks)
    fail_on_nan: bool = True
    # the paper's "fail" (m = 0: "the training loss oscillates and fails to converge"), two declared tests, each
    # recording the run as not_converged (pretrain/train.py:not_converged): the last-epoch loss is >=
    # fail_loss_frac x the chance level ln(1 + negatives) (0 = never) ...
    fail_loss_frac: float = 0.0
    # ... or (fail_below_init, needs knn_monitor) the final kNN top-1 is strictly below the kNN top-1 of the same
    # network at its random initialisation (same seed, kNN settings and data; stored as knn_init)
    fail_below_init: bool = False
    # ... or (fail_loss_rise > 0) the loss fails to converge: the last epoch's mean loss is >= fail_loss_rise nats
    # above the lowest mean loss of an earlier epoch (it went back up: pretrain/train.py:not_converged)
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


def _check_keys(d: dict, where: str) -> None:
    for k in d:
        if k not in FIELD_NAMES:
            close = difflib.get_close_matches(k, FIELD_NAMES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"unknown config key '{k}' in {where}{hint}")


# the choices of the string-valued keys (an unquoted YAML off/no/false reads as a boolean: see _coerce_str)
STR_CHOICES = {"mechanism": tuple(MECHANISMS), "shuffle_bn": SHUFFLE_BN, "dataset": DATASETS, "augment_on": AUGMENT_ON,
               "precision": PRECISIONS, "lr_scaling": ("none", "linear"), "knn_feature": ("backbone", "head"),
               "device": ("auto", "cpu", "cuda"), "eval_split": EVAL_SPLITS, "bank_init": ("random", "features")}


def _yaml_bool(value: bool) -> str:
    """How YAML writes a boolean (``true``/``false``), for error messages."""
    return "true" if value else "false"


def _refuse_bool(name: str, value: Any, expected: str) -> None:
    """A YAML boolean (``moco_k: true``) is not a number: Python would read it as 1 / 0."""
    if isinstance(value, bool):
        raise UserError(f"config key '{name}': expected {expected}, got {_yaml_bool(value)} (a YAML boolean)")


def _coerce_str(name: str, value: Any) -> str:
    """A string key. YAML reads unquoted on/off/yes/no/true/false as booleans: false is the choice 'off' where
    the key has one (``shuffle_bn: off``); any other boolean is refused with how to quote it."""
    if not isinstance(value, bool):
        return str(value)
    choices = STR_CHOICES.get(name, ())
    if not value and "off" in choices:
        return "off"
    example = f'{name}: "off"' if "off" in choices else f'{name}: "{choices[0] if choices else "..."}"'
    listed = f" (choices: {', '.join(choices)})" if choices else ""
    raise UserError(f"config key '{name}': got {_yaml_bool(value)}, a YAML boolean (unquoted on/off/yes/no/"
                    f"true/false); quote the value, e.g. {example}{listed}")


def _coerce(name: str, value: Any) -> Any:
    f = Config.__dataclass_fields__[name]
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    if isinstance(default, str):
        return _coerce_str(name, value)
    if isinstance(default, list) and isinstance(value, list):
        for v in value:
            _refuse_bool(name, v, "a list of integers")
    elif not isinstance(default, bool) and isinstance(default, (int, float)):
        _refuse_bool(name, value, "an integer" if isinstance(default, int) else "a number")
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if isinstance(value, bool) or value in (0, 1):
                return bool(value)
            raise ValueError(value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, list):
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split() if v]
            return [int(v) for v in value]
        return str(value)
    except (TypeError, ValueError):
        raise UserError(f"config key '{name}': cannot read {value!r} as {type(default).__name__}") from None


def preset_path(name: str) -> Path:
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise UserError(f"config file not found: {p}")
        return p
    p = PRESET_DIR / f"{name}.yaml"
    if not p.exists():
        names = ", ".join(sorted(x.stem for x in PRESET_DIR.glob("*.yaml")))
        raise UserError(f"unknown preset '{name}' (presets: {names})")
    return p


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A key written twice in one YAML mapping (PyYAML would silently keep the last value)."""

    def __init__(self, key: Any, line: int, first: int):
        super().__init__(problem=f"duplicate key {key!r}")
        self.key, self.line, self.first = key, line, first


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping, at any nesting level (merge keys
    ``<<`` excepted: there an explicit key overriding a merged one is the point)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            lines: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
                try:
                    if key in lines:
                        raise DuplicateKeyError(key, line, lines[key])
                except TypeError:           # an unhashable key: SafeLoader's own error follows
                    continue
                lines[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml_mapping(path: Path, what: str) -> dict:
    """A YAML file that must hold a mapping (an empty file is {}); bad YAML, a key written twice in one mapping,
    a file that is not UTF-8 text, or another type is one UserError."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file (byte {e.start} is {e.object[e.start]:#04x}); "
                        f"{what} must be a YAML text file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKeyError as e:
        raise UserError(f"{path}: duplicate key {e.key!r} at line {e.line} (first at line {e.first}); YAML would "
                        f"keep only the last value: remove one") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserError(f"{path}: {what} must be a YAML mapping")
    return data


def read_yaml(path: Path, _seen: tuple = ()) -> dict:
    """A preset file with its ``_base_`` chain resolved (the base first, this file on top)."""
    path = path.resolve()
    if path in _seen:
        raise UserError(f"config inheritance loop at {path}")
    data = read_yaml_mapping(path, "a preset")
    base = data.pop("_base_", None)
    out: dict = {}
    if base:
        out.update(read_yaml(preset_path(str(path.parent / base)) if str(base).endswith((".yaml", ".yml"))
                             else preset_path(base), _seen + (path,)))
    _check_keys(data, str(path))
    out.update(data)
    return out


# how validate() names a float key in its messages
FLOAT_LABELS = {"moco_t": "moco_t (tau)", "moco_m": "moco_m (m)", "knn_t": "knn_t (the kNN temperature)"}


def k_above_n(cfg: Config, n: int, what: str, alt: str = "") -> str:
    """The message for K larger than the N training images (moco: a queue of K keys, memory_bank: K negatives
    drawn from the bank of one entry per image). ``what`` names N, ``alt`` another way out."""
    why = ("the queue would hold several keys of the same images, the current positives included"
           if cfg.mechanism == "moco" else
           "K negatives drawn from a bank of one entry per image repeat every image, the positive's own included")
    return (f"moco_k (K) {cfg.moco_k} is larger than {what} for mechanism {cfg.mechanism}: {why}; use "
            f"--moco-k <= {n}{alt} (the ablation grids drop such K with 'drop_k_above: subset', ablations/grid.py)")


def validate(cfg: Config) -> Config:
    def bad(msg: str):
        raise UserError(msg)

    for f in fields(Config):
        if f.type == "float" and not math.isfinite(getattr(cfg, f.name)):
            bad(f"{FLOAT_LABELS.get(f.name, f.name)} must be a finite number, got {getattr(cfg, f.name)}")
    if cfg.mechanism not in MECHANISMS:
        bad(f"mechanism must be one of {', '.join(MECHANISMS)}, got '{cfg.mechanism}'")
    if cfg.shuffle_bn not in SHUFFLE_BN:
        bad(f"shuffle_bn must be one of {', '.join(SHUFFLE_BN)}, got '{cfg.shuffle_bn}'")
    if cfg.dataset not in DATASETS:
        bad(f"dataset must be one of {', '.join(DATASETS)}, got '{cfg.dataset}'")
    if cfg.augment_on not in AUGMENT_ON:
        bad(f"augment_on must be one of {', '.join(AUGMENT_ON)}, got '{cfg.augment_on}'")
    if cfg.precision not in PRECISIONS:
        bad(f"precision must be one of {', '.join(PRECISIONS)}, got '{cfg.precision}'")
    if cfg.precision == "fp16" and cfg.device == "cpu":
        bad("precision fp16 needs CUDA (autocast on the CPU is bf16); use --precision bf16 or fp32")
    if not 0.0 < cfg.crop_scale_min <= 1.0:
        bad(f"crop_scale_min must be in (0, 1], got {cfg.crop_scale_min}")
    if cfg.cos_first_epoch < 0:
        bad(f"cos_first_epoch must be >= 0, got {cfg.cos_first_epoch}")
    if cfg.dist_timeout_min < 1:
        bad(f"dist_timeout_min must be >= 1, got {cfg.dist_timeout_min}")
    if cfg.lr_scaling not in ("none", "linear"):
        bad(f"lr_scaling must be 'none' or 'linear', got '{cfg.lr_scaling}'")
    if cfg.knn_feature not in ("backbone", "head"):
        bad(f"knn_feature must be 'backbone' or 'head', got '{cfg.knn_feature}'")
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
    if cfg.mechanism in ("moco", "memory_bank") and 0 < cfg.subset < cfg.moco_k:
        bad(k_above_n(cfg, cfg.subset, f"subset {cfg.subset} (the pretraining images)", " or a larger subset"))
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
    if cfg.bank_init not in STR_CHOICES["bank_init"]:
        bad(f"bank_init must be one of {', '.join(STR_CHOICES['bank_init'])}, got '{cfg.bank_init}'")
    if cfg.bank_init == "features" and cfg.mechanism == "memory_bank" and cfg.dataset == "imagefolder":
        bad("bank_init features needs a fixed-size dataset (one pass over tensors), not imagefolder")
    if cfg.eval_split not in EVAL_SPLITS:
        bad(f"eval_split must be one of {', '.join(EVAL_SPLITS)}, got '{cfg.eval_split}'")
    if cfg.eval_split == "val" and cfg.dataset in ("imagefolder", "stl10"):
        bad(f"eval_split val needs a fixed-size dataset with one training set (not {cfg.dataset})")
    for name in ("fail_below_init", "knn_monitor"):
        if not isinstance(getattr(cfg, name), bool):
            bad(f"{name} must be true or false, got {getattr(cfg, name)!r}")
    if not cfg.lr > 0:
        bad(f"lr must be > 0, got {cfg.lr}")
    if cfg.mechanism == "end_to_end" and cfg.moco_k != cfg.batch_size:
        bad(f"end_to_end: the dictionary is the mini-batch, so moco_k must equal batch_size "
            f"(got K={cfg.moco_k}, batch={cfg.batch_size}); sweep K by sweeping batch_size")
    if cfg.dataset == "imagefolder" and cfg.augment_on == "batched":
        bad("augment_on=batched needs fixed-size images (cifar10/100, stl10, fashion_mnist, synthetic); "
            "use augment_on=workers for imagefolder")
    if sorted(cfg.schedule) != list(cfg.schedule):
        bad(f"schedule must be increasing epochs, got {cfg.schedule}")
    return cfg


def load_config(preset: str | None = "imagenet", overrides: dict | None = None) -> Config:
    """Defaults <- preset YAML (with ``_base_`` chain) <- overrides; unknown keys are an error."""
    values: dict = {}
    if preset:
        values.update(read_yaml(preset_path(preset)))
    if overrides:
        _check_keys(overrides, "overrides")
        values.update(overrides)
    values = {k: _coerce(k, v) for k, v in values.items()}
    if values.get("mechanism") == "end_to_end":
        # end-to-end: the dictionary is the mini-batch, so K and the batch size are one number; whichever
        # the user set decides the other (sweeping K means sweeping the batch size)
        over = overrides or {}
        if "moco_k" in over and "batch_size" not in over:
            values["batch_size"] = values["moco_k"]
        elif "moco_k" not in over:
            values["moco_k"] = values.get("batch_size", Config.batch_size)
    return validate(Config(**values))


# keys added to Config after runs existed: at their default they are left out of the identity, so the run ids of
# configs that predate them stay what they were (their run directories and results rows are still recognised)
HASHED_WHEN_SET = ("stem_stride", "bank_init")
# keys only one mechanism reads (a preset may set them for all; the other mechanisms' run ids ignore them)
ONLY_FOR = {"bank_init": "memory_bank"}


def run_identity(cfg: Config, world: int | None = None) -> dict:
    """What determines a run's training: the config without its runtime and evaluation keys, plus the number
    of processes (per-process batch and BN layout under ``shuffle_bn: auto``) and, for ``imagefolder``, the
    dataset's resolved path (the folder *is* the dataset: ImageNet-1k and an ImageNet-100 folder differ)."""
    from .distributed import planned_world_size
    d = cfg.to_dict()
    for k in RUNTIME_KEYS + EVAL_KEYS:
        d.pop(k, None)
    for k in HASHED_WHEN_SET:
        if d[k] == FIELD_DEFAULTS[k]:
            del d[k]
    for k, mechanism in ONLY_FOR.items():      # a key one mechanism reads does not make another's run new
        if cfg.mechanism != mechanism:
            d.pop(k, None)
    d["world_size"] = int(world) if world else planned_world_size()
    if cfg.dataset == "imagefolder":
        d["dataset_path"] = str(Path(cfg.data).expanduser().resolve()) if cfg.data else ""
    return d


# what may differ when a run is continued from its checkpoint although it is part of the identity: more epochs
RESUME_MAY_CHANGE = ("epochs",)


def resume_mismatch(saved: dict, saved_world: int | None, cfg: Config, world: int) -> list[str]:
    """What keeps a checkpoint written by the config ``saved`` (a dict, as stored; a key it predates counts
    with its default value, a key no longer known is ignored) with ``saved_world`` processes (None: not
    recorded) from being continued by ``cfg`` with ``world`` processes: the items of :func:`run_identity` (the
    same keys the run's hash covers) that differ, :data:`RESUME_MAY_CHANGE` excepted. [] = it may resume."""
    old_cfg = Config(**{k: v for k, v in saved.items() if k in FIELD_NAMES})
    old = run_identity(old_cfg, saved_world if saved_world is not None else world)
    new = run_identity(cfg, world)
    out = []
    for k in new:
        if k in RESUME_MAY_CHANGE or old.get(k) == new[k]:
            continue
        out.append(f"world size {old[k]} -> {new[k]}" if k == "world_size" else k)
    return out


def config_hash(cfg: Config, world: int | None = None) -> str:
    """12 hex digits identifying the run (:func:`run_identity`): runs of another config, seed, world size or
    ImageNet folder never share a directory. ``world`` defaults to the processes this launch will have."""
    blob = json.dumps(run_identity(cfg, world), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def eval_settings(cfg: Config) -> dict:
    """The evaluation keys of ``cfg`` (recorded in summary.json; a change re-evaluates, never retrains)."""
    d = cfg.to_dict()
    return {k: d[k] for k in EVAL_KEYS}


def save_yaml(cfg: Config, path: Path) -> None:
    from .fileio import atomic_write_text
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """One flag per config field (``moco_k`` -> ``--moco-k``), default None = keep the preset's value."""
    from .encoder import RESNETS
    g = parser.add_argument_group("config (override the preset)")
    choices = {**STR_CHOICES, "arch": tuple(RESNETS)}
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, bool):
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif isinstance(default, list):
            g.add_argument(flag, dest=f.name, type=int, nargs="+", default=None, metavar="EPOCH")
        elif f.name in choices:         # enumerated: --help lists the choices, argparse refuses others
            g.add_argument(flag, dest=f.name, type=str, default=None, choices=choices[f.name],
                           help=f"default: the preset's ({default} in the dataclass)")
        else:
            g.add_argument(flag, dest=f.name, type=str, default=None, metavar=type(default).__name__.upper())


def overrides_from_args(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in FIELD_NAMES if getattr(args, name, None) is not None}

"""A run's identity: the config items that determine its training (:func:`run_identity`), their hash (the run
directory's name and the results table's ``run_id``), what a resume must match, and the evaluation settings
whose change re-evaluates a finished run instead of training it again."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .mechanisms import MECHANISMS
from .schema import EVAL_KEYS, FIELD_DEFAULTS, FIELD_NAMES, RUNTIME_KEYS, Config

# keys hashed only when set away from their default: a config that leaves them at the default has the run id
# it has without them (its run directory and results rows are recognised)
HASHED_WHEN_SET = ("stem_stride", "bank_init", "compile")


def run_identity(cfg: Config, world: int) -> dict:
    """What determines a run's training: the config without its runtime and evaluation keys, plus the number
    of processes (per-process batch and BN layout under ``shuffle_bn: auto``) and, for ``imagefolder``, the
    dataset's resolved path (the folder *is* the dataset: ImageNet-1k and an ImageNet-100 folder differ)."""
    d = cfg.to_dict()
    for k in RUNTIME_KEYS + EVAL_KEYS:
        d.pop(k, None)
    for k in HASHED_WHEN_SET:
        if d[k] == FIELD_DEFAULTS[k]:
            del d[k]
    for k in MECHANISMS.own_keys_of_others(cfg.mechanism):    # a key one mechanism reads leaves others' ids
        d.pop(k, None)
    d["world_size"] = int(world)
    if cfg.dataset == "imagefolder":
        d["dataset_path"] = str(Path(cfg.data).expanduser().resolve()) if cfg.data else ""
    return d


# what may differ when a run is continued from its checkpoint although it is part of the identity: more epochs
RESUME_MAY_CHANGE = ("epochs",)


def resume_mismatch(saved: dict, saved_world: int | None, cfg: Config, world: int) -> list[str]:
    """What keeps a checkpoint written by the config ``saved`` (a dict, as stored; a key it does not hold counts
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


def config_hash(cfg: Config, world: int) -> str:
    """12 hex digits identifying the run of ``cfg`` with ``world`` processes (:func:`run_identity`): runs of
    another config, seed, world size or ImageNet folder never share a directory."""
    blob = json.dumps(run_identity(cfg, world), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def eval_settings(cfg: Config) -> dict:
    """The evaluation keys of ``cfg`` (recorded in summary.json; a change re-evaluates, never retrains)."""
    d = cfg.to_dict()
    return {k: d[k] for k in EVAL_KEYS}

"""detectron2 configs and datasets for ``transfer/``: load a config (``_BASE_`` chain + ``KEY VALUE``
overrides), check that its datasets are registered and on disk, name its task, and hash its content for
run ids. The converter's verification and the trainer both load configs here, so neither imports the
other."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pretrain.base.errors import UserError

from .compat import ensure_detectron2


def load_cfg(config: str | os.PathLike, opts=()):
    """detectron2 config from a YAML (with ``_BASE_``) plus ``KEY VALUE`` overrides (not frozen)."""

    ensure_detectron2()
    from detectron2.config import get_cfg

    from . import datasets, modeling  # noqa: F401  (they import detectron2, an optional dependency: registered here)

    config = Path(config)
    if not config.is_file():
        raise UserError(f"config not found: {config}")
    if len(opts) % 2:
        raise UserError(f"--opts needs KEY VALUE pairs, got {len(opts)} items")
    cfg = get_cfg()
    try:
        cfg.merge_from_file(str(config))
        cfg.merge_from_list(list(opts))
    except (KeyError, ValueError, TypeError, AssertionError) as e:
        msg = e.args[0] if e.args else repr(e)
        raise UserError(f"bad config {config}: {msg}".splitlines()[0])
    return cfg


def check_datasets(cfg, eval_only: bool = False) -> None:
    """Every dataset of the config is registered and its files exist (else one clear error)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    names = list(cfg.DATASETS.TEST) + ([] if eval_only else list(cfg.DATASETS.TRAIN))
    known = set(DatasetCatalog.list())
    for name in names:
        if name not in known:
            raise UserError(f"unknown dataset {name!r} (registered: VOC, COCO and "
                            "voc_synthetic_* names, see transfer/datasets.py)")
        meta = MetadataCatalog.get(name)
        paths = [meta.get(k) for k in ("dirname", "json_file", "image_root") if meta.get(k)]
        for path in paths:
            if not os.path.exists(path):
                raise UserError(f"dataset {name}: {path} not found (set DETECTRON2_DATASETS to "
                                "the folder holding VOC2007/, VOC2012/, coco/ or VOC_synthetic/)")


def task_of(cfg) -> str:
    names = " ".join(cfg.DATASETS.TEST)
    return "coco" if "coco" in names else "voc"


def config_digest(config) -> str:
    """sha1 of the bytes of ``config`` and of every ``_BASE_`` it inherits, followed as detectron2
    does (relative to the including file, ``~`` expanded, a list merged in order); a file that
    cannot be read counts by its path."""
    import yaml

    h = hashlib.sha1()
    seen = set()

    def add(path: str) -> None:
        if "://" in path:  # a remote _BASE_: its address
            h.update(f"url:{path}\n".encode())
            return
        try:
            data = Path(path).read_bytes()
        except OSError:
            h.update(f"unreadable:{path}\n".encode())
            return
        h.update(len(data).to_bytes(8, "little") + data)
        try:
            base = (yaml.safe_load(data) or {}).get("_BASE_")
        except (yaml.YAMLError, AttributeError):
            return
        for b in ([base] if isinstance(base, str) else base if isinstance(base, list) else []):
            b = os.path.expanduser(str(b)) if str(b).startswith("~") else str(b)
            if not b.startswith(("/", "https://", "http://")):
                b = os.path.join(os.path.dirname(path), b)
            key = b if "://" in b else os.path.realpath(b)
            if key not in seen:  # a _BASE_ cycle (detectron2 would recurse forever) ends here
                seen.add(key)
                add(key)

    seen.add(os.path.realpath(config))
    add(os.path.realpath(config))
    return h.hexdigest()

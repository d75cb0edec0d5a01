"""Loading a config: defaults <- a preset YAML (with its ``_base_`` chain) <- overrides, coerced and validated;
a config stored in a checkpoint, with overrides on top; writing one as YAML."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from pretrain.base.errors import UserError
from pretrain.base.fileio import atomic_write_text
from pretrain.base.yamlio import read_yaml_mapping

from .coerce import check_keys, coerce
from .schema import Config
from .validate import validate

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def preset_path(name: str) -> Path:
    """A preset's YAML file: ``name`` itself when it is a .yaml/.yml path, else ``presets/<name>.yaml``."""
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
    check_keys(data, str(path))
    out.update(data)
    return out


def load_config(preset: str | None = "imagenet", overrides: dict | None = None) -> Config:
    """Defaults <- preset YAML (with ``_base_`` chain) <- overrides; unknown keys are an error."""
    values: dict = {}
    if preset:
        values.update(read_yaml(preset_path(preset)))
    if overrides:
        check_keys(overrides, "overrides")
        values.update(overrides)
    values = {k: coerce(k, v) for k, v in values.items()}
    if values.get("mechanism") == "end_to_end":
        # end-to-end: the dictionary is the mini-batch, so K and the batch size are one number; whichever
        # the user set decides the other (sweeping K means sweeping the batch size)
        over = overrides or {}
        if "moco_k" in over and "batch_size" not in over:
            values["batch_size"] = values["moco_k"]
        elif "moco_k" not in over:
            values["moco_k"] = values.get("batch_size", Config.batch_size)
    return validate(Config(**values))


def from_dict(raw: dict, where: str, overrides: dict | None = None) -> Config:
    """The config stored as a dict (a checkpoint's, a summary's), validated, with ``overrides`` on top; an
    unknown key is one UserError naming ``where``."""
    check_keys(raw, where)
    cfg = validate(Config(**raw))
    return with_overrides(cfg, overrides) if overrides else cfg


def with_overrides(cfg: Config, overrides: dict) -> Config:
    """``cfg`` with ``overrides`` (field -> value, coerced) on top, validated."""
    check_keys(overrides, "overrides")
    return validate(dataclasses.replace(cfg, **{k: coerce(k, v) for k, v in overrides.items()}))


def save_yaml(cfg: Config, path: Path) -> None:
    """``cfg`` as the run directory's config.yaml (atomically)."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

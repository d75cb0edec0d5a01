"""Reading a config value as its field's type: YAML and command-line strings, with one clear error for a value
of the wrong type (a YAML boolean where a number or a choice is expected) and for an unknown key."""
from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from pretrain.base.errors import UserError

from .schema import FIELD_NAMES, STR_CHOICES, Config


def check_keys(d: dict, where: str) -> None:
    """Every key of ``d`` is a config field; else one UserError naming the closest field."""
    for k in d:
        if k not in FIELD_NAMES:
            close = difflib.get_close_matches(k, FIELD_NAMES, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UserError(f"unknown config key '{k}' in {where}{hint}")


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


def coerce(name: str, value: Any) -> Any:
    """``value`` (from YAML or a flag) as the type of the field ``name``."""
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

"""The config as command-line flags: one flag per field (``moco_k`` -> ``--moco-k``), for every CLI that takes
a config."""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import fields

from .schema import FIELD_NAMES, STR_CHOICES, Config


def add_config_args(parser: argparse.ArgumentParser, archs: Sequence[str]) -> None:
    """One flag per config field (``moco_k`` -> ``--moco-k``), default None = keep the preset's value;
    ``--arch`` chooses among ``archs`` (the encoders :mod:`pretrain.models.encoder` builds)."""
    g = parser.add_argument_group("config (override the preset)")
    choices = {**STR_CHOICES, "arch": tuple(archs)}
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
    """The config flags given on the command line, as overrides (field -> value)."""
    return {name: getattr(args, name) for name in FIELD_NAMES if getattr(args, name, None) is not None}

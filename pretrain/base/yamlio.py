"""Reading YAML: the suite's one reader of a YAML mapping (presets, grids, claims, profiles), which refuses a key
written twice, a file that is not UTF-8 text and anything but a mapping with one UserError naming the file."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import UserError


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

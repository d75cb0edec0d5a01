"""The paper's dictionary mechanisms (Fig. 2/3) by name: the suite's one list of them.

``MECHANISMS`` is a read-only, ordered registry (detectron2's ``Registry`` idea): its names, in the paper's
order (moco, end_to_end, memory_bank), are what config validation, ``--mechanism``'s choices and the reports'
tables and figures use; ``MECHANISMS[name]`` is the module class that :mod:`pretrain.builder` registered under
that name with ``@MECHANISMS.register(name)``.

This module imports no torch, so ``pretrain.config``, the ablation launcher and ``python -m reports`` read the
names without loading it; looking up a class imports :mod:`pretrain.builder` (where the classes live).
A class can only be registered under a declared name, and importing the builder checks that every declared
name has its class, so the names and the classes cannot drift apart.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping


class Registry(Mapping):
    """Name -> class, in declaration order. Iterating, ``in`` and ``len`` need only the names; ``[name]``
    imports ``implemented_in`` (whose ``@register`` decorators fill the classes) on first use."""

    def __init__(self, names: tuple[str, ...], implemented_in: str):
        self._names = tuple(names)
        self._module = implemented_in
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator: ``cls`` implements the declared mechanism ``name`` (sets ``cls.name``)."""
        if name not in self._names:
            raise KeyError(f"'{name}' is not a declared mechanism ({', '.join(self._names)}): declare it in "
                           f"pretrain/mechanisms.py")

        def deco(cls: type) -> type:
            if name in self._classes and self._classes[name] is not cls:
                raise KeyError(f"mechanism '{name}' registered twice ({self._classes[name].__name__}, "
                               f"{cls.__name__})")
            self._classes[name] = cls
            cls.name = name
            return cls
        return deco

    def check_complete(self) -> None:
        """Every declared name has its class (called at the end of the implementing module)."""
        missing = [n for n in self._names if n not in self._classes]
        if missing:
            raise ImportError(f"{self._module}: no class registered for mechanism(s) {', '.join(missing)}")

    def __getitem__(self, name: str) -> type:
        if name not in self._names:
            raise KeyError(name)
        if name not in self._classes:
            importlib.import_module(self._module)
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __repr__(self) -> str:
        return f"Registry({', '.join(self._names)})"


MECHANISMS = Registry(("moco", "end_to_end", "memory_bank"), implemented_in="pretrain.builder")

"""The registry of the mechanisms' networks (detectron2's ``Registry`` idea): name -> the module class that
implements it, each registered with ``@REGISTRY.register(name)`` in its own file.

Only a name declared in :data:`pretrain.config.mechanisms.MECHANISMS` (the suite's one list, with each
mechanism's config rules) can be registered, and :mod:`pretrain.models.build` checks that every declared name has
its class, so the names and the classes cannot drift apart.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from pretrain.config.mechanisms import MECHANISMS


class Registry(Mapping):
    """Declared name -> registered class, in declaration order."""

    def __init__(self, names: Iterable[str]):
        self._names = tuple(names)
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type], type]:
        """Class decorator: ``cls`` implements the declared mechanism ``name`` (sets ``cls.name``)."""
        if name not in self._names:
            raise KeyError(f"'{name}' is not a declared mechanism ({', '.join(self._names)}): declare it in "
                           f"pretrain/config/mechanisms.py")

        def deco(cls: type) -> type:
            if name in self._classes and self._classes[name] is not cls:
                raise KeyError(f"mechanism '{name}' registered twice ({self._classes[name].__name__}, "
                               f"{cls.__name__})")
            self._classes[name] = cls
            cls.name = name
            return cls
        return deco

    def check_complete(self) -> None:
        """Every declared name has its class."""
        missing = [n for n in self._names if n not in self._classes]
        if missing:
            raise ImportError(f"no class registered for mechanism(s) {', '.join(missing)}")

    def __getitem__(self, name: str) -> type:
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(n for n in self._names if n in self._classes)

    def __len__(self) -> int:
        return sum(n in self._classes for n in self._names)

    def __repr__(self) -> str:
        return f"Registry({', '.join(self._classes)})"


REGISTRY = Registry(MECHANISMS)

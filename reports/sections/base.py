"""What a section of the report is, as data: :class:`Section` (its name, the rows it reads, its tables and
figures) and :class:`Figure` (one figure of a section).

A table function takes the results (:class:`reports.data.Results`) and returns ``(table, extra)``: the
:class:`reports.cells.Table` and a dict of what its figures and the tests read besides (the metric compared, the
cells by config). The report keeps them as ``parts[table.key] = {"table": table, **extra}``. A figure function takes
the results, every section's parts and the figures folder, and returns ``{format: path}``
(:func:`reports.figures.save`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..cells import Table
from ..data import Results

TableFn = Callable[[Results], tuple[Table, dict]]
DrawFn = Callable[[Results, dict, Path], dict]


@dataclass(frozen=True)
class Figure:
    """One figure: ``key`` is its file name (``figures/<key>.png|svg|pdf``) and its ``data-figure`` on the page,
    ``alt`` its caption and alternative text."""
    key: str
    draw: DrawFn
    alt: str


@dataclass(frozen=True)
class Section:
    """One section of the report page.

    ``grids``: the grids (``ablations/grids/<name>.yaml``) whose rows it reads; ``sources``: the other ``grid``
    values of the results table it reads (rows no grid YAML plans: ``python -m transfer``, ``python -m ablations
    baselines``). ``tables`` and ``figures`` are shown in their order, figures first. ``lead``: shown before the
    other sections (what every result is read against)."""
    name: str
    anchor: str                                 # the page's <h2 id>, the target of links into the report
    title: str
    grids: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    tables: tuple[TableFn, ...] = ()
    figures: tuple[Figure, ...] = ()
    lead: bool = False

    @property
    def reads(self) -> tuple[str, ...]:
        """Every ``grid`` value of the results table the section reads."""
        return self.grids + self.sources

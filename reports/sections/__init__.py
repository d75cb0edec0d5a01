"""The report's sections, registered in one place: :data:`SECTIONS`.

One module per section, each declaring as data (its ``SECTION``, a :class:`~reports.sections.base.Section`) its
name, the grids it reads, its tables and its figures; the code of those tables and figures lives in that module
(shared helpers: ``reports/tables.py``, ``reports/figures.py``, ``reports/cells.py``). The report computes every
section's tables, then every figure, in the order of :data:`SECTIONS`, and shows the sections in
:func:`page_order`.

Adding a grid to the report:

1. its YAML, ``ablations/grids/<name>.yaml`` (the runs);
2. its claims, ``ablations/claims.yaml`` (what is judged);
3. one section module, ``reports/sections/<name>.py``, whose ``SECTION`` names the grid in ``grids`` and lists
   its table and figure functions;
4. its line in :data:`SECTIONS` below (where it appears on the page).

:func:`check` (run before every report is built, and by the tests) refuses, in one error, a grid YAML that no
section reads and a section that names a grid with no YAML. Rows of the results table that no grid YAML plans
(``python -m transfer``, ``python -m ablations baselines``) are declared by their sections' ``sources``.
"""
from __future__ import annotations

from ablations import grid

from ..errors import ReportError
from . import baselines, cost, fig3_mechanisms, figA1_shuffle_bn, reference, table1_momentum, transfer, v2_table1
from .base import Figure, Section

__all__ = ["SECTIONS", "Figure", "Section", "check", "page_order", "result_grids"]

SECTIONS: tuple[Section, ...] = (
    fig3_mechanisms.SECTION,
    table1_momentum.SECTION,
    figA1_shuffle_bn.SECTION,
    v2_table1.SECTION,
    transfer.SECTION,
    cost.SECTION,
    baselines.SECTION,
    reference.SECTION,
)


def page_order(sections: tuple[Section, ...] = SECTIONS) -> tuple[Section, ...]:
    """The sections as the page shows them: the lead ones (what every result is read against) first, then the
    others, each in registry order."""
    return tuple(s for s in sections if s.lead) + tuple(s for s in sections if not s.lead)


def result_grids(sections: tuple[Section, ...] = SECTIONS) -> tuple[str, ...]:
    """Every ``grid`` value of the results table the report reads, once each, in registry order."""
    return tuple(dict.fromkeys(g for s in sections for g in s.reads))


def check(sections: tuple[Section, ...] = SECTIONS, grids: list[str] | None = None) -> None:
    """The sections against the grid YAMLs (``grids``, default ``ablations/grids/*.yaml``): every grid is read by a
    section, every grid a section names has a YAML, no section's ``sources`` is a grid, and no two figures share
    a key (their file names). One :class:`ReportError` naming every mismatch otherwise."""
    grids = grid.grid_names() if grids is None else list(grids)
    named = {g for s in sections for g in s.grids}
    problems = []
    unread = [g for g in grids if g not in named]
    if unread:
        problems.append(f"grid YAML without a report section: {', '.join(unread)} (add reports/sections/<grid>.py "
                        "and its line in reports.sections.SECTIONS)")
    missing = [f"{s.name} -> {g}" for s in sections for g in s.grids if g not in grids]
    if missing:
        problems.append(f"section naming a grid with no YAML in {grid.GRID_DIR}: {', '.join(missing)}")
    as_source = [f"{s.name} -> {g}" for s in sections for g in s.sources if g in grids]
    if as_source:
        problems.append(f"section declaring a grid YAML as a source (name it in grids): {', '.join(as_source)}")
    figs = [f.key for s in sections for f in s.figures]
    if len(set(figs)) < len(figs):
        problems.append(f"figure keys used twice: {', '.join(sorted({k for k in figs if figs.count(k) > 1}))}")
    if problems:
        raise ReportError("report sections do not match the grids: " + "; ".join(problems))

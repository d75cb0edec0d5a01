"""Where table values may lead the report on disk: the one place a path or a link is made from a results table.

A results table is input like any other (a table copied from a colleague, a cluster, a paper's artifact): its
text must not choose where the report writes or what a link opens.

* Folder names from table values (a preset, a preset-dataset-arch unit) go through :func:`unit_dirs`: each
  value becomes a safe slug (``[A-Za-z0-9._-]``, no leading dot, at most :data:`MAX_NAME` characters), two
  values that would share a folder (or a name the report itself writes in ``--out``) are refused rather than
  merged, and every final path is checked to lie directly in ``--out`` (resolved, so a link planted there does
  not lead out).
* A ``run_dir`` becomes a path only through :func:`run_dir_path`: never one with a URL scheme
  (``javascript:``, ``http:``, ``data:``, ...), and only inside the results' tree (:func:`inside`: the results
  table's folder or the runs folder); anything else is shown as text, not linked or read.
* Links are written by :func:`href`: a relative, percent-encoded path, so no link text is read as a scheme.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote

from .errors import ReportError

MAX_NAME = 64
# what the report writes in --out beside the per-preset folders (index.html, ...) and in each report
RESERVED = ("index.html", "report.md", "verdicts.csv", "verdicts.tex", "figures", "tables")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.\-]*:")


def slug(value: str) -> str:
    """``value`` as a folder name: runs of other characters as ``_``, no leading ``.``/``_``/``-``, capped;
    "" when nothing usable is left (``..``, ``/``)."""
    return _UNSAFE.sub("_", str(value)).lstrip("._-")[:MAX_NAME]


def unit_dirs(out_dir: Path, names: list[str]) -> dict[str, Path]:
    """The folder of each unit (preset) name in ``out_dir``; a :class:`ReportError` before anything is written
    when a name gives no usable folder, two names give the same one (compared without case, as on macOS and
    Windows), or a folder would not lie directly in ``out_dir``."""
    out_dir = Path(out_dir)
    root = out_dir.resolve()
    dirs: dict[str, Path] = {}
    taken: dict[str, str] = {}
    for name in names:
        s = slug(name)
        if not s:
            raise ReportError(f"results table: preset {name!r} gives no usable folder name (letters, digits, "
                              f"'.', '_', '-'); rename it in the results table")
        if s.lower() in RESERVED:
            raise ReportError(f"results table: preset {name!r} would be the folder {s!r}, a name the report "
                              f"itself writes in {out_dir}; rename it in the results table")
        if s.lower() in taken:
            raise ReportError(f"results table: presets {taken[s.lower()]!r} and {name!r} would share the folder "
                              f"{s!r} in {out_dir}; rename one of them in the results table")
        taken[s.lower()] = name
        d = out_dir / s
        if d.resolve().parent != root:
            raise ReportError(f"{d} leads out of {out_dir} (a link?); remove it or choose another --out")
        dirs[name] = d
    return dirs


def has_scheme(text: str) -> bool:
    """Whether ``text`` starts like a URL (``javascript:``, ``http:``, ``data:``, ``file:`` ...)."""
    return bool(_SCHEME.match(str(text)))


def inside(path: Path, roots) -> bool:
    """Whether ``path`` (resolved: ``..`` and links followed) lies in one of the folders ``roots``."""
    p = Path(path).resolve()
    return any(p.is_relative_to(Path(r).resolve()) for r in roots)


def run_dir_path(text: str, bases: list[Path], roots: list[Path]) -> Path | None:
    """The run directory a table's ``run_dir`` names: absolute, or relative to the first of ``bases`` where it
    exists (else the first base), and only where it lies in ``roots``; None for a URL or a path outside."""
    if has_scheme(text):
        return None
    p = Path(text)
    if p.is_absolute():
        return p if inside(p, roots) else None
    cands = [(b / p).resolve() for b in bases]
    cands = [c for c in cands if inside(c, roots)]
    for c in cands:
        if c.exists():
            return c
    return cands[0] if cands else None


def href(target: Path, out_dir: Path) -> str:
    """A link from a page in ``out_dir`` to ``target``: relative, percent-encoded (``:``, ``#``, ``?``, spaces,
    quotes and brackets included), so it can only name a file, never a scheme or a fragment."""
    rel = Path(os.path.relpath(Path(target).resolve(), Path(out_dir).resolve())).as_posix()
    return quote(rel, safe="/")

"""Where the suite's files and folders go when the environment says: ``$MOCOBENCH_RUNS`` (the run directories),
``$MOCOBENCH_RESULTS`` (the results table) and ``$MOCOBENCH_SUBMITIT`` (submitit's logs), each read with one
check (:func:`env_path`) at the one place it is read.

A variable naming a file where a folder belongs (or a folder where the table's file belongs), or a path under
an existing file, would otherwise surface much later as a traceback from ``mkdir`` or pandas, after runs were
submitted; here it is one :class:`~pretrain.base.errors.UserError` naming the variable, before any work.
"""
from __future__ import annotations

import os
from pathlib import Path

from pretrain.base.errors import UserError


def env_path(name: str, default: Path, kind: str) -> Path:
    """``$name`` as a path (unset or empty: ``default``), checked to be usable as a ``kind`` (``"dir"`` or
    ``"file"``): an existing path must be of that kind, and the nearest existing folder above it must be a
    folder (not a file). The default is checked too: a file ``runs`` in the checkout is the same mistake."""
    v = os.environ.get(name, "").strip()
    path = Path(v) if v else Path(default)
    where = f"${name}={v}" if v else f"{path} (the default; set ${name} to choose another)"
    if path.exists() or path.is_symlink():
        is_dir = path.is_dir()
        if kind == "dir" and not is_dir:
            raise UserError(f"{where} is not a folder (it should hold the suite's {_WHAT[name]}); point ${name} at "
                            f"a folder or at a path that does not exist yet")
        if kind == "file" and is_dir:
            raise UserError(f"{where} is a folder, expected the {_WHAT[name]} (a CSV file); point ${name} at "
                            f"that file or at a new file")
        return path
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{where}: {parent} is a file, so nothing can be created under it; point ${name} at "
                        f"another path")
    return path


_WHAT = {"MOCOBENCH_RUNS": "run directories", "MOCOBENCH_RESULTS": "results table",
         "MOCOBENCH_SUBMITIT": "submitit logs"}

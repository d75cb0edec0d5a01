"""Make detectron2 importable with today's libraries, on either install route.

Import this module (or call :func:`ensure_detectron2`) before anything from detectron2.

Two routes (see ``transfer/setup_detectron2.sh``):

* official: detectron2 installed from source at a pinned commit, with its compiled ``_C`` ops
  (cluster with internet and CUDA).  Nothing is patched except the numpy/Pillow aliases below.
* pypi-sdist: upstream detectron2 v0.6's Python code from the PyPI sdist ``pb1-detectron2==0.6``,
  unpacked under ``third_party/detectron2-v0.6`` (no C++ sources).  This module puts it on
  ``sys.path`` and provides a stand-in ``detectron2._C`` module with the three functions that
  ``default_setup()`` calls (``get_compiler_version``, ``get_cuda_version``, ``has_cuda``).
  Everything the paper's configs use (Faster/Mask R-CNN C4 and FPN, SyncBN, PascalVOC and COCO
  evaluation with ``use_fast_impl=False``) is pure Python + torchvision ops.  Deformable conv,
  rotated boxes and the fast C++ COCOeval are unavailable on this route.

detectron2 v0.6 uses ``np.str``/``np.int``/``np.float``/``np.bool`` (removed in numpy 1.24) and
``PIL.Image.LINEAR`` (removed in Pillow 10); :func:`apply_shims` restores them as the aliases they
always were (``str``, ``int``, ``float``, ``bool``; ``Image.BILINEAR``).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from pathlib import Path

from pretrain.base.provenance import REPO

#: where ``setup_detectron2.sh`` unpacks the sdist (override with $MOCOBENCH_DETECTRON2_SRC)
SDIST_DIR = REPO / "third_party" / "detectron2-v0.6"


class Detectron2Missing(ImportError):
    """detectron2 is neither installed nor unpacked under third_party/."""


def apply_shims() -> None:
    """Restore the numpy and Pillow aliases detectron2 v0.6 still uses (no-op where they exist)."""
    import numpy as np
    from PIL import Image

    for name, value in (("str", str), ("int", int), ("float", float), ("bool", bool),
                        ("object", object)):
        if name not in np.__dict__:
            setattr(np, name, value)
    if not hasattr(Image, "LINEAR"):
        Image.LINEAR = Image.BILINEAR


def _stand_in_C() -> types.ModuleType:
    """A ``detectron2._C`` with the functions ``collect_env_info`` / ``default_setup`` call.

    Calling any compiled op (deformable conv, rotated boxes, fast COCOeval) raises a clear error.
    """
    mod = types.ModuleType("detectron2._C")
    mod.__doc__ = "mocobench stand-in: detectron2 installed without compiled ops (pypi-sdist route)"
    mod.__file__ = __file__
    mod.MOCOBENCH_STAND_IN = True
    mod.get_compiler_version = lambda: "none (pure-Python detectron2, mocobench stand-in _C)"
    mod.get_cuda_version = lambda: "none"
    mod.has_cuda = lambda: False

    def __getattr__(name):  # module-level getattr (PEP 562)
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(
            f"detectron2._C.{name} is a compiled op, unavailable on the pypi-sdist install route "
            "(install the official detectron2 with CUDA ops: transfer/setup_detectron2.sh --official)")

    mod.__getattr__ = __getattr__
    return mod


def _find_sdist() -> Path | None:
    env = os.environ.get("MOCOBENCH_DETECTRON2_SRC")
    for cand in ([Path(env)] if env else []) + [SDIST_DIR]:
        if (cand / "detectron2" / "__init__.py").is_file():
            return cand
    return None


def ensure_detectron2() -> str:
    """Apply the shims and make ``import detectron2`` work; returns the route in use
    (``"official"`` or ``"pypi-sdist"``).  Raises :class:`Detectron2Missing` otherwise."""
    apply_shims()
    if "detectron2" not in sys.modules and importlib.util.find_spec("detectron2") is None:
        src = _find_sdist()
        if src is None:
            raise Detectron2Missing(
                "detectron2 is not installed: run `make setup-transfer` (transfer/setup_detectron2.sh)")
        sys.path.append(str(src))  # appended: its tools/ and projects/ must not shadow anything
    d2 = importlib.import_module("detectron2")
    if "detectron2._C" in sys.modules:
        return "pypi-sdist" if getattr(sys.modules["detectron2._C"], "MOCOBENCH_STAND_IN", False) \
            else "official"
    try:
        c = importlib.import_module("detectron2._C")     # the import hook's stand-in, where installed
        return "pypi-sdist" if getattr(c, "MOCOBENCH_STAND_IN", False) else "official"
    except ImportError:
        mod = _stand_in_C()
        sys.modules["detectron2._C"] = mod
        d2._C = mod
        return "pypi-sdist"


def detectron2_available() -> bool:
    try:
        ensure_detectron2()
        return True
    except ImportError:
        return False


class _ImportHook:
    """A ``sys.meta_path`` finder that makes a plain ``import detectron2`` work in the venv (installed by
    ``setup_detectron2.sh`` as a ``.pth`` line, so detectron2's own tools and a user's scripts run): on the
    first ``import detectron2`` it applies the aliases (:func:`apply_shims`) and puts the unpacked sdist on
    ``sys.path`` when no detectron2 is installed; ``detectron2._C`` falls back to the stand-in when there is no
    compiled one. It never finds a module itself except that stand-in."""

    def find_spec(self, name, path=None, target=None):
        import importlib.machinery
        if name == "detectron2":
            apply_shims()
            if importlib.machinery.PathFinder.find_spec(name) is None:
                src = _find_sdist()
                if src is not None and str(src) not in sys.path:
                    sys.path.append(str(src))
            return None
        if name == "detectron2._C" and importlib.machinery.PathFinder.find_spec(name, path) is None:
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        return _stand_in_C()

    def exec_module(self, module):
        return None


def install_import_hook() -> None:
    """Register :class:`_ImportHook` first on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _ImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _ImportHook())

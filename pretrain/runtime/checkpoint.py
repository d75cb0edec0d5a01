"""Checkpoints: the suite's one checkpoint reader (:func:`load`: tensors and plain data only, one clear error
for a bad file), what a checkpoint holds (:func:`query_encoder_state`, :func:`checkpoint_config`), and the
random-number-generator state that makes a resumed run bit-identical. Writing goes through
:mod:`pretrain.base.fileio` (atomic); the backbone a checkpoint describes is
:func:`pretrain.models.encoder.load_backbone`.

Every ``.pth`` the suite reads (``--resume``, ``pretrain.lincls``, ``pretrain.knn --checkpoint``,
``pretrain.export``, ``transfer.convert``) goes through :func:`load`, which unpickles with
``torch.load(weights_only=True)``: a pickle can name any Python callable to run while it is read, so a file
that holds anything but tensors, containers and numbers is refused before any of it runs. The only other
types allowed are those our own checkpoints hold: numpy's RNG state (an ``ndarray`` of ``uint32``, in
:func:`rng_state`).
"""
from __future__ import annotations

import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from pretrain.base.errors import UserError
from pretrain.config import Config, from_dict, load_config, with_overrides

FORMAT = "mocobench-v1"

# What np.random.get_state() pickles as besides plain data: the array (rebuilt by numpy's _reconstruct, under
# its numpy 2 name and the numpy 1 name older checkpoints were written with), its dtype and the dtype's class
# (whose state is set when the dtype is rebuilt).
try:
    from numpy._core.multiarray import _reconstruct
except ImportError:                                  # numpy 1
    from numpy.core.multiarray import _reconstruct
SAFE_GLOBALS = [_reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
                type(np.dtype(np.uint32))]

_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL (\S+)")


def rng_state() -> dict:
    s = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def _cpu_bytes(t) -> torch.Tensor:
    """An RNG state as torch wants it: a CPU ByteTensor (a checkpoint loaded with map_location='cuda' would
    hand over CUDA tensors, which torch.set_rng_state refuses)."""
    return torch.as_tensor(t).detach().to(device="cpu", dtype=torch.uint8)


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(_cpu_bytes(s["torch"]))
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    if "cuda" in s and torch.cuda.is_available():
        states = [_cpu_bytes(t) for t in s["cuda"]]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)
        else:                         # another GPU count than when saved: this process's device only
            torch.cuda.set_rng_state(states[min(torch.cuda.current_device(), len(states) - 1)])


def _refusal(p: Path, e: Exception) -> str:
    """The one line for a file ``torch.load(weights_only=True)`` refused or could not read."""
    m = _UNSUPPORTED.search(str(e))
    if m:
        return (f"cannot read checkpoint {p}: it holds a pickled Python object ({m.group(1)}), not only tensors "
                f"and plain data (a module or optimizer saved with torch.save(obj) instead of its state_dict(), "
                f"or a file made to run code when loaded); refused without running it")
    msg = " ".join(str(e).split())
    if "WeightsUnpickler error:" in msg:            # torch's long advice is about loading it anyway: drop it
        msg = msg.split("WeightsUnpickler error:", 1)[1].split(" Check the documentation")[0].strip()
        return f"cannot read checkpoint {p}: not a torch checkpoint, or a corrupt one ({msg[:160]})"
    return f"cannot read checkpoint {p}: {msg[:200]}"


def load(path, map_location="cpu") -> dict:
    """The checkpoint at ``path`` (ours, a lincls per-epoch one, or an official MoCo one): a dict with a
    ``state_dict`` dict. Tensors and plain data only (see the module docstring); anything else, a missing,
    corrupt or foreign file is one UserError."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore")           # torch's warnings about a foreign pickle: the error says it
            ck = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad file for the user
        raise UserError(_refusal(p, e)) from None
    if not isinstance(ck, dict) or not isinstance(ck.get("state_dict"), dict):
        raise UserError(f"{p}: not a MoCo checkpoint (no 'state_dict' dict)")
    return ck


def query_encoder_state(ck: dict, path="checkpoint") -> dict:
    """The query encoder's weights from our checkpoint or an official MoCo one (``module.encoder_q.*``)."""
    out = {}
    for k, v in ck["state_dict"].items():
        k = k[len("module."):] if k.startswith("module.") else k
        if k.startswith("encoder_q."):
            out[k[len("encoder_q."):]] = v
    if not out:
        raise UserError(f"{path}: no query encoder ('encoder_q.*' or 'module.encoder_q.*' keys) in state_dict")
    return out


def checkpoint_config(ck: dict, path, preset: str | None = None, overrides: dict | None = None) -> Config:
    """The config a loaded checkpoint was trained with (ours, and our exports, record it), else ``preset``'s
    (an official MoCo checkpoint has none); ``overrides`` (e.g. a moved ``data`` path, another kNN k) on top."""
    if isinstance(ck.get("config"), dict):
        cfg = from_dict(dict(ck["config"]), str(path))
    elif preset:
        cfg = load_config(preset)
    else:
        raise UserError(f"{path}: no config in the checkpoint (an official MoCo checkpoint?): pass --preset")
    return with_overrides(cfg, overrides) if overrides else cfg

"""Checkpoints: loading one (one clear error for a bad file), its query encoder, and the random-number-generator
state that makes a resumed run bit-identical. Writing goes through ``pretrain.fileio`` (atomic)."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from .errors import UserError

FORMAT = "mocobench-v1"


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


def load(path, map_location="cpu") -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    try:
        ck = torch.load(p, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad file for the user
        raise UserError(f"cannot read checkpoint {p}: {' '.join(str(e).split())[:200]}") from None
    if not isinstance(ck, dict) or "state_dict" not in ck:
        raise UserError(f"{p}: not a MoCo checkpoint (no 'state_dict')")
    return ck


def query_encoder_state(ck: dict, path="checkpoint") -> dict:
    """The query encoder's weights from our checkpoint or an official MoCo one (``module.encoder_q.*``)."""
    out = {}
    for k, v in ck["state_dict"].items():
        k = k[len("module."):] if k.startswith("module.") else k
        if k.startswith("encoder_q."):
            out[k[len("encoder_q."):]] = v
    if not out:
        raise UserError(f"{path}: no query encoder (encoder_q.*) in the checkpoint")
    return out

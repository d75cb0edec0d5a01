"""The linear protocol's settings (:class:`LinclsConfig`, the official ``main_lincls.py`` defaults) and what
makes a result file a result for them (:func:`result_for`). Torch-free: the grid launcher decides from it
whether a run's linear protocol is done, without loading torch."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from pretrain.base.fileio import read_json

#: the linear protocols: main_lincls.py's SGD (the paper's number) and the converged probe (pretrain.eval.probe)
PROTOCOLS = ("sgd", "logreg")
#: the declared grid of the probe's L2 strengths (per-image objective), 10^-6 ... 10^0
LAMBDAS = [10.0 ** e for e in range(-6, 1)]


@dataclass
class ProbeConfig:
    """The converged probe's declared settings (:mod:`pretrain.eval.probe`; recorded with every result). The lambda
    path stops at ``path_tol`` (its validation accuracies agree within 0.1 point with fits to ``tol``, at a
    quarter of the cost); the final fit on all training images goes to ``tol`` (1e-6 or 1e-8 move the accuracy by
    < 0.05 point on tiny's features, at up to twice the iterations)."""
    lambdas: list = field(default_factory=lambda: list(LAMBDAS))
    val_frac: float = 0.2          # share of the training images held out to choose lambda (stratified)
    max_iter: int = 5000           # L-BFGS iterations at most (a fit that reaches it records converged: false)
    tol: float = 1e-5              # the final fit: L-BFGS stops when the projected gradient's max entry is below this
    path_tol: float = 1e-4         # the fits that choose lambda
    seed: int = 0                  # the validation split


def default_protocol(dataset: str) -> str:
    """The linear protocol a grid runs on ``dataset``: the converged probe on fixed-size datasets (features are
    cached, so the convex fit is exact and cheap), main_lincls.py's augmented SGD on ImageFolder (ImageNet: the
    paper's number)."""
    return "sgd" if dataset == "imagefolder" else "logreg"


@dataclass
class LinclsConfig:
    """The official linear-protocol defaults (``protocol`` sgd); ``protocol: logreg`` is the converged probe of
    :mod:`pretrain.eval.probe` on cached features of a fixed-size dataset (the SGD keys do not apply to it)."""
    epochs: int = 100               # sgd only (as lr ... schedule)
    lr: float = 30.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 256                   # total over all processes
    schedule: list = field(default_factory=lambda: [60, 80])
    cache_features: bool | None = None      # None: cache for fixed-size datasets
    seed: int = 0
    protocol: str = "sgd"


def file_stat(path) -> list | None:
    """A file's size and modification time (ns), or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def for_dataset(dataset: str) -> LinclsConfig:
    """The linear protocol's settings a grid and a baseline use on ``dataset`` (:func:`default_protocol`)."""
    return LinclsConfig(protocol=default_protocol(dataset))


def provenance(lc: LinclsConfig, cache: bool, fingerprint: str, ckpt_path, eval_split: str = "test") -> dict:
    """What a result was computed with (read back by :func:`result_for`): the protocol's settings
    (``lincls_config``, ``cache_features`` as run; the probe's ``probe_config``), the images it was scored on
    (``eval_split``), the backbone's fingerprint and the checkpoint file's size and modification time when it
    was read."""
    out = {"lincls_config": {**dataclasses.asdict(lc), "cache_features": bool(cache)}, "eval_split": eval_split,
           "backbone": fingerprint, "checkpoint_stat": file_stat(ckpt_path)}
    if lc.protocol == "logreg":
        out["probe_config"] = dataclasses.asdict(ProbeConfig(seed=lc.seed))
    return out


def is_result(path) -> bool:
    """Whether ``path`` holds a linear-protocol result (a JSON object with ``lincls_acc1``): the only existing
    file a result JSON may replace."""
    d = read_json(path)
    return isinstance(d, dict) and "lincls_acc1" in d


def result_for(path, lc: LinclsConfig | None = None, ckpt_path=None, eval_split: str = "test") -> dict | None:
    """The linear-protocol result at ``path`` if it is one for the protocol asked (``lc``, default the
    official one): it records the settings it ran with and they are ``lc``'s (``cache_features`` None = the
    dataset's default, either), and, with ``ckpt_path``, it was computed from that checkpoint file as it is now
    (the size and modification time recorded when the result read it; a checkpoint since deleted is not
    compared). None otherwise (missing, unreadable, hand-written, another protocol, a checkpoint trained on or
    replaced since, another probe setting or evaluation split): such a file is no result for ``lc`` and the
    protocol is run again."""
    lc = lc or LinclsConfig()
    res = read_json(path)
    if not isinstance(res, dict) or not isinstance(res.get("lincls_acc1"), (int, float)):
        return None
    rec = res.get("lincls_config")
    if not isinstance(rec, dict) or not isinstance(res.get("backbone"), str):
        return None
    for k, v in dataclasses.asdict(lc).items():
        if k == "cache_features" and v is None:
            continue
        if k not in rec or rec[k] != v:
            return None
    if res.get("eval_split", "test") != eval_split:
        return None
    if lc.protocol == "logreg" and res.get("probe_config") != dataclasses.asdict(ProbeConfig(seed=lc.seed)):
        return None
    if ckpt_path is not None and Path(ckpt_path).is_file() and res.get("checkpoint_stat") != file_stat(ckpt_path):
        return None
    return res

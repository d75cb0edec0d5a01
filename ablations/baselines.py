"""``python -m ablations baselines --preset P [--seeds N] [--seed-start S] [--no-lincls]``: the baselines every
result is read against, with the suite's protocols (``pretrain/eval/baselines.py``: kNN and the dataset's linear
protocol, ``pretrain.eval.protocol.for_dataset``), written into the results table.

For each seed S..S+N-1 (the grids' seed range) the network at its random initialisation (kNN + linear protocol),
and once raw pixels (kNN + linear; independent of the seed, recorded as seed S). One row each: grid ``baselines``, column
``baseline`` = random_init | raw_pixels, status done, ``run_id`` a stable 12-hex id of (preset, baseline,
seed, the training config's identity, the kNN and linear settings), ``run_dir`` empty. A finished baseline
row (same run_id, status done, with the linear result where asked) is not computed again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from tqdm import tqdm

from pretrain.base import provenance
from pretrain.base import status as S
from pretrain.base.errors import UserError
from pretrain.config import config_hash, load_config
from pretrain.data.loaders import eval_loaders
from pretrain.eval.baselines import (RANDOM_INIT, RAW_PIXELS, knn_random_init, knn_raw_pixels, linear_random_init,
                                     linear_raw_pixels)
from pretrain.eval.protocol import for_dataset
from pretrain.runtime import distributed as D

from . import results
from .grid import check_seed_start, default_seed_start, default_seeds

GRID = "baselines"
KNN_KEYS = ("knn_k", "knn_t", "knn_feature", "knn_subset", "eval_split")


def baseline_cfg(preset: str, seed: int, sets: dict | None = None):
    return load_config(preset, {**(sets or {}), "seed": int(seed)})


def baseline_id(preset: str, baseline: str, seed: int, cfg, lc) -> str:
    """12 hex digits: (preset, baseline, seed, the run identity of the config (arch, data, subset, ...), the
    kNN settings, the linear protocol's settings)."""
    blob = {"preset": Path(preset).stem, "baseline": baseline, "seed": int(seed), "config": config_hash(cfg, 1),
            "knn": {k: getattr(cfg, k) for k in KNN_KEYS}, "lincls": dataclasses.asdict(lc)}
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]


def plan(preset: str, seeds: int, sets: dict | None = None, seed_start: int = 0) -> list[tuple[str, int, object, str]]:
    """[(baseline, seed, config, run_id)]: random init for seeds seed_start .. seed_start + N - 1, raw pixels
    once (recorded as seed ``seed_start``). Each with the dataset's linear protocol (``for_dataset``)."""
    out = []
    for seed in range(seed_start, seed_start + seeds):
        cfg = baseline_cfg(preset, seed, sets)
        lc = for_dataset(cfg.dataset)
        out.append((RANDOM_INIT, seed, cfg, baseline_id(preset, RANDOM_INIT, seed, cfg, lc)))
    cfg = baseline_cfg(preset, seed_start, sets)
    lc = for_dataset(cfg.dataset)
    out.append((RAW_PIXELS, seed_start, cfg, baseline_id(preset, RAW_PIXELS, seed_start, cfg, lc)))
    return out


def _finished(df, run_id: str) -> dict | None:
    hit = df[(df["grid"].astype(str) == GRID) & (df["run_id"].astype(str) == run_id)]
    if not len(hit):
        return None
    r = hit.iloc[0].to_dict()
    if r.get("status") != S.DONE:
        return None
    return r


def _has(v) -> bool:
    try:
        return v is not None and float(v) == float(v)
    except (TypeError, ValueError):
        return False


def run(preset: str, seeds: int | None = None, lincls: bool = True, sets: dict | None = None,
        results_path=None, progress: bool = True, device: str | None = None,
        seed_start: int | None = None) -> list[dict]:
    """Compute the missing baselines of ``preset`` and upsert their rows; returns every baseline row."""

    seeds = default_seeds(preset) if seeds is None else int(seeds)
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    start = default_seed_start(preset) if seed_start is None else check_seed_start(seed_start)
    todo = plan(preset, seeds, sets, start)
    if todo[0][2].dataset == "imagefolder":
        raise UserError("baselines: imagefolder (ImageNet) is not supported: the raw-pixel baseline and the "
                        "fixed-size linear protocol need a fixed-size dataset")
    df = results.read(results_path)
    sha, host = provenance.git_sha(), provenance.host()
    dev = D.init(device or todo[0][2].device)
    sets_cache: dict = {}
    rows = []
    bar = tqdm(todo, desc=f"baselines @ {preset}", unit="baseline", disable=not progress)
    for baseline, seed, cfg, rid in bar:
        bar.set_postfix_str(f"{baseline} seed {seed}")
        prev = _finished(df, rid)
        if prev is not None and (not lincls or _has(prev.get("lincls_acc1"))):
            rows.append(prev)
            continue
        data_key = json.dumps({k: v for k, v in cfg.to_dict().items() if k != "seed"}, sort_keys=True, default=str)
        if data_key not in sets_cache:
            sets_cache = {data_key: eval_loaders(cfg)}       # one dataset in memory at a time
        data = sets_cache[data_key]
        row = {"grid": GRID, "run_id": rid, "preset": preset, "run_dir": "", "baseline": baseline, "seed": seed,
               "dataset": cfg.dataset, "arch": cfg.arch, "status": S.DONE, "host": host, "git_sha": sha,
               "eval_split": cfg.eval_split, "n_eval": len(data[1][1])}
        if prev is not None and _has(prev.get("knn_acc")):
            row["knn_acc"] = float(prev["knn_acc"])
        elif baseline == RANDOM_INIT:
            row["knn_acc"] = knn_random_init(cfg, dev, data)
        else:
            row["knn_acc"] = knn_raw_pixels(cfg, dev, data)
        if lincls:
            f = linear_random_init if baseline == RANDOM_INIT else linear_raw_pixels
            res = f(cfg, for_dataset(cfg.dataset), device=dev, progress=False, sets=data)
            row["lincls_acc1"], row["lincls_acc5"] = res["lincls_acc1"], res["lincls_acc5"]
            row["lincls_protocol"] = res.get("protocol", "sgd")
        row["finished_at"] = provenance.utc_now()
        results.upsert([row], results_path, key=("grid", "run_id"))
        rows.append(row)
    bar.close()
    return rows


def format_rows(preset: str, rows: list[dict]) -> str:
    lines = [f"baselines @ {preset}: {len(rows)} row(s)"]
    for r in rows:
        lin = f"  lin {float(r['lincls_acc1']):5.1f}%" if _has(r.get("lincls_acc1")) else ""
        lines.append(f"  {r['run_id']}  {r['baseline']:11s} seed {int(float(r['seed']))}  "
                     f"kNN {float(r['knn_acc']):5.1f}%{lin}")
    return "\n".join(lines)

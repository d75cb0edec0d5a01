"""The cost estimate of a grid's runs to do (``ablations run --dry-run``): images to process / images per
second, from finished runs of the same preset and design (:data:`SPEED_KEYS`), else a few steps of
``pretrain.bench``, else finished runs of another design, else "unknown"."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from pretrain.base import status as S
from pretrain.config import FIELD_DEFAULTS, Config, save_yaml

from . import results
from .launcher import REEVAL_NOTE, REPO, Planned

# Training-set sizes (images) for the cost estimate when the config has no subset.
DATASET_SIZES = {"imagefolder": 1281167, "cifar10": 50000, "cifar100": 50000, "stl10": 105000,
                 "fashion_mnist": 60000, "synthetic": 512}
# ImageNet subsets by preset (the dataset is an ImageNet folder either way)
PRESET_SIZES = {"imagenet100": 126689}


# what a run's images/s depends on: a finished run's speed estimates a planned run's only where these agree
# (stride-1 fp32 runs of the first tiny design are 4x slower than the current preset's)
SPEED_KEYS = ("mechanism", "dataset", "arch", "width", "cifar_stem", "stem_stride", "image_size", "in_chans", "mlp",
              "precision", "channels_last", "batch_size", "augment_on", "device")


def speed_key(cfg: dict) -> tuple:
    """The design of a run as far as its images/s goes (:data:`SPEED_KEYS`; a key a config does not hold: its default)."""
    return tuple(cfg.get(k, FIELD_DEFAULTS[k]) for k in SPEED_KEYS)


def finished_speeds(done) -> dict[tuple, list[float]]:
    """images/s of finished rows by :func:`speed_key` of their run directory's config.yaml (rows whose
    directory or config is gone are left out)."""
    out: dict[tuple, list[float]] = {}
    for run_dir, ips in zip(done["run_dir"].astype(str), done["images_per_s"]):
        path = Path(run_dir) / "config.yaml"
        if ips != ips or not path.is_file():               # NaN speed, or no config to tell its design
            continue
        try:
            cfg = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if isinstance(cfg, dict):
            out.setdefault(speed_key(cfg), []).append(float(ips))
    return out


def bench_images_per_s(cfg: Config, steps: int = 5, timeout_s: float = 900) -> float | None:
    """images/s of the training step of the resolved config ``cfg``, measured now with ``python -m
    pretrain.bench`` in its own process (a crash or a hang there cannot take the launcher with it); the config
    goes to it as a complete YAML file (every key, written atomically), not as flags on top of the preset.
    None if it fails."""
    try:
        with tempfile.TemporaryDirectory(prefix="mocobench-bench-") as d:
            path = Path(d) / "config.yaml"
            save_yaml(cfg, path)
            argv = [sys.executable, "-m", "pretrain.bench", "--preset", str(path), "--steps", str(steps),
                    "--rounds", "1", "--json"]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
        return float(json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, IndexError):
        return None


def estimate(planned: list[Planned], preset: str, results_path=None, params: dict | None = None,
             bench: bool = True, benched: dict | None = None, totals: list | None = None) -> list[str]:
    """Estimated cost of the runs to do, from measured images/s: finished rows of the same preset and design
    (:func:`speed_key`), else (``bench``) a few steps of ``pretrain.bench`` per design, else finished rows of
    another design (same mechanism first; the head line says for how many runs), else "unknown" (never a
    made-up 0 h). ``benched``: the caller's design -> images/s measured so far (one bench per design over
    several grids); ``totals``: the caller's list, to which (estimated seconds, runs without an estimate) is
    appended (a total over grids). With ``params["parallel"]`` = n > 1 (local executor) the head line also gives the serial wall / n."""
    params = params or {}
    df = results.read(results_path)
    done = df[(df["preset"].astype(str) == preset) & (df["status"] == S.DONE)]
    ips_all = done["images_per_s"].dropna().astype(float)
    speeds = finished_speeds(done)
    benched = {} if benched is None else benched
    matched = other = 0
    lines, total_s, unknown = [], 0.0, 0
    for p in planned:
        if p.state != S.TO_DO:
            continue
        if p.note.startswith(REEVAL_NOTE):
            lines.append(f"  {p.run_id}  {p.spec.label:60s} {'re-evaluation only':>12s}  ~    0 min (kNN)")
            continue
        c = p.cfg
        key = speed_key(c.to_dict())
        ips = float(pd.Series(speeds[key]).median()) if key in speeds else None
        matched += ips is not None
        if ips is None and bench:
            if key not in benched:
                print(f"measuring images/s of {c.mechanism} with pretrain.bench ...", file=sys.stderr, flush=True)
                benched[key] = bench_images_per_s(c)
            ips = benched[key]
        if ips is None:                       # another design's speed: better than nothing, said in the head line
            same = done[done["mechanism"].astype(str) == c.mechanism]["images_per_s"].dropna().astype(float)
            ips = float(same.median()) if len(same) else (float(ips_all.median()) if len(ips_all) else None)
            other += ips is not None
        n = c.subset or PRESET_SIZES.get(Path(preset).stem) or DATASET_SIZES.get(c.dataset, 0)
        per_epoch = min(n, c.max_steps * c.batch_size) if c.max_steps else n
        images = per_epoch * c.epochs
        if ips:
            s = images / ips
            total_s += s
            lines.append(f"  {p.run_id}  {p.spec.label:60s} {images:>12,d} images  ~{s / 60:7.1f} min")
        else:
            unknown += 1
            lines.append(f"  {p.run_id}  {p.spec.label:60s} {images:>12,d} images  (no measured images/s)")
    devices = max(params.get("gpus_per_node") or 0, 1) * (params.get("nodes") or 1)
    unit = "GPU" if params.get("gpus_per_node") else "job"
    known = sum(p.state == S.TO_DO and not p.note.startswith(REEVAL_NOTE) for p in planned) - unknown
    if unknown and not known:
        head = "estimated pretraining time: unknown"
    else:
        head = (f"estimated pretraining time: {'at least ' if unknown else ''}{total_s / 3600:.2f} h serial wall, "
                f"{total_s * devices / 3600:.2f} {unit}-hours" + parallel_note(total_s, params))
    lines.append(head
                 + (f" ({unknown} run(s) without a measured images/s: "
                    + ("pretrain.bench failed; " if bench else "")
                    + f"run one first, or `python -m pretrain.bench --preset {preset}`)" if unknown else "")
                 + (f" (images/s: finished {preset} runs of the same design for {matched} run(s))" if matched else "")
                 + (f" (images/s measured now: {', '.join(f'{k[0]} {v:.0f}' for k, v in benched.items() if v)})"
                    if benched else "")
                 + (f" (images/s of finished runs of another design for {other} run(s): a rough guess)" if other else "")
                 + " (pretraining only: kNN, linear protocol and process start come on top)")
    if totals is not None:
        totals.append((total_s, unknown))
    return lines


def parallel_note(total_s: float, params: dict) -> str:
    """``", ~X h with n runs at a time"`` for the local executor's ``--parallel n`` > 1, else ``""``."""
    n = params.get("parallel") or 1
    return f", ~{total_s / n / 3600:.2f} h with {n} runs at a time" if n > 1 else ""

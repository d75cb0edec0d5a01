"""The cost estimate of a grid's runs to do (``ablations run --dry-run``): images to process / images per
second, from finished runs of the same preset, else a few steps of ``pretrain.bench``, else "unknown"."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from pretrain.config import Config, save_yaml

from . import results
from .launcher import REEVAL_NOTE, REPO, Planned

# Training-set sizes (images) for the cost estimate when the config has no subset.
DATASET_SIZES = {"imagefolder": 1281167, "cifar10": 50000, "cifar100": 50000, "stl10": 105000,
                 "fashion_mnist": 60000, "synthetic": 512}
# ImageNet subsets by preset (the dataset is an ImageNet folder either way)
PRESET_SIZES = {"imagenet100": 126689}


def bench_images_per_s(cfg: Config, steps: int = 5, timeout_s: float = 900) -> float | None:
    """images/s of the training step of the resolved config ``cfg``, measured now with ``python -m
    pretrain.bench`` in its own process (a crash or a hang there cannot take the launcher with it); the config
    goes to it as a complete YAML file (every key, written atomically), not as flags on top of the preset.
    None if it fails."""
    try:
        with tempfile.TemporaryDirectory(prefix="mocobench-bench-") as d:
            path = Path(d) / "config.yaml"
            save_yaml(cfg, path)
            argv = [sys.executable, "-m", "pretrain.bench", "--preset", str(path), "--steps", str(steps), "--json"]
            out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, cwd=REPO)
        return float(json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]) if out.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError, IndexError):
        return None


def estimate(planned: list[Planned], preset: str, results_path=None, params: dict | None = None,
             bench: bool = True, benched: dict | None = None) -> list[str]:
    """Estimated cost of the runs to do, from measured images/s: finished rows of the same preset (same
    mechanism first), else (``bench``) a few steps of ``pretrain.bench`` per mechanism, else "unknown" (never
    a made-up 0 h). ``benched``: the caller's mechanism -> images/s measured so far (one bench per mechanism
    over several grids)."""
    params = params or {}
    df = results.read(results_path)
    done = df[(df["preset"].astype(str) == preset) & (df["status"] == "done")]
    ips_all = done["images_per_s"].dropna().astype(float)
    benched = {} if benched is None else benched
    lines, total_s, unknown = [], 0.0, 0
    for p in planned:
        if p.state != "todo":
            continue
        if p.note.startswith(REEVAL_NOTE):
            lines.append(f"  {p.run_id}  {p.spec.label:60s} {'re-evaluation only':>12s}  ~    0 min (kNN)")
            continue
        c = p.cfg
        same = done[done["mechanism"].astype(str) == c.mechanism]["images_per_s"].dropna().astype(float)
        ips = float(same.median()) if len(same) else (float(ips_all.median()) if len(ips_all) else None)
        if ips is None and bench:
            if c.mechanism not in benched:
                print(f"measuring images/s of {c.mechanism} with pretrain.bench ...", file=sys.stderr, flush=True)
                benched[c.mechanism] = bench_images_per_s(c)
            ips = benched[c.mechanism]
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
    known = sum(p.state == "todo" and not p.note.startswith(REEVAL_NOTE) for p in planned) - unknown
    if unknown and not known:
        head = "estimated pretraining time: unknown"
    else:
        head = (f"estimated pretraining time: {'at least ' if unknown else ''}{total_s / 3600:.2f} h serial wall, "
                f"{total_s * devices / 3600:.2f} {unit}-hours")
    lines.append(head
                 + (f" ({unknown} run(s) without a measured images/s: "
                    + ("pretrain.bench failed; " if bench else "")
                    + f"run one first, or `python -m pretrain.bench --preset {preset}`)" if unknown else "")
                 + (f" (images/s: median of {len(ips_all)} finished {preset} run(s))" if len(ips_all) else "")
                 + (f" (images/s measured now: {', '.join(f'{k} {v:.0f}' for k, v in benched.items() if v)})"
                    if benched else ""))
    return lines

"""Plan a grid's runs and report their state (``ablations run`` plans, ``ablations status`` reports).

Idempotent: a run is identified by ``pretrain.config.config_hash`` of its resolved config (the seed
included: every seed of the grid's seed axis is its own run) and lives in ``<runs>/<grid>/<preset>/<hash>/``.
Planning looks at each run directory: a finished run (summary.json done, and lincls.json where the grid asks
for the linear protocol) is skipped, a diverged or not_converged one is kept as a result (``--retry-failed``
runs it again), a finished run whose evaluation settings changed is submitted to be re-evaluated from its
checkpoint (not retrained), a run still queued on SLURM or held by a live process is not submitted twice, an
error is retried, anything else is submitted and resumes from its checkpoint. Submitting and waiting:
``ablations/submission.py``; executors: ``ablations/executors.py``; the cost estimate: ``ablations/cost.py``.
"""
from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pretrain.base import rundir
from pretrain.base import status as S
from pretrain.base.errors import UserError
from pretrain.base.fileio import read_json
from pretrain.base.provenance import REPO
from pretrain.base.rundir import RunDir
from pretrain.config import EVAL_KEYS, Config, config_hash, eval_settings
from pretrain.engine.finished import finished_state

from .envpaths import env_path
from .grid import RunSpec, expand, load_grid
from .rows import lincls_result, row_from_run_dir

REEVAL_NOTE = "finished; re-evaluation from its checkpoint (evaluation settings changed)"


def runs_root() -> Path:
    """Where the run directories live: ``$MOCOBENCH_RUNS``, else ``runs/`` in the checkout; a file there (or a
    path under a file) is one error naming the variable (:func:`ablations.envpaths.env_path`)."""
    return env_path("MOCOBENCH_RUNS", REPO / "runs", "dir")


@dataclass
class Planned:
    spec: RunSpec
    run_id: str
    run_dir: Path
    cfg: Config                # the run's resolved config (spec.cfg, resolved once by ablations.grid.expand)
    state: str                 # a result status or a plan state (pretrain.base.status)
    note: str = ""
    row: dict = field(default_factory=dict)
    retry_failed: bool = False     # a diverged / not_converged result to train again (--retry-failed)


def _slurm_active(job_id: str) -> bool:
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                             timeout=10)
        return out.returncode == 0 and bool(out.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return False


def check_seed_args(sets: dict | None, seeds: int | None) -> None:
    """``--set seed=S`` (exactly that seed) and ``--seeds N`` (the axis S0..S0+N-1) exclude each other."""
    if sets and "seed" in sets and seeds is not None:
        raise UserError(f"--set seed={sets['seed']} runs exactly that seed and --seeds {seeds} runs {seeds} seeds "
                        f"from --seed-start: use one of them")


def plan(grid_name: str, preset: str, root: Path | None = None, sets: dict | None = None,
         retry_failed: bool = False, world: int = 1, seeds: int | None = None,
         seed_start: int | None = None) -> tuple[dict, list[Planned]]:
    """The runs of a grid at a preset and the state of each (from its run directory). ``world``: the
    processes each run will have (:func:`launch_world`), part of the run identity. ``seeds``: the seed axis
    (``--seeds``; default: the grid's / the preset's, see ``ablations.grid.resolve_seeds``) from ``seed_start``
    (``--seed-start``; default ``ablations.grid.default_seed_start``); a ``seed`` in
    ``sets`` is exactly that one seed. ``retry_failed``: diverged and not_converged runs are run again."""
    check_seed_args(sets, seeds)
    grid = load_grid(grid_name)
    root = Path(root) if root else runs_root()
    out, evals_of = [], {}
    fixed_seed = sets.get("seed") if sets and "seed" in sets else None
    for spec in expand(grid, preset, seeds=seeds, seed=fixed_seed, sets=sets, seed_start=seed_start):
        cfg = spec.cfg
        rid = config_hash(cfg, world)
        ev = eval_settings(cfg)
        if rid in evals_of and evals_of[rid][0] != ev:
            raise UserError(f"grid {grid['name']}: runs '{evals_of[rid][1]}' and '{spec.label}' train the same "
                            f"run ({rid}) and differ only in evaluation keys ({', '.join(EVAL_KEYS)}): those "
                            f"belong to the whole grid (its 'fixed'), not to a cell")
        evals_of[rid] = (ev, spec.label)
        run_dir = root / grid["name"] / Path(preset).stem / rid
        s = RunDir(run_dir).read_summary()
        st = S.from_summary(s)
        state, note = S.TO_DO, ""
        if st in (S.DIVERGED, S.NOT_CONVERGED) and retry_failed:
            note = f"retrying {st} run"          # its summary is set aside when submitted (a dry run keeps it)
        elif st in S.RESULTS and finished_state(s, cfg, rid) == "reevaluate":
            note = REEVAL_NOTE
        elif st == S.DONE:
            if "lincls" in spec.eval and lincls_result(run_dir, cfg) is None:
                note = "pretrained; linear protocol to do"
            else:
                state = S.DONE
        elif st == S.ERROR:
            # a crash, an out-of-memory, a lost job: no result; run again (resumes from its checkpoint)
            note = f"retrying after error ({s.get('error_kind', S.CRASH)}): {s.get('reason', '')}"[:160]
        elif st in (S.DIVERGED, S.NOT_CONVERGED):
            state, note = st, s.get("reason", "")
        if state == S.TO_DO and not note:
            other = _finished_elsewhere(root, grid["name"], preset, rid, spec.eval, cfg)
            if other is not None:
                # The same resolved config already ran for another grid: one training, one row per grid.
                if finished_state(RunDir(other).read_summary(), cfg, rid) == "reevaluate":
                    run_dir, note = other, f"{REEVAL_NOTE}; run of {other.parent.parent.name}"
                else:
                    run_dir, state, note = other, S.DONE, f"same run as {other.parent.parent.name}"
        if state == S.TO_DO:
            j = read_json(RunDir(run_dir).job)
            holder = rundir.owner(run_dir)
            if holder is not None:
                # a live process trains it (a killed launcher's job, another launch): not trained twice
                state, note = S.RUNNING, f"in use by {holder}: not submitted again"
            elif j and j.get("executor") == "slurm" and _slurm_active(j.get("job_id", "")):
                state, note = S.QUEUED, f"SLURM job {j['job_id']}"
            elif RunDir(run_dir).metrics.exists() and not note:
                n = RunDir(run_dir).epochs_logged()
                note = f"resumes after epoch {n}/{cfg.epochs}"
        p = Planned(spec, rid, run_dir, cfg, state, note,
                    retry_failed=retry_failed and st in (S.DIVERGED, S.NOT_CONVERGED))
        if state in S.RESULTS:
            p.row = row_from_run_dir(grid["name"], preset, rid, run_dir, cfg) or {}
        out.append(p)
    return grid, out


def _finished_elsewhere(root: Path, grid: str, preset: str, rid: str, evals: list, cfg) -> Path | None:
    for d in sorted(root.glob(f"*/{Path(preset).stem}/{rid}")):
        if d.parent.parent.name == grid:
            continue
        if S.from_summary(RunDir(d).read_summary()) == S.DONE and ("lincls" not in evals or lincls_result(d, cfg)):
            return d
    return None


def format_table(grid: dict, preset: str, planned: list[Planned], rows: dict | None = None) -> str:
    rows = rows or {}
    lines = [f"{grid['name']} @ {preset}: {len(planned)} run(s)  [{grid.get('paper', '')}]"]
    for p in planned:
        r = rows.get(p.run_id) or p.row
        state = r.get("status", p.state) if r else p.state
        metric = ""
        if r and r.get("knn_acc") is not None and not _isnan(r.get("knn_acc")):
            metric = f"kNN {float(r['knn_acc']):5.1f}%"
            if r.get("lincls_acc1") is not None and not _isnan(r.get("lincls_acc1")):
                metric += f"  lin {float(r['lincls_acc1']):5.1f}%"
        note = (r.get("reason") if r and state in (S.DIVERGED, S.NOT_CONVERGED) else "") or p.note
        lines.append(f"  {p.run_id}  {state:13s} {p.spec.label:66s} {metric:24s} {note}")
    return "\n".join(lines)


def _isnan(v) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def run_status(grid_name: str, preset: str, root=None, sets=None, world: int = 1, seeds: int | None = None,
               seed_start: int | None = None) -> str:
    grid, planned = plan(grid_name, preset, root, sets, world=world, seeds=seeds, seed_start=seed_start)
    for p in planned:
        n = RunDir(p.run_dir).epochs_logged()
        progress = f"epoch {n}/{p.cfg.epochs}"
        if p.state == S.QUEUED:
            p.state, p.note = (S.RUNNING if n else S.QUEUED), f"{p.note}, {progress}"
        elif p.state == S.TO_DO and n:
            p.state, p.note = S.PARTIAL, f"{progress} (rerun `run` to resume)"
        elif p.state == S.TO_DO and RunDir(p.run_dir).job.exists():
            p.state = S.SUBMITTED
        elif p.state == S.TO_DO:
            p.state = S.PENDING
    counts = {}
    for p in planned:
        counts[p.state] = counts.get(p.state, 0) + 1
    return format_table(grid, preset, planned) + "\n" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))

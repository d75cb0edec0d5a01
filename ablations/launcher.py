"""Plan, submit and collect the runs of a grid with submitit (SLURM job arrays, or local processes).

Idempotent: a run is identified by ``pretrain.config.config_hash`` of its resolved config (the seed
included: every seed of the grid's seed axis is its own run) and lives in ``<runs>/<grid>/<preset>/<hash>/``.
Planning looks at each run directory: a finished run (summary.json done, and lincls.json where the grid asks
for the linear protocol) is skipped, a diverged or not_converged one is kept as a result (``--retry-failed``
runs it again), a finished run whose evaluation settings changed is submitted to be re-evaluated from its
checkpoint (not retrained), a run still queued on SLURM is not submitted twice, an error is retried, anything
else is submitted and resumes from its checkpoint. A finished result is never overwritten by a non-result.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import submitit
from tqdm import tqdm

from pretrain import rundir
from pretrain.rundir import RunDir
from pretrain import status as S
from pretrain.config import read_yaml_mapping
from pretrain.errors import UserError

from . import results
from .grid import RunSpec, expand, load_grid
from pretrain.fileio import atomic_write_json, git_sha, read_json

from .job import GridJob, base_row, record_error, row_from_run_dir

REPO = Path(__file__).resolve().parent.parent
EXECUTORS = ("slurm", "local", "debug", "auto")
# Training-set sizes (images) for the cost estimate when the config has no subset.
DATASET_SIZES = {"imagefolder": 1281167, "cifar10": 50000, "cifar100": 50000, "stl10": 105000,
                 "fashion_mnist": 60000, "synthetic": 512}
# ImageNet subsets by preset (the dataset is an ImageNet folder either way)
PRESET_SIZES = {"imagenet100": 126689}
# SLURM/launch parameters: flag / profile key -> type.
REEVAL_NOTE = "finished; re-evaluation from its checkpoint (evaluation settings changed)"
PARAMS = {"partition": str, "nodes": int, "gpus_per_node": int, "ntasks_per_node": int, "cpus_per_task": int,
          "time": int, "mem_gb": float, "constraint": str, "account": str, "qos": str,
          "array_parallelism": int, "parallel": int, "signal_delay_s": int}


def runs_root() -> Path:
    return Path(os.environ.get("MOCOBENCH_RUNS", REPO / "runs"))


def slurm_answers(timeout_s: float = 10) -> bool:
    """True when a SLURM controller answers ``sinfo`` (the test for ``--executor auto``)."""
    if not shutil.which("sinfo"):
        return False
    conf = os.environ.get("SLURM_CONF")
    if conf and not Path(conf).is_file():
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%a"], capture_output=True, text=True, timeout=timeout_s)
        return out.returncode == 0 and bool(out.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return False


def resolve_executor(kind: str) -> str:
    if kind not in EXECUTORS:
        raise UserError(f"unknown executor {kind!r} (one of {', '.join(EXECUTORS)})")
    if kind == "auto":
        return "slurm" if slurm_answers() else "local"
    if kind == "slurm" and not slurm_answers():
        raise UserError("executor slurm: no SLURM controller answers sinfo (is SLURM_CONF exported? "
                        "`make slurm-up` starts a local one)")
    return kind


def load_profile(path: str | None) -> dict:
    """SLURM parameters from a YAML profile (keys as the flags: partition, gpus_per_node, time, ...)."""
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise UserError(f"profile not found: {p}")
    d = read_yaml_mapping(p, "a profile")
    bad = sorted(set(d) - set(PARAMS))
    if bad:
        raise UserError(f"{p}: unknown profile key(s) {', '.join(bad)} (known: {', '.join(PARAMS)})")
    out = {}
    for k, v in d.items():
        try:
            out[k] = PARAMS[k](v) if v is not None else None
        except (TypeError, ValueError):
            raise UserError(f"{p}: {k} must be {PARAMS[k].__name__}, got {v!r}") from None
    return out


def make_executor(kind: str, folder: Path, params: dict, name: str = "mocobench"):
    """A submitit executor, always chosen explicitly (submitit's auto-detection picks SLURM whenever srun
    is on PATH). One task per GPU: ntasks_per_node defaults to gpus_per_node."""
    gpus = params.get("gpus_per_node") or 0
    tasks = params.get("ntasks_per_node") or max(gpus, 1)
    if kind == "slurm":
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=3)
        p = {"job_name": name, "time": params.get("time") or 120, "nodes": params.get("nodes") or 1,
             "ntasks_per_node": tasks, "cpus_per_task": params.get("cpus_per_task") or 1,
             "signal_delay_s": params.get("signal_delay_s") or 90, "stderr_to_stdout": True}
        if gpus:
            p["gpus_per_node"] = gpus
        for k in ("partition", "constraint", "account", "qos", "array_parallelism"):
            if params.get(k):
                p[k] = params[k]
        if params.get("mem_gb"):
            p["mem"] = f"{int(math.ceil(params['mem_gb'] * 1024))}MB"
        ex.update_parameters(**p)
        return ex
    if kind == "local":
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=3)
        ex.update_parameters(timeout_min=params.get("time") or 120, tasks_per_node=tasks, gpus_per_node=gpus,
                             signal_delay_s=params.get("signal_delay_s") or 30)
        return ex
    if kind == "debug":
        return submitit.DebugExecutor(folder=folder)
    raise UserError(f"unknown executor {kind!r}")


@dataclass
class Planned:
    spec: RunSpec
    run_id: str
    run_dir: Path
    cfg: dict
    state: str                 # done | diverged | not_converged | queued | todo
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


def launch_world(params: dict | None) -> int:
    """Processes of one run under these launch parameters: tasks per node (default: one per GPU) x nodes.
    Part of each run's identity (per-process batch, BN layout)."""
    params = params or {}
    gpus = params.get("gpus_per_node") or 0
    return (params.get("ntasks_per_node") or max(gpus, 1)) * (params.get("nodes") or 1)


def check_seed_args(sets: dict | None, seeds: int | None) -> None:
    """``--set seed=S`` (exactly that seed) and ``--seeds N`` (the axis 0..N-1) exclude each other."""
    if sets and "seed" in sets and seeds is not None:
        raise UserError(f"--set seed={sets['seed']} runs exactly that seed and --seeds {seeds} runs seeds "
                        f"0..{seeds - 1}: use one of them")


def plan(grid_name: str, preset: str, root: Path | None = None, sets: dict | None = None,
         retry_failed: bool = False, world: int = 1, seeds: int | None = None) -> tuple[dict, list[Planned]]:
    """The runs of a grid at a preset and the state of each (from its run directory). ``world``: the
    processes each run will have (:func:`launch_world`), part of the run identity. ``seeds``: the seed axis
    (``--seeds``; default: the grid's / the preset's, see ``ablations.grid.resolve_seeds``); a ``seed`` in
    ``sets`` is exactly that one seed. ``retry_failed``: diverged and not_converged runs are run again."""
    from pretrain.config import EVAL_KEYS, config_hash, eval_settings, load_config
    from pretrain.train import finished_state
    check_seed_args(sets, seeds)
    grid = load_grid(grid_name)
    root = Path(root) if root else runs_root()
    out, evals_of = [], {}
    fixed_seed = sets.get("seed") if sets and "seed" in sets else None
    for spec in expand(grid, preset, seeds=seeds, seed=fixed_seed, sets=sets):
        if sets:
            spec.overrides = {**spec.overrides, **sets}
        cfg = load_config(preset, spec.overrides)
        rid = config_hash(cfg, world)
        ev = eval_settings(cfg)
        if rid in evals_of and evals_of[rid][0] != ev:
            raise UserError(f"grid {grid['name']}: runs '{evals_of[rid][1]}' and '{spec.label}' train the same "
                            f"run ({rid}) and differ only in evaluation keys ({', '.join(EVAL_KEYS)}): those "
                            f"belong to the whole grid (its 'fixed'), not to a cell")
        evals_of[rid] = (ev, spec.label)
        cfg_dict = {**cfg.to_dict(), "lr": cfg.effective_lr}   # the lr used (linear scaling applied)
        run_dir = root / grid["name"] / Path(preset).stem / rid
        s = RunDir(run_dir).read_summary()
        st = S.from_summary(s)
        state, note = "todo", ""
        if st in (S.DIVERGED, S.NOT_CONVERGED) and retry_failed:
            note = f"retrying {st} run"          # its summary is set aside when submitted (a dry run keeps it)
        elif st in S.RESULTS and finished_state(s, cfg, rid) == "reevaluate":
            note = REEVAL_NOTE
        elif st == S.DONE:
            if "lincls" in spec.eval and not RunDir(run_dir).lincls.exists():
                note = "pretrained; linear protocol to do"
            else:
                state = "done"
        elif st == S.ERROR:
            # a crash, an out-of-memory, a lost job: no result; run again (resumes from its checkpoint)
            note = f"retrying after error ({s.get('error_kind', 'crash')}): {s.get('reason', '')}"[:160]
        elif st in (S.DIVERGED, S.NOT_CONVERGED):
            state, note = st, s.get("reason", "")
        if state == "todo" and not note:
            other = _finished_elsewhere(root, grid["name"], preset, rid, spec.eval)
            if other is not None:
                # The same resolved config already ran for another grid: one training, one row per grid.
                if finished_state(RunDir(other).read_summary(), cfg, rid) == "reevaluate":
                    run_dir, note = other, f"{REEVAL_NOTE}; run of {other.parent.parent.name}"
                else:
                    run_dir, state, note = other, "done", f"same run as {other.parent.parent.name}"
        if state == "todo":
            j = read_json(RunDir(run_dir).job)
            holder = rundir.owner(run_dir)
            if holder is not None:
                # a live process trains it (a killed launcher's job, another launch): not trained twice
                state, note = "running", f"in use by {holder}: not submitted again"
            elif j and j.get("executor") == "slurm" and _slurm_active(j.get("job_id", "")):
                state, note = "queued", f"SLURM job {j['job_id']}"
            elif RunDir(run_dir).metrics.exists() and not note:
                n = RunDir(run_dir).epochs_logged()
                note = f"resumes after epoch {n}/{cfg.epochs}"
        p = Planned(spec, rid, run_dir, cfg_dict, state, note,
                    retry_failed=retry_failed and st in (S.DIVERGED, S.NOT_CONVERGED))
        if state in S.RESULTS:
            p.row = row_from_run_dir(grid["name"], preset, rid, run_dir, cfg_dict) or {}
        out.append(p)
    return grid, out


def _finished_elsewhere(root: Path, grid: str, preset: str, rid: str, evals: list) -> Path | None:
    for d in sorted(root.glob(f"*/{Path(preset).stem}/{rid}")):
        if d.parent.parent.name == grid:
            continue
        if S.from_summary(RunDir(d).read_summary()) == S.DONE and ("lincls" not in evals or RunDir(d).lincls.exists()):
            return d
    return None


def bench_images_per_s(preset: str, overrides: dict, steps: int = 5, timeout_s: float = 900) -> float | None:
    """images/s of the training step measured now with ``python -m pretrain.bench`` (None if it fails)."""
    argv = [sys.executable, "-m", "pretrain.bench", "--preset", preset, "--steps", str(steps), "--json"]
    for k, v in overrides.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            argv.append(flag if v else "--no-" + k.replace("_", "-"))
        elif isinstance(v, list):
            argv += [flag, *map(str, v)]
        else:
            argv += [flag, str(v)]
    try:
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
        same = done[done["mechanism"].astype(str) == str(c.get("mechanism"))]["images_per_s"].dropna().astype(float)
        ips = float(same.median()) if len(same) else (float(ips_all.median()) if len(ips_all) else None)
        if ips is None and bench:
            if c["mechanism"] not in benched:
                print(f"measuring images/s of {c['mechanism']} with pretrain.bench ...", file=sys.stderr, flush=True)
                benched[c["mechanism"]] = bench_images_per_s(preset, p.spec.overrides)
            ips = benched[c["mechanism"]]
        n = c.get("subset") or PRESET_SIZES.get(Path(preset).stem) or DATASET_SIZES.get(c.get("dataset"), 0)
        per_epoch = min(n, c["max_steps"] * c["batch_size"]) if c.get("max_steps") else n
        images = per_epoch * c["epochs"]
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


def record_existing(grid: dict, preset: str, planned: list[Planned], results_path=None) -> None:
    """Put finished runs (done, diverged, not_converged) and pending ones into the results table."""
    df = results.read(results_path)
    have = {(str(g), str(r)): st for g, r, st in zip(df["grid"], df["run_id"], df["status"])}
    rows = []
    for p in planned:
        known = have.get((grid["name"], p.run_id))
        if p.state in S.RESULTS and p.row and known != p.state:
            rows.append(p.row)
        elif p.state == "todo":
            rows.append({**base_row(grid["name"], preset, p.run_id, p.run_dir, p.cfg), "status": "pending"})
    if rows:
        results.upsert(rows, results_path, key=("grid", "run_id"))


def submit(grid: dict, preset: str, planned: list[Planned], kind: str, params: dict, folder: Path,
           results_path=None) -> list[list]:
    """Submit the runs to do: on SLURM one job array (``executor.batch``); locally ``parallel`` jobs at a time
    (a laptop has no scheduler: the rest are started by :func:`wait_all` as slots free up).
    Returns ``[planned, job or None, callable, executor]`` per run."""
    todo = [p for p in planned if p.state == "todo"]
    if not todo:
        return []
    results_path = str(results_path or results.default_path())
    sha = git_sha()
    ex = make_executor(kind, folder, params, name=f"{grid['name']}-{Path(preset).stem}")
    out = []
    for p in todo:
        p.run_dir.mkdir(parents=True, exist_ok=True)
        set_aside_failed(p)
        out.append([p, None, GridJob(grid["name"], preset, p.spec.overrides, str(p.run_dir), p.spec.eval,
                                     results_path, sha, p.run_id), ex])
    if kind == "slurm":
        with ex.batch():
            jobs = [ex.submit(h[2]) for h in out]
        for h, j in zip(out, jobs):
            h[1] = j
            _record_job(h[0], kind, j, folder)
    elif kind == "local":
        for h in out[:max(params.get("parallel") or 1, 1)]:
            _start(h, kind, folder)
    else:
        for h in out:
            _start(h, kind, folder)
    return out


def set_aside_failed(p: Planned) -> None:
    """``--retry-failed``: move a diverged / not_converged run's summary.json aside (kept as
    ``summary.<status>.<time>.json``) so that its job trains it again; only at submission, never in a dry run."""
    if not p.retry_failed:
        return
    st = S.from_summary(RunDir(p.run_dir).read_summary())
    if st in (S.DIVERGED, S.NOT_CONVERGED):
        RunDir(p.run_dir).set_aside_summary(st, int(time.time()))


def _start(h: list, kind: str, folder: Path) -> None:
    h[1] = h[3].submit(h[2])
    _record_job(h[0], kind, h[1], folder)


def _record_job(p: Planned, kind: str, job, folder: Path) -> None:
    atomic_write_json(RunDir(p.run_dir).job, {"executor": kind, "job_id": str(job.job_id), "folder": str(folder),
                                               "submitted_at": _now()})


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _job_failed_row(grid: dict, preset: str, p: Planned, reason: str) -> dict:
    """The row of a job that died (killed, out of memory, node failure, ...): status error, not a result;
    the next `ablations run` submits it again and it resumes from its last checkpoint."""
    s = record_error(p.run_dir, p.run_id, reason, "lost")
    return {**base_row(grid["name"], preset, p.run_id, p.run_dir, p.cfg), "status": "error",
            "error_kind": s["error_kind"], "reason": reason[:500], "host": socket.gethostname(),
            "finished_at": _now(), "git_sha": git_sha()}


def _reason(exc: BaseException) -> str:
    """First line of the error (what happened), and its last line (the job's last words) if different."""
    lines = [" ".join(ln.split()) for ln in str(exc).strip().splitlines() if ln.strip() and set(ln.strip()) != {"-"}]
    if not lines:
        return type(exc).__name__
    return lines[0] if len(lines) == 1 else f"{lines[0][:200]} | {lines[-1][:250]}"


def preempt(job) -> None:
    """Preempt a running job (submitit's ``_interrupt``): it checkpoints, is requeued, and resumes.

    submitit's local controller does not forward the preemption signal (SIGUSR2) to its tasks (it dies of
    it), so for the local executor the signal goes to the task processes, as SLURM delivers it to them."""
    if isinstance(job, submitit.LocalJob):
        import signal
        pid = job._process.pid if job._process is not None else None
        kids = []
        if pid:
            for t in Path(f"/proc/{pid}/task").glob("*/children"):
                kids += [int(x) for x in t.read_text().split()]
        if not kids:
            raise RuntimeError(f"local job {job.job_id} has no running task to preempt")
        for k in kids:
            os.kill(k, signal.SIGUSR2)
        return
    job._interrupt()


def wait_all(grid: dict, preset: str, submitted: list, kind: str, params: dict, max_wait_s: float,
             results_path=None, poll_s: float = 2.0, progress: bool = True) -> list[dict]:
    """Wait (at most ``max_wait_s``) for the submitted runs; a job that dies records an error row.
    Returns the final rows. Raises TimeoutError listing the runs still unfinished."""
    deadline = time.monotonic() + max_wait_s
    rows: dict[str, dict] = {}
    bar = tqdm(total=len(submitted), desc=f"{grid['name']} ({kind})", unit="run", disable=not progress,
               file=sys.stderr)

    def collect(p: Planned, job) -> None:
        try:
            row = job.results()[0]          # task 0 = global rank 0 (a DDP job has one result per task)
        except (RuntimeError, OSError, ValueError) as e:
            # the job died (killed, out of memory, node failure: submitit's UncompletedJobError / FailedJobError,
            # RuntimeErrors; the debug executor re-raises the job's own error): that is its result
            row = _job_failed_row(grid, preset, p, f"job {job.job_id}: {_reason(e)}")
            results.upsert([row], results_path, key=("grid", "run_id"))
        rows[p.run_id] = row or row_from_run_dir(grid["name"], preset, p.run_id, p.run_dir, p.cfg) or {}
        bar.update(1)
        bar.set_postfix_str(f"{p.run_id} {rows[p.run_id].get('status', '?')}")

    parallel = max(params.get("parallel") or 1, 1) if kind == "local" else len(submitted)
    pending = list(submitted)
    while pending:
        running = [h for h in pending if h[1] is not None]
        for h in pending:
            if h[1] is None and len(running) < parallel:
                _start(h, kind, Path(h[3].folder))
                running.append(h)
        for h in list(running):
            try:
                finished = h[1].done()
            except (RuntimeError, OSError, ValueError):   # debug executor: done() runs the job; collect() records it
                finished = True
            if finished:
                pending.remove(h)
                collect(h[0], h[1])
        if not pending:
            break
        if time.monotonic() > deadline:
            bar.close()
            if kind == "local":
                for h in pending:
                    if h[1] is not None:
                        h[1].cancel(check=False)
                raise TimeoutError(f"{len(pending)} run(s) unfinished after {max_wait_s:.0f} s (cancelled)")
            raise TimeoutError(f"{len(pending)} run(s) unfinished after {max_wait_s:.0f} s: "
                               + ", ".join(f"{h[0].run_id} (job {h[1].job_id})" for h in pending)
                               + "; they keep running, `python -m ablations status` follows them")
        time.sleep(poll_s)
    bar.close()
    return list(rows.values())


def submitit_folder(kind: str, grid: str, preset: str) -> Path:
    """A fresh folder per submission (``slurmctld -c`` restarts job ids at 1, so ids are not unique)."""
    base = Path(os.environ.get("MOCOBENCH_SUBMITIT", REPO / "submitit_logs"))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    folder = base / grid / Path(preset).stem / f"{kind}-{stamp}"
    return folder / "%j" if kind == "slurm" else folder


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


def run_status(grid_name: str, preset: str, root=None, sets=None, world: int = 1, seeds: int | None = None) -> str:
    grid, planned = plan(grid_name, preset, root, sets, world=world, seeds=seeds)
    for p in planned:
        n = RunDir(p.run_dir).epochs_logged()
        progress = f"epoch {n}/{p.cfg['epochs']}"
        if p.state == "queued":
            p.state, p.note = ("running" if n else "queued"), f"{p.note}, {progress}"
        elif p.state == "todo" and n:
            p.state, p.note = "partial", f"{progress} (rerun `run` to resume)"
        elif p.state == "todo" and RunDir(p.run_dir).job.exists():
            p.state = "submitted"
        elif p.state == "todo":
            p.state = "pending"
    counts = {}
    for p in planned:
        counts[p.state] = counts.get(p.state, 0) + 1
    return format_table(grid, preset, planned) + "\n" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))

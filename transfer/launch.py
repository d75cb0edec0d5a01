"""Submit transfer jobs through submitit: one job per config x checkpoint x trial.

    python -m transfer.launch --executor slurm|local|debug \\
        --configs transfer/configs/pascal_voc_R_50_C4_24k_moco.yaml ... \\
        --weights runs/pretrain/A/checkpoint.pth runs/pretrain/B/checkpoint.pth \\
        --trials 5 [--gpus 8] [--partition P] [--timeout-min 1440] [--dry-run] [--opts KEY VALUE ...]

The paper reports the mean of 5 trials per row (``--trials 5``; trial t runs with ``SEED t``).
Each job runs :func:`transfer.train.run` (which writes its own row to the results table, so
``reports/`` fills the transfer table by itself); a job already ``done`` in the results table is
not submitted again.  On SLURM a job is one node with ``--gpus`` GPUs and one task; detectron2's
``launch()`` starts one process per GPU there (SyncBN across them).  ``local`` runs the jobs as
subprocesses of this machine (and waits), ``debug`` runs them in this process (for tests);
``--gpus 0`` gives CPU jobs.  ``--wait`` makes a SLURM launch wait for its jobs.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from ablations import results as results_table
from ablations.executors import make_executor
from pretrain.base import status as S
from pretrain.base.errors import UserError, cli, report
from pretrain.base.provenance import REPO

from .train import run, run_id


def plan(configs, weights, trials: int, opts=(), eval_only: bool = False):
    """The jobs as dicts (config, weights, trial, run_id)."""
    jobs = []
    for c, w, t in itertools.product(configs, weights, range(trials)):
        jobs.append({"config": str(c), "weights": str(w), "trial": t, "opts": list(opts),
                     "run_id": run_id(c, opts, w, t, eval_only)})
    return jobs


def _job(config, weights, trial, opts, num_gpus, eval_only=False, output=None):
    return run(config, weights, trial, output, opts, num_gpus, eval_only=eval_only)


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m transfer.launch", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--executor", required=True, choices=("slurm", "local", "debug"))
    p.add_argument("--configs", nargs="+", required=True)
    p.add_argument("--weights", nargs="+", required=True)
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--gpus", type=int, default=8, help="GPUs per job (SLURM); 0 = CPU")
    p.add_argument("--cpus-per-gpu", type=int, default=10)
    p.add_argument("--cpus-per-task", type=int, default=0, help="SLURM; default cpus-per-gpu x gpus")
    p.add_argument("--mem-gb", type=int, default=0, help="0: SLURM default")
    p.add_argument("--partition", default=None)
    p.add_argument("--timeout-min", type=int, default=24 * 60)
    p.add_argument("--folder", default=str(REPO / "submitit_logs" / "transfer"), help="submitit logs")
    p.add_argument("--output-root", default=str(REPO / "runs" / "transfer"),
                   help="job j writes OUTPUT_ROOT/<run_id>")
    p.add_argument("--eval-only", action="store_true", help="evaluate the weights, no fine-tuning")
    p.add_argument("--wait", action="store_true", help="slurm: wait for the jobs and print results")
    p.add_argument("--dry-run", action="store_true", help="print the jobs, submit nothing")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[])
    a = p.parse_args(argv)

    for f in a.configs + a.weights:
        if "://" not in f and not Path(f).is_file():
            return report(UserError(f"not found: {f}"))
    if a.trials < 1:
        return report(UserError("--trials must be >= 1"))

    df = results_table.read()
    done = set(df.loc[df["status"] == S.DONE, "run_id"].astype(str))
    jobs = [j for j in plan(a.configs, a.weights, a.trials, a.opts, a.eval_only) if j["run_id"] not in done]
    print(f"{len(jobs)} job(s) to run ({len(a.configs)} config(s) x {len(a.weights)} checkpoint(s) "
          f"x {a.trials} trial(s), already done skipped)")
    for j in jobs:
        print(f"  {j['run_id']}  {Path(j['config']).name}  {j['weights']}  trial {j['trial']}")
    if a.dry_run or not jobs:
        return 0


    folder = Path(a.folder)
    # one node, one task per job: detectron2's launch() starts a process per GPU inside it
    slurm = a.executor == "slurm"
    params = {"time": a.timeout_min, "nodes": 1, "ntasks_per_node": 1, "gpus_per_node": a.gpus if slurm else 0,
              "cpus_per_task": a.cpus_per_task or max(1, a.cpus_per_gpu * a.gpus), "partition": a.partition,
              "mem_gb": a.mem_gb or None}
    ex = make_executor(a.executor, folder / "%j" if slurm else folder, params, name="mocobench-transfer")
    num_gpus = a.gpus if a.executor == "slurm" else None
    submitted = [ex.submit(_job, j["config"], j["weights"], j["trial"], j["opts"], num_gpus,
                           a.eval_only, str(Path(a.output_root) / j["run_id"]))
                 for j in jobs]
    if a.executor == "slurm":
        print("submitted: " + " ".join(str(s.job_id) for s in submitted))
        if not a.wait:
            return 0
    failed = 0
    for s in submitted:
        try:
            row = s.result()
            print(f"{row['run_id']}: {row['status']} AP50={row.get('AP50')} AP={row.get('AP')}")
            failed += row["status"] != S.DONE
        except Exception as e:  # the job's row says 'error' with the reason
            failed += 1
            print(f"job {s.job_id} failed: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m ablations``: run the papers' ablation grids with submitit, and follow them.

  python -m ablations run GRID --preset tiny --executor local|slurm|debug|auto [--dry-run] [--seeds N]
         [--partition P --gpus-per-node G --cpus-per-task C --time MIN --mem-gb M --constraint C
          --account A --qos Q --array-parallelism N | --profile FILE.yaml] [--set KEY=VALUE ...]
  python -m ablations status GRID --preset tiny [--seeds N]
  python -m ablations baselines --preset tiny [--seeds N] [--no-lincls]
  python -m ablations list

Seeds are a grid axis: every cell runs with seeds S..S+N-1 (N: ``--seeds`` > the grid's preset section > the
grid's ``seeds:`` > the preset's default: tiny 6, cifar10 3, others 1; S: ``--seed-start`` > the preset's, tiny
1000, others 0); ``--set seed=S`` runs exactly seed S.
``baselines`` writes the random-init (per seed) and raw-pixel baselines (kNN and linear protocol) into the
results table (grid "baselines").

GRID is a name under ablations/grids/ (fig3_mechanisms, table1_momentum, figA1_shuffle_bn, v2_table1),
``all``, or a path to a grid YAML file. Results go to the results table ($MOCOBENCH_RESULTS or
results/results.csv), run directories to $MOCOBENCH_RUNS or runs/<grid>/<preset>/<config hash>/.
"""
from __future__ import annotations

import argparse
import sys

import yaml

from pretrain.base import status as S
from pretrain.base.errors import UserError, cli, report
from pretrain.config import load_config

from . import baselines as B
from . import cost
from . import executors as X
from . import launcher as L
from . import results
from . import submission as SUB
from .executors import EXECUTORS, PARAMS
from .grid import grid_names, load_grid


class _Parser(argparse.ArgumentParser):
    """argparse with the suite's one error line: a bad flag or value is ``error: ...`` and exit code 2 (not
    argparse's usage block)."""

    def error(self, message):
        sys.exit(report(UserError(f"{self.prog}: {message}")))


def _kv(s: str):
    """``--set KEY=VALUE``: VALUE read as YAML (``0.9``, ``[120, 160]``, ``off``); malformed YAML is refused."""
    if "=" not in s:
        raise argparse.ArgumentTypeError(f"--set expects KEY=VALUE, got {s!r}")
    k, v = s.split("=", 1)
    try:
        return k.strip(), yaml.safe_load(v)
    except yaml.YAMLError as e:
        what = " ".join(str(getattr(e, "problem", None) or e).split())
        raise argparse.ArgumentTypeError(f"--set {k.strip()}: {v!r} is not a YAML value ({what}); quote it or "
                                         f"close its brackets") from None


def _minutes(s: str) -> float:
    """``--max-wait-min``: a number of minutes > 0 (``inf``: no bound)."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of minutes, got {s!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 minutes, got {s}")
    return v


def parse(argv=None):
    p = _Parser(prog="python -m ablations", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="submit the runs of a grid that are not finished, and wait for them")
    s = sub.add_parser("status", help="progress of a grid's runs")
    sub.add_parser("list", help="the grids and their presets")
    b = sub.add_parser("baselines", help="random-init and raw-pixel baselines (kNN, linear) into the results table")
    b.add_argument("--preset", default="tiny", help="pretrainer preset (default: tiny)")
    b.add_argument("--seeds", type=int, default=None,
                   help="random init of seeds S..S+N-1 (default: the preset's seeds, tiny 6, cifar10 3, else 1)")
    b.add_argument("--seed-start", type=int, default=None,
                   help="the first seed (default: the preset's, tiny 1000; design pilots use 100-199)")
    b.add_argument("--no-lincls", action="store_true", help="kNN only (no linear protocol)")
    b.add_argument("--set", dest="sets", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="config field set for the baselines (e.g. data=/datasets/cifar)")
    for q in (r, s):
        q.add_argument("grid", help="grid name, 'all', or a grid YAML file")
        q.add_argument("--preset", default="tiny", help="pretrainer preset (default: tiny)")
        q.add_argument("--set", dest="sets", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                       help="config field set for every run (e.g. data=/datasets/imagenet)")
        q.add_argument("--runs-dir", default=None, help="root of the run directories (default: runs/)")
        q.add_argument("--seeds", type=int, default=None,
                       help="run every cell with seeds S..S+N-1 (default: the grid's, else tiny 6, cifar10 3, "
                            "others 1); not with --set seed=S")
        q.add_argument("--seed-start", type=int, default=None,
                       help="S, the first seed (default: the preset's, tiny 1000: seeds no design decision saw; "
                            "design pilots use 100-199, the first tiny set 0-6)")
    r.add_argument("--executor", required=True, choices=EXECUTORS,
                   help="always explicit; auto = slurm if a cluster answers sinfo, else local")
    r.add_argument("--dry-run", action="store_true", help="print the runs and the estimated cost; submit nothing")
    r.add_argument("--no-bench", dest="bench", action="store_false",
                   help="--dry-run: no pretrain.bench measurement where no finished run gives images/s (the "
                        "estimate then says unknown)")
    r.add_argument("--retry-failed", action="store_true",
                   help="run diverged and not_converged runs again (error runs are always retried)")
    r.add_argument("--no-wait", action="store_true", help="slurm: submit and return (follow with `status`)")
    r.add_argument("--max-wait-min", type=_minutes, default=24 * 60, help="bound on the wait (default 24 h)")
    helps = {"time": "minutes per job (requeued on timeout)", "parallel": "local executor: runs at a time (default 1)",
             "ntasks_per_node": "default: gpus-per-node (one task per GPU, DDP)"}
    for q in (r, s):     # status needs them too: the processes per run are part of each run's identity
        q.add_argument("--profile", default=None, help="YAML file of SLURM parameters (keys as the flags below)")
        g = q.add_argument_group("SLURM / launch parameters (override the profile)")
        for k, t in PARAMS.items():
            g.add_argument("--" + k.replace("_", "-"), dest=k, type=t, default=None, help=helps.get(k))
    return p.parse_args(argv)


@cli
def main(argv=None) -> int:
    args = parse(argv)
    try:
        if args.cmd == "list":
            for n in grid_names():
                g = load_grid(n)
                print(f"{n:20s} {g.get('paper', ''):45s} presets: {', '.join(g['presets'])}")
            return 0
        if args.cmd == "baselines":
            if any(k == "seed" for k, _ in args.sets):
                raise UserError("baselines: use --seeds N and --seed-start S (seeds S..S+N-1), not --set seed=S")
            if load_config(args.preset, dict(args.sets) or None).dataset == "imagefolder":
                # `make reproduce-table PRESET=imagenet` goes on to the report
                print(f"baselines: skipped for {args.preset} (imagefolder): the raw-pixel baseline and the "
                      f"fixed-size linear protocol need a fixed-size dataset; `python -m pretrain.knn --preset "
                      f"{args.preset}` gives the random-init kNN", file=sys.stderr)
                return 0
            rows = B.run(args.preset, args.seeds, lincls=not args.no_lincls, sets=dict(args.sets) or None,
                         seed_start=args.seed_start)
            print(B.format_rows(args.preset, rows))
            return 0
        grids = grid_names() if args.grid == "all" else [args.grid]
        sets = dict(args.sets) or None
        L.check_seed_args(sets, args.seeds)
        params = X.load_profile(args.profile)
        params.update({k: getattr(args, k) for k in X.PARAMS if getattr(args, k) is not None})
        X.check_params(params)
        world = X.launch_world(params)
        if args.cmd == "status":
            for gname in grids:
                print(L.run_status(gname, args.preset, args.runs_dir, sets, world=world, seeds=args.seeds,
                                   seed_start=args.seed_start))
            return 0
        kind = X.resolve_executor(args.executor) if not args.dry_run else args.executor
        if not args.dry_run:
            results.check_writable()        # before any run: a table that cannot be written loses results
            X.submitit_base()                # and a log folder that cannot be made ($MOCOBENCH_SUBMITIT)
        rc, planned_ids, benched, totals = 0, set(), {}, []
        for gname in grids:
            grid, planned = L.plan(gname, args.preset, args.runs_dir, sets, retry_failed=args.retry_failed,
                                   world=world, seeds=args.seeds, seed_start=args.seed_start)
            if args.dry_run:          # `all`: a config shared with an earlier grid is trained once
                for p in planned:
                    if p.state == S.TO_DO and p.run_id in planned_ids:
                        p.state, p.note = S.SHARED, "same config as an earlier grid: trained once"
                    planned_ids.add(p.run_id)
            print(L.format_table(grid, args.preset, planned))
            todo = sum(p.state == S.TO_DO for p in planned)
            if args.dry_run:
                print("\n".join(cost.estimate(planned, args.preset, params=params, bench=args.bench, benched=benched,
                                               totals=totals)))
                continue
            SUB.record_existing(grid, args.preset, planned)
            if not todo:
                print(f"{grid['name']}: nothing to submit")
                continue
            folder = X.submitit_folder(kind, grid["name"], args.preset)
            submitted = SUB.submit(grid, args.preset, planned, kind, params, folder)
            print(f"{grid['name']}: submitted {len(submitted)} run(s) with the {kind} executor "
                  f"(logs: {str(folder).replace('/%j', '')})", flush=True)
            if args.no_wait and kind == "slurm":
                continue
            try:
                rows = SUB.wait_all(grid, args.preset, submitted, kind, params, args.max_wait_min * 60)
            except TimeoutError as e:
                report(e)
                rc = 1
                continue
            print(L.format_table(grid, args.preset, planned, {r.get("run_id"): r for r in rows if r}))
            diverged = sum(r.get("status") == S.DIVERGED for r in rows)
            stuck = sum(r.get("status") == S.NOT_CONVERGED for r in rows)
            errors = sum(r.get("status") == S.ERROR for r in rows)
            print(f"{grid['name']}: {len(rows) - diverged - stuck - errors} done, {diverged} diverged, {stuck} "
                  f"not_converged (results, with their reasons), {errors} error(s) (no result: rerun to retry "
                  f"them)")
            rc = rc or (1 if errors else 0)
        if args.dry_run and len(totals) > 1:
            t, unknown = sum(s for s, _ in totals), sum(u for _, u in totals)
            if unknown and not t:
                print(f"all {len(totals)} grids: estimated pretraining time unknown ({unknown} run(s) without a "
                      f"measured images/s)")
            else:
                print(f"all {len(totals)} grids: estimated pretraining time {'at least ' if unknown else ''}"
                      f"{t / 3600:.2f} h serial wall" + cost.parallel_note(t, params)
                      + (f" ({unknown} run(s) without a measured images/s)" if unknown else ""))
        return rc
    except UserError as e:
        return report(e)
    except KeyboardInterrupt as e:
        # submission.Interrupted says what became of each run; a Ctrl-C anywhere else interrupted no job
        print(f"interrupted: {e}" if str(e) else "interrupted: finished runs are kept; rerun to continue the others",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""``python -m reports [--results CSV] [--claims YAML] [--exploratory CSV] [--out DIR]``: build the report.

With no results table yet (``make report`` before any run) every claim is
"not run" and the command still succeeds; an unreadable table, or a
``--results`` path that does not exist, is one error line and exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pretrain.base.errors import cli, report

from .build import build
from .errors import ReportError


@cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reports", description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=None,
                    help="results table CSV (default: $MOCOBENCH_RESULTS or results/results.csv)")
    ap.add_argument("--claims", default=None,
                    help="claims file (default: ablations/claims.yaml, version 2; ablations/claims_v1.yaml gives "
                         "the committed reference's verdicts)")
    ap.add_argument("--exploratory", default=None, metavar="CSV",
                    help="an exploratory set's results table (e.g. the design-seed set), judged by the same claims "
                         "and shown beside each verdict")
    ap.add_argument("--out", default=None, help="output folder (default: reports/out)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.results is not None and not Path(args.results).is_file():
        return report(ReportError(f"results table {args.results} does not exist (or is not a file)"))
    if args.claims is not None and not Path(args.claims).is_file():
        return report(ReportError(f"claims file {args.claims} does not exist (or is not a file)"))
    if args.exploratory is not None and not Path(args.exploratory).is_file():
        return report(ReportError(f"exploratory results table {args.exploratory} does not exist (or is not a file)"))
    out = Path(args.out) if args.out else Path(__file__).resolve().parent / "out"
    r = build(args.results, out, progress=not args.quiet, claims_path=args.claims, exploratory_path=args.exploratory)
    print(r["summary"])
    print(r["claims"]["line"])
    for v in r["verdicts"]:
        note = f" ({'; '.join(v.notes)})" if v.notes else ""
        why = f" — {v.reason}" if v.reason else ""
        where = f"{v.unit_name}: " if v.unit_name and "presets" in r else ""
        side = f"  [exploratory: {v.exploratory.status}]" if v.exploratory is not None else ""
        print(f"  [{v.status:>12}] {where}{v.claim}: {v.effect}{why}{note}{side}")
    print(f"report: {r['html']}  {r['markdown']}  figures: {out / 'figures'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A finished set as a committed reference: ``python scripts/make_reference.py --results results/results.csv
--out reports/reference/tiny [--exploratory reports/reference/tiny-v1/results.csv]``.

Writes ``OUT/results.csv`` (the results table with every ``run_dir`` made relative to the repository, so no path
of the machine that ran it is committed; error rows are refused: a reference holds results only) and
``OUT/verdicts.csv`` (what ``python -m reports`` gives for it under the current claims; with ``--exploratory``,
also each claim's outcome on that exploratory set, as ``python -m reports --exploratory`` writes it). The README
beside them (how, where, when, the code's commit, claims version, seeds, wall time) is written by hand from the
run's log.
Nothing is written when the table has an error row, rows of several presets or commits, or when OUT/results.csv
would be the input.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ablations import results
from pretrain.base import status as S
from pretrain.base.errors import UserError, cli
from pretrain.base.fileio import atomic_write_text, refuse_overwrite
from reports.build import build

REPO = Path(__file__).resolve().parents[1]


def relative_run_dirs(df):
    """``run_dir`` relative to the repository (``runs/<grid>/<preset>/<run id>``); one outside it is an error."""
    def rel(v):
        if not isinstance(v, str) or not v:
            return v
        p = Path(v)
        if not p.is_absolute():
            return v
        try:
            return str(p.resolve().relative_to(REPO))
        except ValueError:
            raise UserError(f"run_dir {v} lies outside the repository {REPO}: a reference names run directories "
                            f"under runs/") from None
    out = df.copy()
    out["run_dir"] = out["run_dir"].map(rel)
    return out


@cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python scripts/make_reference.py", description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, help="the finished set's results table")
    ap.add_argument("--out", required=True, help="the reference folder (e.g. reports/reference/tiny)")
    ap.add_argument("--exploratory", default=None, metavar="CSV",
                    help="an exploratory set's results table, judged by the same claims beside each verdict")
    args = ap.parse_args(argv)
    src, out = Path(args.results), Path(args.out)
    for p in [src] + ([Path(args.exploratory)] if args.exploratory else []):
        if not p.is_file():
            raise UserError(f"results table {p} does not exist (or is not a file)")
    refuse_overwrite([out / "results.csv", out / "verdicts.csv"], [src], what="reference file")
    df = results.read(src)
    bad = sorted(set(df["status"]) - set(S.RESULTS))
    if bad:
        raise UserError(f"{src}: rows with status {', '.join(bad)} (no result): finish or retry them first "
                        f"(make reproduce-table resumes)")
    if df["preset"].nunique() != 1:
        raise UserError(f"{src}: rows of several presets ({', '.join(sorted(df['preset'].astype(str).unique()))})")
    trained = df[df["grid"] != "baselines"]
    if trained["git_sha"].nunique() != 1:
        raise UserError(f"{src}: runs of several commits ({', '.join(sorted(trained['git_sha'].astype(str).unique()))})"
                        f": a reference comes from one commit")
    df = relative_run_dirs(df)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "results.csv"
        table.write_text(df.to_csv(index=False))
        build(table, Path(tmp) / "report", progress=False, exploratory_path=args.exploratory)
        verdicts = (Path(tmp) / "report" / "verdicts.csv").read_text()
    atomic_write_text(out / "results.csv", df.to_csv(index=False))
    atomic_write_text(out / "verdicts.csv", verdicts)
    print(f"{out}: results.csv ({len(df)} rows, commit {trained['git_sha'].iloc[0]}), verdicts.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())

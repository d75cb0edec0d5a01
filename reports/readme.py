"""``python -m reports.readme FILE.md [--check]``: the verdict tables a Markdown file quotes, regenerated from
the ``verdicts.csv`` each one names, so a README's table is never typed by hand.

A block is ``<!-- verdicts: PATH -->`` ... ``<!-- /verdicts -->``; PATH (relative to the repository root) is a
``verdicts.csv`` written by ``python -m reports``. The block's table: claim | verdict (with the reason where a
claim is not judgeable) | effect with its 95 % CI | seeds, and the exploratory set's outcome where the report was
built with one (``--exploratory``). ``--check`` changes nothing and exits 1 when a block is not what its file
gives (the test suite runs it on README.md).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from pretrain.base.errors import cli, report
from pretrain.base.fileio import atomic_write_text
from pretrain.base.provenance import REPO

from .errors import ReportError
from .render import md_escape

BLOCK = re.compile(r"(<!-- verdicts: (?P<path>[^ ]+) -->\n)(?P<body>.*?)(<!-- /verdicts -->)", re.S)


def verdict_table(verdicts_csv: Path) -> str:
    """The Markdown table of one ``verdicts.csv`` (one row per claim, in the file's order)."""
    try:
        df = pd.read_csv(verdicts_csv, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ReportError(f"{verdicts_csv}: cannot read the verdicts ({e})") from None
    need = {"claim", "verdict", "effect_95ci", "seeds"}
    if not need <= set(df.columns):
        raise ReportError(f"{verdicts_csv}: not a verdicts.csv of python -m reports (missing "
                          f"{', '.join(sorted(need - set(df.columns)))})")
    side = "exploratory_verdict" in df.columns
    cols = ["claim", "verdict", "effect, 95 % CI", "seeds"] + (["exploratory set (same rules)"] if side else [])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        verdict = f"**{md_escape(r['verdict'])}**"
        if r.get("reason", ""):
            verdict += f" ({md_escape(r['reason'])})"
        row = [md_escape(r["claim"]), verdict, md_escape(r["effect_95ci"]), md_escape(r["seeds"])]
        if side:
            row.append(f"{md_escape(r['exploratory_verdict'])}: {md_escape(r['exploratory_effect_95ci'])}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def render(text: str, root: Path = REPO) -> str:
    """``text`` with every verdict block's table regenerated from the file it names."""
    def one(m: re.Match) -> str:
        return m.group(1) + verdict_table(root / m.group("path")) + m.group(4)
    return BLOCK.sub(one, text)


def blocks(text: str) -> list[str]:
    """The verdicts.csv paths the blocks of ``text`` name."""
    return [m.group("path") for m in BLOCK.finditer(text)]


@cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reports.readme", description=__doc__.splitlines()[0])
    ap.add_argument("file", help="a Markdown file with <!-- verdicts: PATH --> ... <!-- /verdicts --> blocks")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 when a block is stale")
    args = ap.parse_args(argv)
    path = Path(args.file)
    if not path.is_file():
        return report(ReportError(f"{path} does not exist (or is not a file)"))
    text = path.read_text()
    if not blocks(text):
        return report(ReportError(f"{path}: no <!-- verdicts: PATH --> ... <!-- /verdicts --> block"))
    new = render(text)
    if args.check:
        if new != text:
            print(f"{path}: a verdict table differs from its verdicts.csv; run python -m reports.readme {path}",
                  file=sys.stderr)
            return 1
        return 0
    if new != text:
        atomic_write_text(path, new)
    print(f"{path}: {len(blocks(text))} verdict table(s) from " + ", ".join(blocks(text)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

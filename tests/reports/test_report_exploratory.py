"""The exploratory set beside the confirmatory one (the same claims judged on both, per claim side by side), and
the README's verdict tables generated from a verdicts.csv (reports.readme), never typed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from conftest import ROOT
from reports import readme
from reports.__main__ import main as report_main
from reports.build import VERDICT_CSV_EXPLORATORY, VERDICT_CSV_V2

REF = ROOT / "reports" / "reference" / "tiny-v1"


def test_exploratory_outcome_beside_each_verdict(tmp_path):
    """The same set as both: every claim's exploratory outcome and effect equal its own, in the CSV, the Markdown
    and the page; without --exploratory the CSV keeps the v2 columns exactly."""
    out = tmp_path / "side"
    assert report_main(["--results", str(REF / "results.csv"), "--exploratory", str(REF / "results.csv"),
                        "--out", str(out), "--quiet"]) == 0
    v = pd.read_csv(out / "verdicts.csv", dtype=str, keep_default_na=False)
    assert list(v.columns) == VERDICT_CSV_V2 + VERDICT_CSV_EXPLORATORY
    assert (v["exploratory_verdict"] == v["verdict"]).all() and (v["exploratory_effect_95ci"] == v["effect_95ci"]).all()
    assert set(v["verdict"]) >= {"reproduced", "not judgeable", "not run"}      # a real mix, not one outcome
    md = (out / "report.md").read_text()
    assert "exploratory set (same rules)" in md and "Beside each verdict" in md
    page = (out / "index.html").read_text()
    assert page.count("data-exploratory=") == len(v)
    plain = tmp_path / "plain"
    assert report_main(["--results", str(REF / "results.csv"), "--out", str(plain), "--quiet"]) == 0
    p = pd.read_csv(plain / "verdicts.csv", dtype=str, keep_default_na=False)
    assert list(p.columns) == VERDICT_CSV_V2 and "exploratory set" not in (plain / "report.md").read_text()
    assert (p["verdict"] == v["verdict"]).all()


def test_exploratory_table_missing_is_one_error_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "reports", "--results", str(REF / "results.csv"), "--exploratory",
                        str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "nope.csv" in r.stderr
    assert not (tmp_path / "o").exists()


def test_readme_verdict_block_is_generated_and_checked(tmp_path):
    """A block names its verdicts.csv; --check fails on a hand-edited table and passes once regenerated."""
    vcsv = tmp_path / "verdicts.csv"
    vcsv.write_text((REF / "verdicts.csv").read_text())
    md = tmp_path / "README.md"
    md.write_text(f"intro\n<!-- verdicts: {vcsv} -->\n| stale |\n<!-- /verdicts -->\nafter\n")
    env_cmd = [sys.executable, "-m", "reports.readme", str(md)]
    r = subprocess.run(env_cmd + ["--check"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "differs" in r.stderr
    assert subprocess.run(env_cmd, cwd=ROOT, capture_output=True, text=True, timeout=120).returncode == 0
    text = md.read_text()
    want = pd.read_csv(vcsv, dtype=str, keep_default_na=False)
    assert text.startswith("intro\n") and text.endswith("<!-- /verdicts -->\nafter\n") and "| stale |" not in text
    rows = [l for l in text.splitlines() if l.startswith("| ") and not l.startswith("| claim |")]
    assert len(rows) == len(want)
    for line, (_, w) in zip(rows, want.iterrows()):
        assert f"**{w['verdict']}**" in line and line.split(" | ")[-1].rstrip(" |") == w["seeds"]
    assert subprocess.run(env_cmd + ["--check"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120).returncode == 0
    # the same table as the library gives
    assert readme.verdict_table(vcsv) in text


def test_readme_tool_bad_input_is_one_error_line(tmp_path):
    md = tmp_path / "R.md"
    md.write_text("no block here\n")
    for argv, msg in (([str(tmp_path / "missing.md")], "does not exist"), ([str(md)], "no <!-- verdicts")):
        r = subprocess.run([sys.executable, "-m", "reports.readme", *argv], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and msg in r.stderr, r.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    md.write_text(f"<!-- verdicts: {bad} -->\n<!-- /verdicts -->\n")
    r = subprocess.run([sys.executable, "-m", "reports.readme", str(md)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "not a verdicts.csv" in r.stderr and r.stderr.count("\n") == 1
    assert md.read_text() == f"<!-- verdicts: {bad} -->\n<!-- /verdicts -->\n"        # nothing half-written

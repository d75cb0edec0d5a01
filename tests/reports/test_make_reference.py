"""scripts/make_reference.py: a finished set becomes a committed reference (results with relative run
directories, the verdicts the report gives); error rows, several commits, or an output that is the input are
refused with one line and nothing written."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd

from conftest import ROOT
from reports import claims, data

V1 = ROOT / "reports" / "reference" / "tiny-v1" / "results.csv"
SCRIPT = [sys.executable, str(ROOT / "scripts" / "make_reference.py")]


def _run(*argv):
    return subprocess.run(SCRIPT + [str(a) for a in argv], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_reference_from_a_table_with_absolute_run_dirs(tmp_path):
    df = pd.read_csv(V1)
    has = df["run_dir"].notna()
    df.loc[has, "run_dir"] = [str(ROOT / p) for p in df.loc[has, "run_dir"]]     # as make reproduce-table writes
    src = tmp_path / "results.csv"
    df.to_csv(src, index=False)
    r = _run("--results", src, "--out", tmp_path / "ref")
    assert r.returncode == 0, r.stderr
    got = pd.read_csv(tmp_path / "ref" / "results.csv")
    assert not got["run_dir"].dropna().str.startswith("/").any()
    assert sorted(got["run_dir"].dropna()) == sorted(pd.read_csv(V1)["run_dir"].dropna())
    v = pd.read_csv(tmp_path / "ref" / "verdicts.csv")
    (name, unit), = data.load_results(tmp_path / "ref" / "results.csv").units()
    want = {x.key: x.status for x in claims.judge_all(unit.df, name, claims.load())}
    assert dict(zip(v["key"], v["verdict"])) == want and "not judgeable" in want.values()


def test_refuses_error_rows_and_its_own_input(tmp_path):
    df = pd.read_csv(V1)
    df.loc[0, "status"] = "error"
    src = tmp_path / "results.csv"
    df.to_csv(src, index=False)
    r = _run("--results", src, "--out", tmp_path / "ref")
    assert r.returncode == 2 and "status error" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "ref").exists()
    r = _run("--results", V1, "--out", V1.parent)
    assert r.returncode == 2 and "destroy the input" in r.stderr
    df = pd.read_csv(V1)
    df.loc[df["grid"] != "baselines", "git_sha"] = ["a" * 12] + ["b" * 12] * (int((df["grid"] != "baselines").sum()) - 1)
    df.to_csv(src, index=False)
    r = _run("--results", src, "--out", tmp_path / "ref2")
    assert r.returncode == 2 and "several commits" in r.stderr and not (tmp_path / "ref2").exists()


def test_reference_with_an_exploratory_set_beside(tmp_path):
    """--exploratory: verdicts.csv carries each claim's outcome on the exploratory set, judged by the same claims
    (here the same table on both sides, so the two outcomes agree claim by claim)."""
    src = tmp_path / "results.csv"
    src.write_bytes(V1.read_bytes())
    r = _run("--results", src, "--out", tmp_path / "ref", "--exploratory", V1)
    assert r.returncode == 0, r.stderr
    v = pd.read_csv(tmp_path / "ref" / "verdicts.csv", keep_default_na=False)
    assert list(v.columns[-2:]) == ["exploratory_verdict", "exploratory_effect_95ci"]
    assert (v["verdict"] == v["exploratory_verdict"]).all() and (v["effect_95ci"] == v["exploratory_effect_95ci"]).all()
    r = _run("--results", src, "--out", tmp_path / "ref2", "--exploratory", tmp_path / "missing.csv")
    assert r.returncode == 2 and "missing.csv does not exist" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "ref2").exists()

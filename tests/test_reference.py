"""The committed reference set (reports/reference/tiny/): its results table rebuilds the report without training,
and the report gives the verdicts committed beside it (a change in the statistics or the claims that moves a
reference verdict fails here, and the reference is then re-made, not edited)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ablations import results

REF = Path(__file__).resolve().parents[1] / "reports" / "reference" / "tiny"


def test_reference_table_is_a_complete_results_table():
    df = results.read(REF / "results.csv")
    assert set(df["preset"].astype(str)) == {"tiny"}
    # results only (done, not_converged): no error row, nothing still pending
    assert set(df["status"]) == {"done", "not_converged"}
    trained = df[df["baseline"].isna() | (df["baseline"].astype(str) == "")]
    # 15 trainings per seed x 7 seeds (ablations/grids at tiny); a config two grids share is trained once
    assert trained["run_id"].nunique() == 105
    assert trained.groupby("grid")["seed"].nunique().to_dict() == {
        "fig3_mechanisms": 7, "figA1_shuffle_bn": 7, "table1_momentum": 7, "v2_table1": 7}
    base = df[df["grid"] == "baselines"]
    assert sorted(base["baseline"].value_counts().items()) == [("random_init", 7), ("raw_pixels", 1)]
    assert trained["git_sha"].nunique() == 1
    # results only: no path of the machine that made it
    assert not df["run_dir"].dropna().astype(str).str.startswith("/").any()
    assert (trained["knn_acc"] > 10).all() and (trained["knn_acc"] <= 100).all()


def test_make_report_rebuilds_the_reference_verdicts(tmp_path):
    from reports.__main__ import main
    assert main(["--results", str(REF / "results.csv"), "--out", str(tmp_path), "--quiet"]) == 0
    got = pd.read_csv(tmp_path / "verdicts.csv")
    want = pd.read_csv(REF / "verdicts.csv")
    cols = ["key", "verdict", "effect_95ci", "seeds", "runs", "test"]
    pd.testing.assert_frame_equal(got[cols], want[cols])
    assert (tmp_path / "report.md").is_file() and (tmp_path / "index.html").is_file()
    md = (tmp_path / "report.md").read_text()
    for v in want["verdict"]:
        assert v in md


def test_readme_quotes_the_reference_verdicts():
    """README.md's verdict table is the one the committed table gives (claim | verdict | effect, 95 % CI)."""
    want = pd.read_csv(REF / "verdicts.csv")
    readme = (REF.parents[2] / "README.md").read_text()
    assert len(want) == 9
    for _, r in want.iterrows():
        assert f"| {r['claim']} | {r['verdict']} | {r['effect_95ci']} |" in readme, r["key"]


def test_reference_runs_are_the_runs_the_grids_plan_today(tmp_path):
    """The reference comes from the code as it is: planning the four grids at tiny (7 seeds) gives exactly the
    run ids (hashes of the resolved training configs) of the committed table, so a change to a preset, a grid
    or a config default that would train something else fails here and means a new reference set."""
    from ablations import launcher as L
    from ablations.grid import grid_names
    df = results.read(REF / "results.csv")
    trained = df[df["grid"] != "baselines"]
    for g in grid_names():
        _, planned = L.plan(g, "tiny", tmp_path / "runs")
        assert sorted(p.run_id for p in planned) == sorted(trained[trained["grid"] == g]["run_id"]), g

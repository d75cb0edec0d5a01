"""Verdicts as declared tests over paired seeds, claims version 1 (ablations/claims_v1.yaml, reports/claims.py,
reports/stats.py): an effect inside seed noise is inconclusive, a clear one reproduced, the reverse contradicted;
presets are never pooled; an error run is no result while a diverged one is. Version 2's rules:
tests/reports/test_verdicts_v2.py."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from reports import claims, data, stats
from reports.build import build
from reports.errors import ReportError
from reports.fixtures.make_fixtures import table1, write


V1 = claims.load(claims.CLAIMS_V1_FILE)


def _verdicts(tmp_path, rows, name="r.csv") -> dict:
    res = data.load_results(write(rows, tmp_path / name))
    units = res.units()
    assert len(units) == 1
    return {v.key: v for v in claims.judge_all(units[0][1].df, units[0][0], V1)}


def _momentum(effect: float, sd: float, seeds: int, seed: int = 0, **kw) -> list:
    """m = 0.99 and 0.999 beat m = 0.9 by ``effect`` points (per-seed noise ``sd``)."""
    rng = np.random.default_rng(seed)
    return table1({0.0: None, 0.9: 60.0, 0.99: 60.0 + effect, 0.999: 60.0 + effect, 0.9999: 60.0 + effect},
                  seeds, sd, rng, **kw)


# ------------------------------------------------------------------------------------------------ statistics
def test_stats_exact_sign_flip_and_intervals():
    e = stats.paired([1.0, 2.0, 3.0, 4.0, 5.0])
    assert e.p == pytest.approx(1 / 32) and e.effect == pytest.approx(3.0)
    half = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)          # t_{0.975, 4} * sd / sqrt(n)
    assert (e.low, e.high) == (pytest.approx(3.0 - half), pytest.approx(3.0 + half))
    assert stats.paired([1.0, -2.0, 3.0]).p == pytest.approx(3 / 8)
    one = stats.paired([2.0])
    assert one.n == 1 and math.isnan(one.low) and math.isnan(one.p)
    assert stats.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert stats.holm([0.02, float("nan")])[0] == pytest.approx(0.02)
    assert stats.seeds_needed("paired") == 5 and stats.seeds_needed("paired", parts=4) == 7
    assert stats.seeds_needed("fails_more") == 4
    f = stats.failures(5, 5, 0, 5)
    assert f.p == pytest.approx(1 / 252) and f.effect == 100.0
    assert stats.min_detectable(1.0, 5) > stats.min_detectable(1.0, 10) > 0


# ------------------------------------------------------------------------------------------------ outcomes
def test_effect_inside_seed_noise_is_inconclusive(tmp_path):
    v = _verdicts(tmp_path, _momentum(effect=0.3, sd=1.5, seeds=5))["momentum_helps"]
    assert v.status == "inconclusive"
    assert all(p.est.low < 0 < p.est.high for p in v.parts)
    assert any("smallest effect these 5 seeds could detect" in n for n in v.notes)
    assert "5 seeds < the 6 this test needs" in "; ".join(v.notes)    # two Holm-corrected parts


def test_clear_effect_is_reproduced(tmp_path):
    v = _verdicts(tmp_path, _momentum(effect=3.0, sd=0.3, seeds=6))["momentum_helps"]
    assert v.status == "reproduced", v.detail
    assert all(p.est.low > 0 and p.p_adj < 0.05 for p in v.parts)
    assert v.seeds == 6 and not v.notes


def test_reversed_effect_is_contradicted(tmp_path):
    v = _verdicts(tmp_path, _momentum(effect=-3.0, sd=0.3, seeds=6))["momentum_helps"]
    assert v.status == "contradicted"
    assert all(p.est.high < 0 for p in v.parts)


def test_clear_effect_on_too_few_seeds_is_not_reproduced(tmp_path):
    """3 seeds: the CI may exclude 0 but an exact sign-flip test cannot reach p < 0.05 (min p = 1/8)."""
    v = _verdicts(tmp_path, _momentum(effect=3.0, sd=0.3, seeds=3))["momentum_helps"]
    assert v.status == "inconclusive"
    assert all(p.est.low > 0 for p in v.parts) and all(p.est.p == pytest.approx(1 / 8) for p in v.parts)
    one = _verdicts(tmp_path, _momentum(effect=3.0, sd=0.3, seeds=1), "one.csv")["momentum_helps"]
    assert one.status == "inconclusive" and "single seed: indicative only" in one.notes


def test_non_superiority_claim(tmp_path):
    rng = np.random.default_rng(3)
    same = table1({0.999: 60.0, 0.9999: 60.0}, 6, 0.2, rng)
    assert _verdicts(tmp_path, same)["momentum_saturates"].status == "reproduced"     # within the 1-point margin
    better = table1({0.999: 60.0, 0.9999: 63.0}, 6, 0.2, rng)
    assert _verdicts(tmp_path, better, "b.csv")["momentum_saturates"].status == "contradicted"


# ------------------------------------------------------------------------------------------------ failures
def test_error_at_m0_is_no_result_but_diverged_is(tmp_path):
    rng = np.random.default_rng(0)
    err = table1({0.0: None, 0.999: 60.0}, 5, 0.2, rng, m0_status="error")
    v = _verdicts(tmp_path, err)["m0_fails"]
    assert v.status == "not run"                       # a crash/OOM at m = 0 is not the paper's "fail"
    div = table1({0.0: None, 0.999: 60.0}, 5, 0.2, rng, m0_status="diverged")
    v = _verdicts(tmp_path, div, "d.csv")["m0_fails"]
    assert v.status == "reproduced" and v.parts[0].est.p == pytest.approx(1 / 252)
    nc = table1({0.0: None, 0.999: 60.0}, 5, 0.2, rng, m0_status="not_converged")
    assert _verdicts(tmp_path, nc, "n.csv")["m0_fails"].status == "reproduced"
    ok = table1({0.0: 50.0, 0.999: 60.0}, 5, 0.2, rng)             # m = 0 converges in every seed
    assert _verdicts(tmp_path, ok, "o.csv")["m0_fails"].status == "inconclusive"


def test_unsplit_failed_rows_are_told_apart_by_the_one_mapping(tmp_path):
    rows = table1({0.0: None, 0.999: 60.0}, 2, 0.2, np.random.default_rng(0))
    for r in rows:
        if r["moco_m"] == 0.0:
            r["status"] = "failed"
            r["reason"] = "diverged: loss nan at epoch 2" if r["seed"] == 0 else "did not converge: loss 8.3"
    res = data.load_results(write(rows, tmp_path / "unsplit_failed.csv"))
    m0 = res.df[res.df["moco_m"] == 0.0].sort_values("seed")
    assert m0["status"].tolist() == ["diverged", "not_converged"]


# ------------------------------------------------------------------------------------------------ presets
def test_presets_are_never_pooled(tmp_path):
    tiny = _momentum(effect=3.0, sd=0.3, seeds=6, seed=1, preset="tiny")
    cifar = _momentum(effect=-3.0, sd=0.3, seeds=6, seed=2, preset="cifar10", prefix="c")
    alone = {"tiny": _verdicts(tmp_path, tiny, "t.csv"), "cifar10": _verdicts(tmp_path, cifar, "c.csv")}
    mixed = write(tiny + cifar, tmp_path / "mixed.csv")
    r = build(mixed, tmp_path / "out", progress=False, claims_path=claims.CLAIMS_V1_FILE)
    assert set(r["presets"]) == {"tiny", "cifar10"}
    for name, rep in r["presets"].items():
        got = {v.key: (v.status, v.effect) for v in rep["verdicts"]}
        assert got == {k: (v.status, v.effect) for k, v in alone[name].items()}, name
        cell = rep["parts"]["table1_momentum"]["table"].find("0.999")[1]
        assert cell.n == 6                                   # the other preset's seeds are not in the mean
        assert (tmp_path / "out" / name / "index.html").is_file()
        assert (tmp_path / "out" / name / "figures" / "forest.png").is_file()
    assert r["presets"]["tiny"]["verdicts"][1].status == "reproduced"
    assert r["presets"]["cifar10"]["verdicts"][1].status == "contradicted"
    vdf = pd.read_csv(tmp_path / "out" / "verdicts.csv")
    assert sorted(set(vdf["preset"])) == ["cifar10", "tiny"] and len(vdf) == 2 * len(claims.load()["claims"])
    index = (tmp_path / "out" / "index.html").read_text()
    assert 'href="tiny/index.html"' in index and 'href="cifar10/index.html"' in index


def test_archs_of_one_preset_are_not_pooled(tmp_path):
    a = _momentum(effect=3.0, sd=0.3, seeds=6, seed=1)
    b = _momentum(effect=-3.0, sd=0.3, seeds=6, seed=2, prefix="r50")
    for r in b:
        r["arch"] = "resnet50"
    res = data.load_results(write(a + b, tmp_path / "x.csv"))
    units = dict(res.units())
    assert set(units) == {"tiny-synthetic-resnet18", "tiny-synthetic-resnet50"}
    got = {n: claims.judge_all(u.df, n, V1)[1].status for n, u in units.items()}
    assert got == {"tiny-synthetic-resnet18": "reproduced", "tiny-synthetic-resnet50": "contradicted"}


# ------------------------------------------------------------------------------------------------ declarations
def test_claims_file_is_checked(tmp_path):
    spec = claims.load(claims.CLAIMS_V1_FILE)
    assert spec["alpha"] == 0.05 and len(spec["claims"]) >= 9 and spec["version"] == 1 and "gates" not in spec
    bad = tmp_path / "claims.yaml"
    bad.write_text("version: 1\nclaims:\n  - {key: x, claim: y, grid: table1_momentum, test: paired, direction: up, "
                   "metric: knn_acc}\n")
    with pytest.raises(ReportError, match="direction"):
        claims.load(bad)
    bad.write_text("version: 1\nclaims:\n  - {key: x, claim: y, grid: g, test: ttest, metric: knn_acc}\n")
    with pytest.raises(ReportError, match="unknown test"):
        claims.load(bad)
    bad.write_text("version: 1\nclaims:\n  - {key: x, claim: y, grid: g, test: paired, direction: greater, metric: a, "
                   "colour: red}\n")
    with pytest.raises(ReportError, match="unknown key"):
        claims.load(bad)


def test_a_trend_over_one_value_of_k_is_not_run(tmp_path):
    """`max` and `min` of K name the same runs when a mechanism ran at one K: no comparison, not a zero effect."""
    rows = _momentum(effect=3.0, sd=0.3, seeds=2)
    for r in rows:
        r.update(grid="fig3_mechanisms", mechanism="moco" if r["moco_m"] == 0.999 else "memory_bank")
    rows = [r for r in rows if r["moco_m"] in (0.999, 0.9)]
    v = _verdicts(tmp_path, rows)
    assert v["rises_with_k"].status == "not run" and v["rises_with_k"].parts == []
    assert v["rises_with_k"].effect == "—"
    assert v["moco_ge_bank"].status == "inconclusive" and len(v["moco_ge_bank"].parts) == 1


def test_a_condition_naming_several_cells_is_an_error(tmp_path):
    rows = _momentum(effect=3.0, sd=0.3, seeds=2)
    res = data.load_results(write(rows, tmp_path / "r.csv"))
    c = {"key": "loose", "claim": "loose", "grid": "table1_momentum", "test": "paired", "direction": "greater",
         "metric": "lincls_acc1", "a": {"moco_k": 4096}, "b": {"moco_m": 0.9}}
    with pytest.raises(ReportError, match="several runs of seed 0"):
        claims.judge(c, res.df, 0.05)

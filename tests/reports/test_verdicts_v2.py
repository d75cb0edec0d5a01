"""Claims version 2 (ablations/claims.yaml, reports/claims.py, reports/stats.py): one procedure (the paired t-test
and its own interval); "every part must hold" as an intersection-union test (Berger 1982: no Holm); "contradicted"
by Holm (1979) over the reversed one-sided p-values; McNemar's exact test for failures paired by seed; the sanity
gates ("not judgeable"); the simulated smallest detectable effect; runs counted once; the test-set sampling error.
Every fixture table is built here; every number asserted can fail."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import optimize, stats as sps

from reports import claims, data, stats
from reports.__main__ import main
from reports.build import VERDICT_CSV_V2, build
from reports.errors import ReportError
from reports.fixtures.make_fixtures import row, write

V2 = claims.load()
V1 = claims.load(claims.CLAIMS_V1_FILE)
ALPHA = V2["alpha"]
# zero-mean, unit-sd patterns of per-seed noise (6 seeds): the t statistic of c + E is c * sqrt(6) / sd(E)
E1 = np.array([-1.5, -0.5, 0.5, 1.5, -1.0, 1.0])
E2 = np.array([1.0, -1.5, 1.5, -0.5, 0.5, -1.0])


def _judge(tmp_path, rows, spec=V2, name="r.csv") -> dict:
    res = data.load_results(write(rows, tmp_path / name))
    (unit, r), = res.units()
    return {v.key: v for v in claims.judge_all(r.df, unit, spec)}


def _shift_for_p(e: np.ndarray, p: float) -> float:
    """The mean c for which the one-sided t-test of c + e (paper's direction) has p-value ``p``."""
    n = len(e)
    return float(sps.t.ppf(1 - p, n - 1) * e.std(ddof=1) / math.sqrt(n))


def _momentum(acc: dict, pretext: float = 22.0, statuses: dict | None = None) -> list:
    """The momentum grid (K = 4096): ``acc`` maps m to the per-seed linear top-1 (None: every seed fails)."""
    rows = []
    for m, vals in acc.items():
        for s, v in enumerate(vals):
            st = (statuses or {}).get((m, s), "done")
            rows.append(row("table1_momentum", f"t1_m{m:g}_s{s}", st, moco_m=m, seed=s, batch_size=128,
                            lincls_acc1=None if v is None else float(v), pretext_acc1=pretext, knn_acc=70.0))
    return rows


def _random_init(seeds: int, lincls: float = 70.0) -> list:
    return [row("baselines", f"base_ri_s{s}", baseline="random_init", seed=s, run_dir=None, knn_acc=60.0,
                lincls_acc1=lincls, mechanism=None, moco_m=None, moco_k=None) for s in range(seeds)]


# ------------------------------------------------------------------------------------------------ statistics
def test_paired_t_is_one_procedure():
    d = [1.0, 2.0, 3.0, 4.0, 5.0]
    e = stats.paired_t(d)
    ref = sps.ttest_1samp(d, 0.0)
    ci = ref.confidence_interval(0.95)
    assert (e.effect, e.low, e.high) == (pytest.approx(3.0), pytest.approx(ci.low), pytest.approx(ci.high))
    assert e.p == pytest.approx(ref.pvalue / 2) and e.p_rev == pytest.approx(1 - ref.pvalue / 2)
    # interval above 0 <=> one-sided p < alpha/2, at the boundary itself
    c = _shift_for_p(E1, 0.025)
    for shift, above in ((c * 1.001, True), (c * 0.999, False)):
        x = stats.paired_t(shift + E1)
        assert (x.low > 0) is above and (x.p < 0.025) is above
    assert stats.paired_t([2.0, 2.0, 2.0]).low == 2.0 and stats.paired_t([2.0, 2.0, 2.0]).p == 0.0
    same = stats.paired_t(np.array([77.1, 76.9, 77.3]) - np.array([60.1, 59.9, 60.3]))   # 17 up to rounding
    assert same.sd == 0.0 and same.low == same.high == pytest.approx(17.0) and same.p == 0.0
    assert math.isnan(stats.paired_t([2.0]).low)


def test_mcnemar_exact_on_paired_failures():
    e = stats.mcnemar(6, 0, 7)
    want = sps.binomtest(6, 6, 0.5, alternative="greater")
    assert e.p == pytest.approx(want.pvalue) == pytest.approx(1 / 64)
    ci = sps.binomtest(6, 6, 0.5).proportion_ci(confidence_level=0.95, method="exact")
    assert e.effect == pytest.approx(600 / 7)
    assert (e.low, e.high) == (pytest.approx(100 * (2 * ci.low - 1) * 6 / 7), pytest.approx(600 / 7))
    assert e.low > 0 and e.p < ALPHA / 2                    # the interval and the test agree
    five = stats.mcnemar(5, 0, 5)
    assert five.p == pytest.approx(1 / 32) and five.low < 0 < five.high   # 1/32 > 0.025: not enough seeds
    assert stats.mcnemar_seeds_needed(ALPHA) == 6
    none = stats.mcnemar(0, 0, 7)
    assert none.p == 1.0 and none.effect == 0.0 and math.isnan(none.low)


def _brute_force_mde(sd: float, n: int, parts: int, grid: np.ndarray, sims: int) -> float:
    """The v2 rule simulated afresh at every effect of ``grid`` (independent random numbers per effect): the
    first effect with power >= 80 %, interpolated linearly between grid points."""
    power = []
    for i, delta in enumerate(grid):
        x = np.random.default_rng(100 + i).normal(delta, sd, size=(sims, parts, n))
        low = sps.ttest_1samp(x, 0.0, axis=2).confidence_interval(0.95).low
        power.append(float((low > 0).all(axis=1).mean()))
    power = np.array(power)
    k = int(np.argmax(power >= 0.8))
    assert k > 0 and power[k] >= 0.8
    return float(np.interp(0.8, power[k - 1:k + 1], grid[k - 1:k + 1]))


def test_detectable_effect_agrees_with_brute_force_and_the_noncentral_t():
    sd, n, parts = 1.3, 7, 2
    mde = stats.detectable_effect(sd, n, parts, sims=2000, seed=1)
    brute = _brute_force_mde(sd, n, parts, np.linspace(0.5 * mde, 1.5 * mde, 41), sims=2000)
    assert abs(brute - mde) / mde < 0.10
    # exact for independent parts: P(one part's 95 % interval above 0) = 1 - nct.cdf(t_.975, n-1, delta sqrt(n)/sd)
    tc = sps.t.ppf(0.975, n - 1)
    exact = optimize.brentq(lambda dl: (1 - sps.nct.cdf(tc, n - 1, dl * math.sqrt(n) / sd)) ** parts - 0.8, 0.01, 10)
    assert abs(exact - mde) / exact < 0.05
    assert stats.detectable_effect(sd, n, 1, sims=2000, seed=1) < mde      # more parts, more needed
    assert math.isnan(stats.detectable_effect(sd, 1, 1)) and math.isnan(stats.detectable_effect(0.0, 7, 1))


def test_seeds_for_inverts_the_detectable_effect():
    """Same random numbers: the effect these 7 seeds detect with 80 % power needs exactly 7 seeds."""
    mde = stats.detectable_effect(1.0, 7, 2, sims=1000, seed=3)
    assert stats.seeds_for(mde, 1.0, 2, sims=1000, seed=3) == 7
    assert stats.seeds_for(2 * mde, 1.0, 2, sims=1000, seed=3) < 7
    assert stats.seeds_for(0.01, 1.0, 2, sims=200, seed=3, n_max=20) is None
    assert stats.claim_power(mde, 1.0, 7, 2, sims=1000, seed=3) >= 0.8


# ------------------------------------------------------------------------------------------------ outcomes
def test_every_part_at_its_own_level_no_holm(tmp_path):
    """Two parts, each one-sided p = 0.02 (< alpha/2 = 0.025): Holm would need 2 x 0.02 = 0.04 < 0.025 and
    fails; the intersection-union test needs no correction: reproduced."""
    base = np.full(6, 70.0)
    acc = {0.9: base, 0.99: base + _shift_for_p(E1, 0.02) + E1, 0.999: base + _shift_for_p(E2, 0.02) + E2}
    v = _judge(tmp_path, _momentum(acc))["momentum_helps"]
    ps = [p.est.p for p in v.parts]
    assert ps == [pytest.approx(0.02, rel=1e-6)] * 2
    assert min(stats.holm(ps)) == pytest.approx(0.04, rel=1e-6) and min(stats.holm(ps)) > ALPHA / 2
    assert all(p.est.low > 0 and p.outcome == "reproduced" for p in v.parts)
    assert v.status == "reproduced" and v.version == 2
    assert "intersection-union" in v.test


def test_three_seeds_can_reproduce_under_v2_not_under_v1(tmp_path):
    """v1's sign-flip p has a floor of 2^-3 = 1/8 with 3 seeds; the t-test has none."""
    rng = np.random.default_rng(0)
    acc = {0.9: 70 + rng.normal(0, 0.3, 3), 0.99: 73 + rng.normal(0, 0.3, 3), 0.999: 73 + rng.normal(0, 0.3, 3)}
    assert _judge(tmp_path, _momentum(acc))["momentum_helps"].status == "reproduced"
    assert _judge(tmp_path, _momentum(acc), V1, "v1.csv")["momentum_helps"].status == "inconclusive"


def test_contradicted_by_holm_on_the_reversed_p(tmp_path):
    base = np.full(6, 70.0)
    # part 1 clearly reversed (p_rev tiny), part 2 flat: Holm rejects part 1 alone
    acc = {0.9: base, 0.99: base - 2.0 + 0.1 * E1, 0.999: base + 0.5 * E2}
    v = _judge(tmp_path, _momentum(acc))["momentum_helps"]
    assert [p.outcome for p in v.parts] == ["contradicted", "inconclusive"] and v.status == "contradicted"
    assert [p.p_rev_adj for p in v.parts] == pytest.approx(stats.holm([p.est.p_rev for p in v.parts]))
    # both reversed at one-sided p_rev = 0.02 each: each interval is below 0, but Holm (2 x 0.02 = 0.04) does not
    # reject at alpha/2: the union "some part is reversed" is corrected, so not contradicted
    acc = {0.9: base, 0.99: base - _shift_for_p(E1, 0.02) + E1, 0.999: base - _shift_for_p(E2, 0.02) + E2}
    v = _judge(tmp_path, _momentum(acc), name="b.csv")["momentum_helps"]
    assert all(p.est.high < 0 for p in v.parts)
    assert [p.p_rev_adj for p in v.parts] == [pytest.approx(0.04, rel=1e-6)] * 2
    assert v.status == "inconclusive"
    assert any("smallest effect these 6 seeds would reproduce with 80 % power, the same in all 2 parts" in n
               for n in v.notes)


def test_non_superiority_under_v2(tmp_path):
    base = np.full(6, 70.0)
    same = _judge(tmp_path, _momentum({0.999: base, 0.9999: base + 0.2 * E1}))["momentum_saturates"]
    assert same.status == "reproduced" and same.parts[0].est.effect == pytest.approx(1.0)  # margin 1 - (a - b)
    better = _judge(tmp_path, _momentum({0.999: base, 0.9999: base + 3 + 0.2 * E1}), name="b.csv")
    assert better["momentum_saturates"].status == "contradicted"


def test_runs_are_counted_once_per_claim(tmp_path):
    """m = 0.99 and m = 0.999 both against m = 0.9 over 5 seeds: 15 runs (v1 counted the shared m = 0.9 twice)."""
    rng = np.random.default_rng(1)
    acc = {m: 70 + 3 * (m > 0.9) + rng.normal(0, 0.3, 5) for m in (0.9, 0.99, 0.999)}
    assert _judge(tmp_path, _momentum(acc))["momentum_helps"].runs == 15
    assert _judge(tmp_path, _momentum(acc), V1, "v1.csv")["momentum_helps"].runs == 20
    assert _judge(tmp_path, _momentum(acc))["momentum_helps"].seeds == 5


# ------------------------------------------------------------------------------------------------ failures
def test_m0_fails_paired_by_seed_mcnemar(tmp_path):
    """6 of 7 seeds fail at m = 0, none at m = 0.999: McNemar p = 2^-6 = 1/64 < 0.025, reproduced."""
    acc = {0.0: [None] * 7, 0.999: [70.0] * 7}
    st = {(0.0, s): "not_converged" for s in range(6)}
    v = _judge(tmp_path, _momentum(acc, statuses=st))["m0_fails"]
    assert v.parts[0].est.p == pytest.approx(sps.binomtest(6, 6, 0.5, alternative="greater").pvalue)
    assert v.parts[0].est.p == pytest.approx(1 / 64) and v.status == "reproduced"
    assert v.parts[0].est.effect == pytest.approx(600 / 7) and v.runs == 14
    # a seed where both fail is concordant: 5 discordant seeds, p = 1/32 > 0.025, inconclusive and told why
    st[(0.999, 0)] = "diverged"
    v = _judge(tmp_path, _momentum(acc, statuses=st), name="c.csv")["m0_fails"]
    assert v.parts[0].est.p == pytest.approx(1 / 32) and v.status == "inconclusive"
    assert v.parts[0].est.effect == pytest.approx(500 / 7)
    assert "5 discordant seed(s) < the 6 McNemar's exact test needs to reach p < 0.025" in v.notes
    # never gated: a claim about failure is judged by the failure itself (pretext at 0 changes nothing)
    v = _judge(tmp_path, _momentum(acc, pretext=0.0, statuses={(0.0, s): "diverged" for s in range(7)}),
               name="d.csv")["m0_fails"]
    assert v.status == "reproduced" and not v.reason


# ------------------------------------------------------------------------------------------------ sanity gates
def _fig3(bank_status, bank_pretext=0.2, bank_lincls=60.0, seeds=7, moco_lincls=80.0, baseline=70.0,
          moco_k=(256,)) -> list:
    """Fig. 3 at the given K: MoCo learns (pretext 40 %); the memory bank has per-seed statuses ``bank_status``."""
    rows = []
    for k in moco_k:
        for s in range(seeds):
            rows.append(row("fig3_mechanisms", f"moco_K{k}_s{s}", mechanism="moco", moco_k=k, batch_size=128,
                            seed=s, pretext_acc1=40.0, lincls_acc1=moco_lincls + 0.1 * E1[s % 6], knn_acc=75.0,
                            dataset="fashion_mnist"))
            rows.append(row("fig3_mechanisms", f"bank_K{k}_s{s}", bank_status[s], mechanism="memory_bank",
                            moco_k=k, batch_size=128, seed=s, pretext_acc1=bank_pretext,
                            lincls_acc1=bank_lincls + 0.1 * E2[s % 6], knn_acc=55.0, dataset="fashion_mnist"))
    base = _random_init(seeds, baseline)
    for r in base:
        r["dataset"] = "fashion_mnist"
    return rows + base


def test_a_bank_that_never_learned_is_not_judgeable(tmp_path):
    """The bank at chance (pretext 0.2 % <= 10 x 100/257 %), not_converged in 6 of 7 seeds, below random init: a
    20-point difference is no evidence that MoCo beats a memory bank."""
    nc = ["not_converged"] * 6 + ["done"]
    v = _judge(tmp_path, _fig3(nc))["moco_ge_bank"]
    p = v.parts[0]
    assert p.est.effect == pytest.approx(20.0, abs=0.2) and p.est.low > 15          # huge, and still:
    assert p.outcome == "not judgeable" and v.status == "not judgeable"
    assert v.reason.startswith("b (mechanism=memory_bank, moco_k=256) is not a working learner: 7 of 7 paired seeds")
    assert "status not done in 6 (not_converged 6)" in v.reason
    assert "pretext top-1 not above 10 × chance (3.89 %) in 7" in v.reason
    assert "lincls_acc1 not above the same seed's random init in 7" in v.reason
    # one gate is enough: done everywhere, above random init, but at chance in the pretext task
    v = _judge(tmp_path, _fig3(["done"] * 7, bank_lincls=75.0), name="p.csv")["moco_ge_bank"]
    assert v.status == "not judgeable" and "pretext top-1 not above 10 × chance (3.89 %) in 7" in v.reason
    assert "status" not in v.reason and "random init" not in v.reason


def test_the_majority_rule_of_the_gates(tmp_path):
    """Learning bank (pretext 30 %, above random init); not_converged in 4 of 7 seeds (> 0.5 x 7): not
    judgeable; in 3 of 7: a working learner, judged (reproduced)."""
    four = ["not_converged"] * 4 + ["done"] * 3
    v = _judge(tmp_path, _fig3(four, bank_pretext=30.0, bank_lincls=75.0))["moco_ge_bank"]
    assert v.status == "not judgeable" and "4 of 7 paired seeds fail a gate" in v.reason
    three = ["not_converged"] * 3 + ["done"] * 4
    v = _judge(tmp_path, _fig3(three, bank_pretext=30.0, bank_lincls=75.0), name="t.csv")["moco_ge_bank"]
    assert v.status == "reproduced" and not v.reason


def test_not_judgeable_never_hides_a_contradiction_and_costs_are_not_gated(tmp_path):
    """rises_with_k: the bank's part is not judgeable, MoCo's is clearly reversed: contradicted. A cost
    comparison (end-to-end memory) needs no learner: judged though its runs never learned."""
    nc = ["not_converged"] * 7
    rows = [r for r in _fig3(nc, moco_k=(256, 4096)) if not (r["mechanism"] == "moco" and r["moco_k"] == 4096)]
    for s in range(7):                               # MoCo at K = 4096 three points worse than at K = 256
        rows.append(row("fig3_mechanisms", f"moco_K4096_s{s}", mechanism="moco", moco_k=4096, batch_size=128, seed=s,
                        pretext_acc1=12.0, lincls_acc1=77.0 + 0.1 * E2[s % 6], dataset="fashion_mnist"))
        for k, mem in ((256, 900.0), (1024, 1300.0)):
            rows.append(row("fig3_mechanisms", f"e2e_K{k}_s{s}", "not_converged", mechanism="end_to_end", moco_k=k,
                            batch_size=k, seed=s, pretext_acc1=0.0, lincls_acc1=50.0, peak_mem_mb=mem + 20 * E1[s % 6],
                            dataset="fashion_mnist"))
    v = _judge(tmp_path, rows)
    outs = {p.label: p.outcome for p in v["rises_with_k"].parts}
    assert outs["mechanism=memory_bank"] == "not judgeable" and outs["mechanism=moco"] == "contradicted"
    assert outs["mechanism=end_to_end"] == "not judgeable"        # batch 256 -> chance 100/256 %: pretext 0
    assert v["rises_with_k"].status == "contradicted"
    assert v["e2e_memory_grows"].status == "reproduced" and not v["e2e_memory_grows"].reason


def test_a_missing_baseline_row_is_said_and_fails_no_gate(tmp_path):
    rows = [r for r in _fig3(["done"] * 7, bank_pretext=30.0, bank_lincls=75.0) if r["seed"] not in (2, 3)
            or r["grid"] != "baselines"]
    v = _judge(tmp_path, rows)["moco_ge_bank"]
    assert v.status == "reproduced"
    assert "random-init gate (lincls_acc1) not checked: no random-init baseline row for seed(s) 2–3" in v.notes


def test_test_set_sampling_error_beside_the_interval(tmp_path):
    rows = _fig3(["done"] * 7, bank_pretext=30.0, bank_lincls=75.0)
    v = _judge(tmp_path, rows)["moco_ge_bank"]
    p = v.parts[0]
    mean_a = np.mean(list(p.a.values()))
    assert p.se_a == pytest.approx(math.sqrt(mean_a / 100 * (1 - mean_a / 100) / 10000) * 100)   # fashion_mnist
    assert "test-set SE a ±0.40 / b ±0.43 pt" in v.detail
    # an n_eval column (or knn_subset) wins over the declared test-set size
    df = data.load_results(write(rows, tmp_path / "n.csv")).df
    df["n_eval"] = 2500.0
    w = claims.judge(claims.load()["claims"][3], df, ALPHA, "tiny", 2, V2["gates"])
    assert w.parts[0].se_a == pytest.approx(math.sqrt(mean_a / 100 * (1 - mean_a / 100) / 2500) * 100)
    r = pd.Series({"dataset": "cifar10", "knn_subset": 2000.0})
    assert claims.n_eval([r]) == 2000 and claims.n_eval([pd.Series({"dataset": "synthetic"})]) is None
    assert claims.n_eval([pd.Series({"dataset": "stl10"})]) == 8000
    assert claims.n_eval([pd.Series({"dataset": "stl10", "eval_split": "val"})]) is None


# ------------------------------------------------------------------------------------------------ declarations
def test_claims_files_are_checked(tmp_path):
    assert V2["version"] == 2 and V2["gates"]["pretext_over_chance"] == 10 and V2["gates"]["majority"] == 0.5
    assert V2["gates"]["tests"] == ("paired", "not_greater")
    one = "  - {key: x, claim: y, grid: table1_momentum, test: paired, direction: greater, metric: knn_acc}\n"
    gates = ("gates: {pretext_over_chance: 10, above_random_init: lincls_acc1, majority: 0.5, tests: [paired], "
             "exempt_metrics: []}\n")
    f = tmp_path / "c.yaml"
    cases = {"version: 3\nclaims:\n" + one: "version must be one of 1, 2",
             "claims:\n" + one: "version must be one of 1, 2",
             "version: 2\nclaims:\n" + one: "version 2 needs a 'gates' mapping",
             "version: 1\n" + gates + "claims:\n" + one: "'gates' are a version-2 rule",
             "version: 2\n" + gates.replace("majority", "majorty") + "claims:\n" + one: "unknown gate key.* majorty",
             "version: 2\n" + gates.replace("tests: [paired]", "tests: [fails_more]") + "claims:\n" + one:
                 "fails_more is judged by the failure itself",
             "version: 2\n" + gates.replace("majority: 0.5", "majority: 1.5") + "claims:\n" + one:
                 r"majority .* \[0, 1\)",
             "version: 2\n" + gates.replace("lincls_acc1", "loss") + "claims:\n" + one: "above_random_init must be",
             "version: 2\ncolour: red\n" + gates + "claims:\n" + one: "unknown top-level key.* colour"}
    for text, msg in cases.items():
        f.write_text(text)
        with pytest.raises(ReportError, match=msg):
            claims.load(f)
    f.write_text("version: 2\n" + gates + "claims:\n" + one)
    assert claims.load(f)["gates"]["exempt_metrics"] == ()


def test_cli_claims_option(tmp_path, capsys):
    assert main(["--claims", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: claims file") and "does not exist" in err and "\n" not in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\ngates: {majority: 0.5, colour: red}\nclaims:\n  - {key: x, claim: y, grid: g, "
                   "test: paired, direction: greater, metric: knn_acc}\n")
    assert main(["--claims", str(bad), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unknown gate key(s) colour" in err and "\n" not in err


# ------------------------------------------------------------------------------------------------ the report
def test_not_judgeable_in_every_output(tmp_path):
    out = tmp_path / "out"
    r = build(write(_fig3(["not_converged"] * 6 + ["done"]), tmp_path / "r.csv"), out, progress=False)
    v = {x.key: x for x in r["verdicts"]}
    assert v["moco_ge_bank"].status == "not judgeable"
    vdf = pd.read_csv(out / "verdicts.csv")
    assert list(vdf.columns) == VERDICT_CSV_V2
    row_ = vdf.set_index("key").loc["moco_ge_bank"]
    assert row_["verdict"] == "not judgeable" and "not a working learner" in row_["reason"]
    assert row_["claims"] == "claims.yaml v2"
    md = (out / "report.md").read_text()
    assert "**not judgeable** (b (mechanism=memory\\_bank, moco\\_k=256) is not a working learner" in md
    assert "Claims: ablations/claims.yaml (version 2)" in md.replace("\\_", "_") and "intersection-union" in md
    assert "seed-to-seed variation (initialisation and data order) on a fixed test set" in md
    html = (out / "index.html").read_text()
    assert 'background:#8250df">not judgeable</span><br><small class="reason">b (mechanism=memory_bank' in html
    tex = (out / "verdicts.tex").read_text()
    assert "not judgeable" in tex and "reason" in tex and "$\\times$" in tex
    png = np.asarray(Image.open(out / "figures" / "forest.png").convert("RGB"), dtype=float)
    purple = int((np.abs(png - np.array([0x82, 0x50, 0xDF], dtype=float)).max(axis=2) < 30).sum())
    assert purple > 200, purple                      # the purple square, its interval and the reason

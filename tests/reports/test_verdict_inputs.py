"""What the verdicts are computed from: failures told apart (done / diverged / not_converged / error),
the m = 0 criteria (fail_loss_frac, fail_below_init with knn_init), unsplit ``failed`` summaries and rows, the seed
axis of the grids, and the baselines (random init, raw pixels) with the suite's kNN and linear protocols."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/ helpers, any import mode
from conftest import TINY_V1, synthetic_overrides  # noqa: E402
from conftest_ablations import REPO, write_grid  # noqa: E402

from ablations import launcher as L  # noqa: E402
from ablations import results  # noqa: E402
from ablations.grid import SEED_DEFAULTS, expand, load_grid, resolve_seeds  # noqa: E402
from pretrain.base import status as S  # noqa: E402
from pretrain.config import EVAL_KEYS, Config, config_hash, load_config, validate  # noqa: E402
from pretrain.base.errors import UserError  # noqa: E402
from pretrain.engine.criteria import not_converged
from pretrain.engine.lifecycle import run  # noqa: E402
from scipy.stats import binomtest  # noqa: E402

FAST = synthetic_overrides(epochs=1, max_steps=2, threads=1)


# -- run identity ------------------------------------------------------------------------------------------------
def test_config_hash_of_existing_runs_is_unchanged():
    """Values computed on the code before fail_below_init existed: runs already trained keep their identity."""
    pinned = {"tiny": "f8b3b805044b", "cifar10": "f502b7c0504a", "imagenet": "7ab6ab5955c2",
              "imagenet-v2": "39d158bcc685"}
    for preset, h in pinned.items():
        v1 = TINY_V1 if preset == "tiny" else {}          # tiny: the recipe of those runs
        assert config_hash(load_config(preset, v1), 1) == h, preset
        assert config_hash(load_config(preset, {**v1, "fail_below_init": True}), 1) == h, preset
    assert config_hash(load_config("tiny", {**TINY_V1, "seed": 1}), 1) == "9e4806b84001"
    assert "fail_below_init" in EVAL_KEYS and Config().fail_below_init is False
    # a key added later (HASHED_WHEN_SET) leaves the hash as it was at its default, and changes it when set
    assert config_hash(load_config("tiny", {**TINY_V1, "stem_stride": 1}), 1) == "f8b3b805044b"
    assert config_hash(load_config("tiny", {**TINY_V1, "stem_stride": 2}), 1) not in ("f8b3b805044b", "")


def test_fail_below_init_is_validated_as_a_bool():
    assert load_config("tiny", {"fail_below_init": "true"}).fail_below_init is True
    for bad in ("maybe", 2, 0.5):
        with pytest.raises(UserError, match="fail_below_init"):
            load_config("tiny", {"fail_below_init": bad})
    with pytest.raises(UserError, match="fail_below_init must be true or false"):
        validate(Config(fail_below_init="yes"))


# -- statuses ----------------------------------------------------------------------------------------------------
def test_unsplit_failed_summaries_are_mapped_in_one_place():
    assert S.RESULTS == ("done", "diverged", "not_converged")
    assert S.from_summary({"status": "failed", "reason": "diverged: loss is nan at epoch 1"}) == S.DIVERGED
    assert S.from_summary({"status": "failed", "reason": "did not converge: last-epoch loss 8.3"}) == \
        S.NOT_CONVERGED
    assert S.from_summary({"status": "failed", "reason": float("nan")}) == S.NOT_CONVERGED
    for st in ("done", "diverged", "not_converged", "error"):
        assert S.from_summary({"status": st, "reason": "diverged: x"}) == st
    assert S.from_summary(None) == "" and S.from_summary({}) == ""


def test_diverged_and_not_converged_are_told_apart(tmp_path):
    d = run(load_config("tiny", {**FAST, "lr": 1e30}), tmp_path / "nan", progress=False)
    assert d["status"] == S.DIVERGED and d["reason"].startswith("diverged: loss is")
    n = run(load_config("tiny", {**FAST, "fail_loss_frac": 0.01}), tmp_path / "flat", progress=False)
    assert n["status"] == S.NOT_CONVERGED and "(fail_loss_frac)" in n["reason"]
    assert "fail_below_init" not in n["reason"]
    for s in (d, n):
        assert json.loads((tmp_path / ("nan" if s is d else "flat") / "summary.json").read_text())["status"] == \
            s["status"]


def test_cli_exit_3_names_the_status(tmp_path, capsys):
    from pretrain.__main__ import main as cli
    args = ["--preset", "tiny", "--output", str(tmp_path), "--no-progress"]
    for k, v in {**FAST, "fail_loss_frac": 0.01}.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    assert cli(args) == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: run did not converge (status not_converged): last-epoch loss")


def test_criterion_function_names_what_fired():
    cfg = load_config("tiny", {**FAST, "fail_below_init": True, "fail_loss_frac": 1.0, "moco_k": 128})
    hist = [{"loss": 1.0, "knn_acc": 40.0}]
    assert not_converged(cfg, hist, knn_init=40.0) == ""                 # equal: not strictly below
    r = not_converged(cfg, hist, knn_init=40.5)
    assert r.startswith("did not converge: final kNN top-1 40.00% < 40.50%") and "(fail_below_init)" in r
    both = not_converged(cfg, [{"loss": 99.0, "knn_acc": 10.0}], knn_init=20.0)
    assert "(fail_loss_frac)" in both and "(fail_below_init)" in both
    off = load_config("tiny", {**FAST, "fail_below_init": False})
    assert not_converged(off, hist, knn_init=99.0) == ""
    no_knn = load_config("tiny", {**FAST, "fail_below_init": True, "knn_monitor": False})
    assert not_converged(no_knn, [{"loss": 1.0}], knn_init=99.0) == ""


def test_fail_below_init_new_run_reevaluation_and_unsplit_failed_summaries(tmp_path, monkeypatch):
    """Two steps on the synthetic set leave the kNN below the random-init network's (deterministic on the CPU):
    the run is not_converged with knn_init recorded, in a fresh run and when only the evaluation keys changed
    (re-evaluated from the checkpoint, not trained again); unsplit ``failed`` summaries are re-evaluated too."""
    from pretrain.eval.baselines import knn_random_init
    cfg_on = load_config("tiny", {**FAST, "fail_below_init": True})
    fresh = run(cfg_on, tmp_path / "fresh", progress=False)
    init = knn_random_init(cfg_on, torch.device("cpu"))
    assert fresh["knn_init"] == pytest.approx(init) and fresh["knn_acc"] < init
    assert fresh["status"] == S.NOT_CONVERGED and "(fail_below_init)" in fresh["reason"]

    d = tmp_path / "re"
    off = run(load_config("tiny", FAST), d, progress=False)
    assert off["status"] == S.DONE and off["knn_init"] is None and off["run_id"] == fresh["run_id"]
    on = run(cfg_on, d, progress=False)                                    # only an eval key changed
    assert on["status"] == S.NOT_CONVERGED and on["knn_init"] == pytest.approx(init)
    assert on["wall_s"] == off["wall_s"] and on["knn_acc"] == off["knn_acc"]   # not trained again
    assert run(cfg_on, d, progress=False) == on                               # nothing left to do

    # an unsplit-failed summary (status failed, no fail_below_init in its eval) is re-evaluated and gets the new status
    unsplit = {**off, "status": "failed", "reason": "did not converge: last-epoch loss 9 >= 1 x ...",
              "eval": {k: v for k, v in off["eval"].items() if k != "fail_below_init"}}
    (d / "summary.json").write_text(json.dumps(unsplit))
    again = run(load_config("tiny", FAST), d, progress=False)
    assert again["status"] == S.DONE and again["wall_s"] == off["wall_s"]
    # an unsplit-failed diverged summary is relabelled, not trained again
    (d / "summary.json").write_text(json.dumps({**unsplit, "reason": "diverged: loss is nan at epoch 1, step 2"}))
    from pretrain.engine import lifecycle as T
    monkeypatch.setattr(T, "Trainer", None)                                  # any training would crash
    relabelled = run(load_config("tiny", FAST), d, progress=False)
    assert relabelled["status"] == S.DIVERGED
    assert json.loads((d / "summary.json").read_text())["status"] == S.DIVERGED


# -- results table -----------------------------------------------------------------------------------------------
def test_results_statuses_unsplit_failed_rows_and_upsert_never_replaces_a_result(tmp_path):
    assert results.STATUSES == ("pending", "running", "done", "diverged", "not_converged", "error")
    assert "knn_init" in results.COLUMNS and "baseline" in results.COLUMNS
    p = tmp_path / "results.csv"
    old = pd.DataFrame([{"grid": "g", "run_id": "a" * 12, "status": "failed", "reason": "diverged: loss is nan"},
                        {"grid": "g", "run_id": "b" * 12, "status": "failed", "reason": "did not converge: loss"},
                        {"grid": "g", "run_id": "c" * 12, "status": "done", "reason": ""}])
    old.to_csv(p, index=False)                                  # a table written before this change
    df = results.read(p).set_index("run_id")
    assert df.loc["a" * 12, "status"] == "diverged" and df.loc["b" * 12, "status"] == "not_converged"
    with pytest.raises(ValueError, match="bad status 'failed'"):
        results.upsert([{"grid": "g", "run_id": "d" * 12, "status": "failed"}], p, key=("grid", "run_id"))
    for rid in ("a", "b", "c"):
        for non_result in ("pending", "running", "error"):
            results.upsert([{"grid": "g", "run_id": rid * 12, "status": non_result}], p, key=("grid", "run_id"))
    df = results.read(p).set_index("run_id")
    assert list(df.loc[[x * 12 for x in "abc"], "status"]) == ["diverged", "not_converged", "done"]
    results.upsert([{"grid": "g", "run_id": "b" * 12, "status": "done"}], p, key=("grid", "run_id"))
    assert results.read(p).set_index("run_id").loc["b" * 12, "status"] == "done"   # a result by a result


def test_plan_reads_unsplit_failed_summaries_and_retry_failed_retries_both(tmp_path):
    gfile = write_grid(tmp_path / "g.yaml", "t_unsplit", [{"moco_m": [0.9, 0.99]}])
    grid, planned = L.plan(str(gfile), "tiny", tmp_path / "runs")
    reasons = ["diverged: loss is nan at epoch 1, step 1", "did not converge: last-epoch loss 9 >= 1 x 8"]
    for p, reason in zip(planned, reasons):
        p.run_dir.mkdir(parents=True)
        cfg = load_config("tiny", p.spec.overrides)
        from pretrain.config import eval_settings
        (p.run_dir / "summary.json").write_text(json.dumps(
            {"status": "failed", "reason": reason, "run_id": p.run_id, "eval": eval_settings(cfg)}))
    _, planned = L.plan(str(gfile), "tiny", tmp_path / "runs")
    # diverged: a result as is; the unsplit-failed not-converged one is re-evaluated (gets the new statuses' criteria)
    assert planned[0].state == S.DIVERGED and planned[0].row["status"] == S.DIVERGED
    assert planned[1].state == "todo" and planned[1].note == L.REEVAL_NOTE
    # the same not_converged summary in the new format is a result; --retry-failed retries both kinds
    (planned[1].run_dir / "summary.json").write_text(json.dumps(
        {**json.loads((planned[1].run_dir / "summary.json").read_text()), "status": "not_converged"}))
    (planned[0].run_dir / "summary.json").write_text(json.dumps(
        {**json.loads((planned[0].run_dir / "summary.json").read_text()), "status": "diverged"}))
    _, planned = L.plan(str(gfile), "tiny", tmp_path / "runs")
    assert [p.state for p in planned] == [S.DIVERGED, S.NOT_CONVERGED]
    _, planned = L.plan(str(gfile), "tiny", tmp_path / "runs", retry_failed=True)
    assert [p.state for p in planned] == ["todo", "todo"]
    assert [p.note for p in planned] == ["retrying diverged run", "retrying not_converged run"]


def test_every_grid_declares_both_criteria():
    """The same declared "fail" criteria in every grid (a run two grids share is one run): loss at chance, or the
    last epoch's loss back up by 0.1 nats (fixed on design seeds); the kNN-below-init proxy is not set."""
    for g in ("fig3_mechanisms", "table1_momentum", "figA1_shuffle_bn", "v2_table1"):
        fixed = load_grid(g)["fixed"]
        assert fixed["fail_loss_frac"] == 1.0 and fixed["fail_loss_rise"] == 0.1, g
        assert "fail_below_init" not in fixed, g


# -- seeds as a grid axis ----------------------------------------------------------------------------------------
def test_seed_axis_defaults_and_precedence(tmp_path):
    assert SEED_DEFAULTS == {"tiny": 6, "cifar10": 3}
    # tiny's 6: the fewest with which m0_fails (McNemar's exact one-sided test, reproduced iff p < 0.025) can be
    # reproduced at all: 6 of 6 discordant seeds give 2^-6, 5 of 5 give 2^-5 > 0.025
    assert binomtest(6, 6, 0.5, alternative="greater").pvalue < 0.025 < binomtest(5, 5, 0.5, alternative="greater").pvalue
    g = load_grid("table1_momentum")
    assert resolve_seeds(g, "tiny") == 6 and resolve_seeds(g, "cifar10") == 3 and resolve_seeds(g, "imagenet") == 1
    runs = expand(g, "tiny")
    assert len(runs) == 24 and [r.overrides["seed"] for r in runs[:4]] == [1000] * 4    # seed-major
    assert sorted({r.overrides["seed"] for r in runs}) == list(range(1000, 1006))       # tiny's fresh range
    assert all(r.label.endswith(f"seed={r.overrides['seed']}") for r in runs)
    f = tmp_path / "g.yaml"
    f.write_text(yaml.safe_dump({"name": "t", "sweep": [{"moco_m": [0.9, 0.99]}, {"moco_m": 0.5, "seed": 7}],
                                 "seeds": 2, "presets": {"tiny": {"seeds": 3}, "cifar10": {}, "imagenet": {}}}))
    g = load_grid(str(f))
    assert resolve_seeds(g, "tiny") == 3                     # preset section > grid top level
    assert resolve_seeds(g, "cifar10") == 2                  # grid top level > default
    assert resolve_seeds(g, "tiny", 4) == 4                  # command line > everything
    runs = expand(g, "tiny")
    assert [(r.overrides["moco_m"], r.overrides["seed"]) for r in runs] == \
        [(0.9, 1000), (0.99, 1000), (0.5, 7), (0.9, 1001), (0.99, 1001), (0.9, 1002), (0.99, 1002)]  # own seed: once
    assert [r.overrides["seed"] for r in expand(g, "tiny", seed=5)] == [5, 5, 5]       # --set seed: every run
    for bad in (0, -1, "two"):
        with pytest.raises(UserError, match="seeds must be an integer >= 1"):
            resolve_seeds({**g, "seeds": bad, "presets": {"tiny": {}}}, "tiny")


def test_seeds_get_their_own_run_ids_and_seed_0_is_the_run_without_a_seed(tmp_path):
    gfile = write_grid(tmp_path / "g.yaml", "t_seeds", [{"moco_m": 0.9}], seeds=None)
    _, planned = L.plan(str(gfile), "tiny", tmp_path / "runs", seeds=2, seed_start=0)
    assert [p.spec.overrides["seed"] for p in planned] == [0, 1]
    assert planned[0].run_id != planned[1].run_id and planned[0].run_dir != planned[1].run_dir
    _, one = L.plan(str(gfile), "tiny", tmp_path / "runs", sets={"seed": 0})
    assert [p.run_id for p in one] == [planned[0].run_id]
    no_seed = {k: v for k, v in planned[0].spec.overrides.items() if k != "seed"}
    assert config_hash(load_config("tiny", no_seed), 1) == planned[0].run_id
    _, s3 = L.plan(str(gfile), "tiny", tmp_path / "runs", sets={"seed": 3})
    assert len(s3) == 1 and s3[0].spec.overrides["seed"] == 3
    _, default = L.plan(str(gfile), "tiny", tmp_path / "runs")
    assert len(default) == 6                                 # tiny's default
    with pytest.raises(UserError, match="--set seed=1 runs exactly that seed and --seeds 2"):
        L.plan(str(gfile), "tiny", tmp_path / "runs", sets={"seed": 1}, seeds=2)


def test_set_seed_with_seeds_is_one_line_exit_2(tmp_path):
    gfile = write_grid(tmp_path / "g.yaml", "t_seedcli", [{"moco_m": 0.9}])
    for cmd in (["run", str(gfile), "--executor", "local", "--dry-run"], ["status", str(gfile)]):
        r = subprocess.run([sys.executable, "-m", "ablations", *cmd, "--set", "seed=1", "--seeds", "2"], cwd=REPO,
                           capture_output=True, text=True, timeout=120,
                           env={**__import__("os").environ, "MOCOBENCH_RUNS": str(tmp_path / "runs")})
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--set seed=1" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "ablations", "run", str(gfile), "--executor", "local", "--dry-run",
                        "--no-bench", "--seeds", "3"], cwd=REPO, capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "MOCOBENCH_RUNS": str(tmp_path / "runs"),
                            "MOCOBENCH_RESULTS": str(tmp_path / "r.csv")})
    assert r.returncode == 0 and r.stdout.count(" todo ") == 3 and "seed=1002" in r.stdout, r.stdout + r.stderr


# -- baselines ---------------------------------------------------------------------------------------------------
def test_initial_encoder_is_the_trainers_bit_for_bit(tmp_path):
    from pretrain.eval.baselines import initial_encoder
    from pretrain.engine.trainer import Trainer
    for over in (FAST, {**FAST, "seed": 3, "mechanism": "memory_bank"}):
        cfg = load_config("tiny", over)
        ref = initial_encoder(cfg).state_dict()
        got = Trainer(cfg, tmp_path / "t", progress=False).model.encoder_q.state_dict()
        assert list(got) == list(ref)
        for k in ref:
            assert torch.equal(got[k].cpu(), ref[k]), k
    a = initial_encoder(load_config("tiny", FAST)).state_dict()
    b = initial_encoder(load_config("tiny", {**FAST, "seed": 1})).state_dict()
    assert not torch.equal(a["conv1.weight"], b["conv1.weight"])


def _numpy_weighted_knn(tr, tr_y, te, te_y, mean, std, k, t, classes):
    def feats(x):
        x = x.astype(np.float64) / 255.0
        x = (x - np.asarray(mean)[None, :, None, None]) / np.asarray(std)[None, :, None, None]
        x = x.reshape(len(x), -1)
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = feats(te) @ feats(tr).T
    idx = np.argsort(-sim, axis=1)[:, :k]
    correct = 0
    for i in range(len(te)):
        score = np.zeros(classes)
        for j in idx[i]:
            score[tr_y[j]] += np.exp(sim[i, j] / t)
        correct += int(score.argmax() == te_y[i])
    return 100.0 * correct / len(te)


def test_raw_pixel_knn_equals_a_direct_computation():
    from pretrain.data import datasets as data
    from pretrain.eval.baselines import knn_raw_pixels
    cfg = load_config("tiny", {**FAST, "knn_k": 5, "knn_t": 0.1, "image_size": 8, "in_chans": 3})
    g = np.random.default_rng(0)
    tr = g.integers(0, 256, (60, 3, 8, 8), dtype=np.uint8)
    te = g.integers(0, 256, (25, 3, 8, 8), dtype=np.uint8)
    tr_y, te_y = g.integers(0, 3, 60), g.integers(0, 3, 25)
    te[:10] = np.clip(tr[:10].astype(int) + g.integers(-20, 21, (10, 3, 8, 8)), 0, 255)   # some near neighbours
    te_y[:10] = tr_y[:10]
    sets = ((torch.from_numpy(tr), torch.from_numpy(tr_y)), (torch.from_numpy(te), torch.from_numpy(te_y)))
    mean, std = data.stats(cfg)
    want = _numpy_weighted_knn(tr, tr_y, te, te_y, mean, std, 5, 0.1, 3)
    assert knn_raw_pixels(cfg, "cpu", sets) == pytest.approx(want)
    assert want >= 40.0


def test_linear_baselines_use_the_fixed_protocol_and_refuse_imagefolder():
    from pretrain.eval.baselines import linear_random_init, linear_raw_pixels
    from pretrain.eval.protocol import LinclsConfig
    cfg = load_config("tiny", FAST)
    lc = LinclsConfig(epochs=5, schedule=[3, 4], batch_size=64, lr=1.0)
    raw = linear_raw_pixels(cfg, lc)
    assert raw == {**linear_raw_pixels(cfg, lc), "seconds": raw["seconds"]}            # deterministic
    assert 30.0 < raw["lincls_acc1"] <= raw["lincls_acc5"] <= 100.0                  # 10 synthetic classes
    ri = linear_random_init(cfg, lc)
    assert 0.0 <= ri["lincls_acc1"] <= 100.0 and ri["cache_features"] is True
    inet = load_config("imagenet", {"data": "/nonexistent"})
    with pytest.raises(UserError, match="fixed-size dataset"):
        linear_raw_pixels(inet)
    with pytest.raises(UserError, match="fixed-size dataset"):
        linear_random_init(inet)


def test_knn_cli_prints_checkpoint_and_both_baselines(tmp_path, capsys):
    from pretrain.knn import main
    run(load_config("tiny", FAST), tmp_path, progress=False)
    args = ["--preset", "tiny", "--checkpoint", str(tmp_path / "checkpoint.pth")]
    for k, v in FAST.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3 and str(tmp_path / "checkpoint.pth") in out[0]
    assert out[1].startswith("kNN top-1 (random init, seed 0") and out[2].startswith("kNN top-1 (raw pixels")
    assert json.loads((tmp_path / "summary.json").read_text())["knn_acc"] == pytest.approx(
        float(out[0].rsplit(" ", 1)[1].rstrip("%")), abs=0.006)


def test_ablations_baselines_rows_are_written_once(tmp_path, monkeypatch):
    from ablations import baselines as B
    from pretrain.eval import baselines as PB
    res = tmp_path / "results.csv"
    sets = {k: v for k, v in FAST.items() if k not in ("epochs", "max_steps")}
    calls = []
    for name in ("knn_random_init", "knn_raw_pixels", "linear_random_init", "linear_raw_pixels"):
        f = getattr(PB, name)
        monkeypatch.setattr(B, name, lambda *a, _f=f, _n=name, **kw: calls.append(_n) or _f(*a, **kw))
    rows = B.run("tiny", 2, sets=sets, results_path=res, progress=False, seed_start=0)
    assert sorted(calls) == sorted(["knn_random_init"] * 2 + ["linear_random_init"] * 2 + ["knn_raw_pixels",
                                                                                        "linear_raw_pixels"])
    df = results.read(res)
    assert len(df) == 3 and set(df["grid"]) == {"baselines"} and set(df["status"]) == {"done"}
    assert sorted(zip(df["baseline"], df["seed"].astype(int))) == \
        [("random_init", 0), ("random_init", 1), ("raw_pixels", 0)]
    assert df["run_id"].str.fullmatch(r"[0-9a-f]{12}").all() and df["run_dir"].isna().all()
    assert set(df["dataset"]) == {"synthetic"} and set(df["arch"]) == {"resnet18"} and set(df["preset"]) == {"tiny"}
    for c in ("knn_acc", "lincls_acc1", "lincls_acc5"):
        assert df[c].astype(float).between(0, 100).all(), c
    assert df["host"].notna().all() and df["git_sha"].notna().all() and df["finished_at"].notna().all()
    ri = df[df["baseline"] == "random_init"].sort_values("seed")
    assert ri["knn_acc"].astype(float).tolist()[0] == pytest.approx(
        PB.knn_random_init(load_config("tiny", {**sets, "seed": 0}), "cpu"))
    calls.clear()
    again = B.run("tiny", 2, sets=sets, results_path=res, progress=False, seed_start=0)
    assert calls == [] and len(again) == 3                               # finished rows are not recomputed
    pd.testing.assert_frame_equal(df, results.read(res))
    B.run("tiny", 3, sets=sets, results_path=res, progress=False, lincls=False, seed_start=0)
    assert sorted(calls) == ["knn_random_init"] and len(results.read(res)) == 4       # only seed 2 is new
    assert B.plan("tiny", 1, sets)[0][3] == B.plan("tiny", 1, sets)[0][3]          # a stable id


def test_a_run_shared_with_another_grid_is_reevaluated_in_place_not_retrained(tmp_path):
    from pretrain.config import eval_settings
    ga = write_grid(tmp_path / "a.yaml", "t_ga", [{"moco_m": 0.9}], {"fail_below_init": True})
    gb = write_grid(tmp_path / "b.yaml", "t_gb", [{"moco_m": 0.9}], {"fail_below_init": True})
    _, (p,) = L.plan(str(ga), "tiny", tmp_path / "runs")
    p.run_dir.mkdir(parents=True)
    ev = eval_settings(load_config("tiny", p.spec.overrides))
    old = {k: v for k, v in ev.items() if k != "fail_below_init"}          # written before the new key
    (p.run_dir / "summary.json").write_text(json.dumps({"status": "done", "run_id": p.run_id, "eval": old}))
    _, (q,) = L.plan(str(gb), "tiny", tmp_path / "runs")
    assert q.state == "todo" and q.run_dir == p.run_dir and q.note.startswith(L.REEVAL_NOTE)
    (p.run_dir / "summary.json").write_text(json.dumps({"status": "done", "run_id": p.run_id, "eval": ev}))
    _, (q,) = L.plan(str(gb), "tiny", tmp_path / "runs")
    assert q.state == "done" and q.run_dir == p.run_dir

"""The ablation launcher (ablations/): grids as data, job arrays with submitit on a real SLURM and with the local
executor, failed runs recorded with their reason, idempotent reruns, preemption -> requeue -> resume from the
checkpoint, and a 2-task DDP job. Every job runs the real pretrainer (a few steps on the synthetic set).

SLURM tests (marked ``slurm``) use the cluster of tests/conftest_ablations.py::slurm_cluster.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ablations import launcher as L
from ablations import executors as X
from ablations import submission as SUB
from conftest_ablations import preempt
from ablations import results
from ablations.grid import expand, grid_names, load_grid

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # tests/ helpers, any import mode
from conftest_ablations import FAST, REPO, metrics, slurm_cluster, wait_until, write_grid  # noqa: F401
from conftest import TINY_V1
from pretrain.config import config_hash, load_config
from pretrain.base.errors import UserError

pytestmark = pytest.mark.timeout(600)
EXECUTORS = ["local", pytest.param("slurm", marks=pytest.mark.slurm)]


@pytest.fixture
def executor(request):
    kind = request.param
    if kind == "slurm":
        request.getfixturevalue("slurm_cluster")
        return kind, {"cpus_per_task": 1, "time": 10}
    return kind, {"parallel": 2, "time": 10}


def _launch(grid_file, tmp_path, kind, params, results_path):
    """plan -> record -> submit, with a fresh submitit folder (SLURM job ids restart with the cluster)."""
    grid, planned = L.plan(str(grid_file), "tiny", tmp_path / "runs", world=X.launch_world(params))
    SUB.record_existing(grid, "tiny", planned, results_path)
    folder = tmp_path / "submitit" / f"{kind}-{time.monotonic_ns()}"
    sub = SUB.submit(grid, "tiny", planned, kind, params, folder / "%j" if kind == "slurm" else folder,
                   results_path)
    return grid, planned, sub


# -- grids as data ---------------------------------------------------------------------------------------------
def test_paper_grids_at_tiny_and_paper_scale():
    assert set(grid_names()) >= {"fig3_mechanisms", "table1_momentum", "figA1_shuffle_bn", "v2_table1"}
    fig3 = expand(load_grid("fig3_mechanisms"), "imagenet")           # imagenet: one seed by default
    assert len(fig3) == 6 + 6 + 3                       # moco, memory bank x 6 K; end-to-end x 3 K
    e2e = [r.overrides for r in fig3 if r.overrides["mechanism"] == "end_to_end"]
    assert [(o["moco_k"], o["batch_size"], o["lr_scaling"]) for o in e2e] == \
        [(256, 256, "linear"), (512, 512, "linear"), (1024, 1024, "linear")]
    assert all(r.eval == ["knn", "lincls"] for r in fig3)
    tiny = expand(load_grid("fig3_mechanisms"), "tiny", seeds=1)
    subset = load_config("tiny").subset
    k_max = max(r.overrides.get("moco_k", 0) for r in tiny)
    # K <= 0.41 N: a bank draw of K holds the query's own entry with probability 34 % (the grid's why says so)
    assert k_max == 4096 and round(1 - (1 - 1 / subset) ** k_max, 2) == 0.34 and k_max <= 0.41 * subset
    assert sorted((r.overrides["mechanism"], r.overrides["moco_k"]) for r in tiny) == [
        ("end_to_end", 256), ("end_to_end", 1024), ("memory_bank", 256), ("memory_bank", 4096), ("moco", 256),
        ("moco", 4096)]                                                      # the K the claims compare
    m = [r.overrides["moco_m"] for r in expand(load_grid("table1_momentum"), "tiny", seeds=1)]
    assert m == [0.0, 0.9, 0.99, 0.999]                  # 0.9999 cannot move the key encoder in 780 steps
    v2 = expand(load_grid("v2_table1"), "tiny", seeds=1)
    e = load_config("tiny").epochs
    assert [r.overrides["epochs"] for r in v2] == [e] * 4 and not any(r.overrides["cos"] for r in v2)
    assert {tuple(r.overrides["schedule"]) for r in v2} == {(round(0.6 * e), round(0.8 * e))}   # 120/200, 160/200
    assert all(r.overrides["moco_t"] == (0.2 if r.overrides["mlp"] else 0.07) for r in v2)
    full = expand(load_grid("v2_table1"), "cifar10", seeds=1)
    assert sorted({r.overrides["epochs"] for r in full}) == [200, 800]          # the cosine rows elsewhere
    # The whole tiny set: identical configs across grids are one run (same config hash).
    hashes = {config_hash(load_config("tiny", r.overrides), 1) for g in
              ("fig3_mechanisms", "table1_momentum", "figA1_shuffle_bn", "v2_table1")
              for r in expand(load_grid(g), "tiny", seeds=1)}
    assert len(hashes) == len(tiny) + 3 + 2 + 4   # table1 m=0.999 and figA1's "on" runs are fig3 runs


def test_bad_grid_input_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsweep: [{moco_kk: [1, 2]}]\npresets: {tiny: {}}\n")
    with pytest.raises(UserError, match="moco_kk"):
        expand(load_grid(str(bad)), "tiny")
    with pytest.raises(UserError, match="no scaling for preset"):
        expand(load_grid("fig3_mechanisms"), "imagenet-v2")
    for argv, msg in ((["run", "no_such_grid", "--executor", "local"], "unknown grid"),
                      (["run", str(tmp_path / "missing.yaml"), "--executor", "local"], "grid file not found"),
                      (["run", str(bad), "--executor", "local", "--profile", str(tmp_path / "nope.yaml")],
                       "profile not found")):
        r = subprocess.run([sys.executable, "-m", "ablations", *argv], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and msg in r.stderr and "Traceback" not in r.stderr


def test_dry_run_prints_runs_and_cost_from_measured_speed(tmp_path):
    """The estimate takes the images/s of finished runs of the same design (their run directory's config):
    a run of the first tiny design (stride-1 stem, fp32: 4x slower) is not used for today's."""
    from pretrain.config import save_yaml
    res = tmp_path / "results.csv"
    rows = []
    for rid, over, ips in (("a" * 12, {}, 200.0), ("b" * 12, TINY_V1, 50.0)):
        d = tmp_path / "done" / rid
        d.mkdir(parents=True)
        save_yaml(load_config("tiny", {**over, "moco_k": 4096}), d / "config.yaml")
        rows.append({"grid": "x", "run_id": rid, "preset": "tiny", "status": "done", "mechanism": "moco",
                     "run_dir": str(d), "images_per_s": ips})
    results.upsert(rows, res)
    env = {**os.environ, "MOCOBENCH_RESULTS": str(res), "MOCOBENCH_RUNS": str(tmp_path / "runs")}
    r = subprocess.run([sys.executable, "-m", "ablations", "run", "table1_momentum", "--preset", "tiny",
                        "--executor", "slurm", "--dry-run"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(" todo ") == 4 * 6                 # 4 cells at tiny x the tiny preset's 6 seeds
    assert all(f"seed={s}" in r.stdout for s in range(1000, 1006))     # tiny's fresh seed range
    assert "seed=1006" not in r.stdout
    cfg = load_config("tiny", {"moco_k": 4096})
    hours = 24 * cfg.subset * cfg.epochs / 200.0 / 3600
    assert f"estimated pretraining time: {hours:.2f} h" in r.stdout
    assert "finished tiny runs of the same design for 24 run(s)" in r.stdout and "another design" not in r.stdout
    assert not (tmp_path / "runs").exists()                 # nothing submitted, nothing written


def test_dry_run_without_finished_runs_benches_or_says_unknown_never_zero_hours(tmp_path):
    """No finished run to learn images/s from: a few steps of pretrain.bench per mechanism (the real one),
    or with --no-bench "unknown"; never a made-up "0.00 h"."""
    gfile = write_grid(tmp_path / "g.yaml", "t_cost", [{"moco_m": [0.9, 0.99]}])
    env = {**os.environ, "MOCOBENCH_RESULTS": str(tmp_path / "results.csv"), "MOCOBENCH_RUNS": str(tmp_path / "runs")}
    base = [sys.executable, "-m", "ablations", "run", str(gfile), "--preset", "tiny", "--executor", "local",
            "--dry-run"]
    r = subprocess.run(base + ["--no-bench"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "estimated pretraining time: unknown (2 run(s) without a measured" in r.stdout
    assert "0.00 h" not in r.stdout
    # the total over the four grids says unknown too, never a made-up 0.00 h
    r = subprocess.run([sys.executable, "-m", "ablations", "run", "all", "--preset", "tiny", "--executor", "local",
                        "--dry-run", "--no-bench"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "all 4 grids: estimated pretraining time unknown (90 run(s) without" in r.stdout
    assert "0.00 h" not in r.stdout
    r = subprocess.run(base, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    m = re.search(r"estimated pretraining time: ([0-9.]+) h serial wall.*images/s measured now: moco ([0-9]+)",
                  r.stdout)
    assert m and float(m.group(2)) > 0, r.stdout
    images = 2 * FAST["max_steps"] * FAST["batch_size"] * FAST["epochs"]          # 2 runs
    assert float(m.group(1)) == pytest.approx(images / float(m.group(2)) / 3600, abs=0.006)
    assert "measuring images/s of moco with pretrain.bench" in r.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results.csv").exists()


# -- launching (local executor, and a real SLURM) ----------------------------------------------------------
@pytest.mark.parametrize("executor", EXECUTORS, indirect=True)
def test_array_with_a_failing_run_then_rerun_submits_nothing(executor, tmp_path):
    kind, params = executor
    res = tmp_path / "results.csv"
    gfile = write_grid(tmp_path / "g.yaml", f"t_array_{kind}",
                       [{"moco_m": [0.9, 0.99]}, {"moco_m": 0.99, "lr": 1.0e30},   # lr 1e30: the loss diverges
                        # loss >= 1 % of chance: "did not converge" (seed 1: a fail criterion alone does not
                        # make another training run, and a grid refuses two cells that train the same run)
                        {"moco_m": 0.9, "fail_loss_frac": 0.01, "seed": 1}],
                       evals=("knn", "lincls"))
    grid, planned, sub = _launch(gfile, tmp_path, kind, params, res)
    assert len(sub) == 4
    if kind == "slurm":                                      # one job array
        ids = [str(h.job.job_id) for h in sub]
        assert len({i.split("_")[0] for i in ids}) == 1 and sorted(i.split("_")[1] for i in ids) == list("0123")
    t0 = time.monotonic()
    rows = SUB.wait_all(grid, "tiny", sub, kind, params, 300, res, progress=False)
    wall = time.monotonic() - t0
    assert len(rows) == 4
    bad = [r for r in rows if float(r["lr"]) > 1e20]
    assert len(bad) == 1 and bad[0]["status"] == "diverged" and "diverged" in bad[0]["reason"], bad
    assert pd.isna(bad[0].get("lincls_acc1")), bad                    # no linear protocol on NaN weights
    stuck = [r for r in rows if "did not converge" in str(r.get("reason"))]
    assert len(stuck) == 1 and stuck[0]["status"] == "not_converged", rows
    assert 0 <= float(stuck[0]["lincls_acc1"]) <= 100, stuck          # ... but on a run that did not converge
    good = [r for r in rows if r["status"] == "done"]
    assert sorted(float(r["moco_m"]) for r in good) == [0.9, 0.99], rows
    df = results.read(res)
    assert len(df) == 4 and set(df["grid"]) == {grid["name"]}
    ok = df[df["status"] == "done"]
    assert ok["knn_acc"].astype(float).between(0, 100).all()
    assert ok["lincls_acc1"].astype(float).between(0, 100).all()          # the linear protocol ran
    assert (ok["lincls_acc5"].astype(float) >= ok["lincls_acc1"].astype(float)).all()
    for c in ("wall_s", "images_per_s", "peak_mem_mb"):
        assert (ok[c].astype(float) > 0).all(), c
    assert set(df["moco_m"].astype(float)) == {0.9, 0.99} and ok["host"].notna().all()
    print(f"\n[{kind}] 4-run array finished in {wall:.1f} s")

    # Rerun: every run is finished (done, diverged, not_converged), nothing is submitted, the table is unchanged.
    grid2, planned2, sub2 = _launch(gfile, tmp_path, kind, params, res)
    assert sub2 == [] and sorted(p.state for p in planned2) == ["diverged", "done", "done", "not_converged"]
    env = {**os.environ, "MOCOBENCH_RESULTS": str(res), "MOCOBENCH_RUNS": str(tmp_path / "runs"),
           "MOCOBENCH_SUBMITIT": str(tmp_path / "submitit")}
    r = subprocess.run([sys.executable, "-m", "ablations", "run", str(gfile), "--executor", kind],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "nothing to submit" in r.stdout, r.stdout + r.stderr
    df2 = results.read(res)
    pd.testing.assert_frame_equal(df.reset_index(drop=True), df2.reset_index(drop=True))
    r = subprocess.run([sys.executable, "-m", "ablations", "status", str(gfile)], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "1 diverged, 2 done, 1 not_converged" in r.stdout, r.stdout


@pytest.mark.parametrize("executor", EXECUTORS, indirect=True)
def test_preempted_job_requeues_and_resumes_from_checkpoint(executor, tmp_path):
    kind, params = executor
    res = tmp_path / "results.csv"
    epochs = 10
    gfile = write_grid(tmp_path / "g.yaml", f"t_preempt_{kind}", [{"moco_m": 0.99}],
                       {"epochs": epochs, "max_steps": 25, "subset": 800})
    grid, planned, sub = _launch(gfile, tmp_path, kind, params, res)
    (h,) = sub
    p, job = h.planned, h.job
    before = wait_until(lambda: metrics(p.run_dir), 240, "the first epoch's checkpoint")
    assert not (p.run_dir / "summary.json").exists() and len(before) < epochs
    preempt(job)             # job._interrupt() (SIGUSR2 to the tasks): checkpoint() + requeue
    rows = SUB.wait_all(grid, "tiny", sub, kind, params, 300, res, progress=False)
    assert rows[0]["status"] == "done", rows
    after = metrics(p.run_dir)
    assert [m["epoch"] for m in after] == list(range(1, epochs + 1))
    # The epochs finished before the preemption were kept, not trained again (their timings are unchanged).
    assert after[:len(before)] == before
    log = "".join(Path(f).read_text() for f in (job.paths.stdout, job.paths.stderr) if Path(f).exists())
    assert "equeued" in log, log[-3000:]
    if kind == "slurm":
        st = subprocess.run(["sacct", "-n", "-D", "-X", "-j", str(job.job_id), "-o", "state"],
                            capture_output=True, text=True, timeout=30).stdout.split()
        assert "REQUEUED" in st or "PREEMPTED" in st, st
    print(f"\n[{kind}] preempted after {len(before)}/{epochs} epochs, resumed to {len(after)}")


@pytest.mark.parametrize("executor", EXECUTORS, indirect=True)
def test_two_task_ddp_job_with_ddp_shuffle_bn(executor, tmp_path):
    kind, params = executor
    params = {**params, "ntasks_per_node": 2}
    res = tmp_path / "results.csv"
    gfile = write_grid(tmp_path / "g.yaml", f"t_ddp_{kind}", [{"shuffle_bn": "ddp"}])
    grid, planned, sub = _launch(gfile, tmp_path, kind, params, res)
    rows = SUB.wait_all(grid, "tiny", sub, kind, params, 300, res, progress=False)
    # shuffle_bn=ddp refuses to run in one process: "done" means the two tasks formed a process group.
    assert rows[0]["status"] == "done", rows
    job = sub[0].job
    per_task = job.results()
    assert len(per_task) == 2 and per_task[0]["status"] == "done" and per_task[1] == {}
    assert len(metrics(sub[0].planned.run_dir)) == 2


def test_job_refuses_a_run_whose_config_changed_since_submission(tmp_path):
    """The job's one re-check: its config must hash (this code, this number of processes) to the planned run
    id. Here it does not: the job records why, trains nothing, and the row is an error (no result), which the
    next plan retries."""
    from ablations.job import GridJob
    res = tmp_path / "results.csv"
    gfile = write_grid(tmp_path / "g.yaml", "t_changed", [{"moco_m": 0.9}])
    grid, planned = L.plan(str(gfile), "tiny", tmp_path / "runs")
    p = planned[0]
    job = GridJob(grid["name"], "tiny", p.cfg, str(p.run_dir), ["knn"], str(res), "sha", "0" * 12)
    ex = X.make_executor("debug", tmp_path / "submitit", {})
    row = ex.submit(job).result()
    assert row["status"] == "error" and row["error_kind"] == "config_changed"
    assert "config changed since submission" in row["reason"] and p.run_id in row["reason"]
    assert row["run_id"] == "0" * 12 and not (p.run_dir / "checkpoint.pth").exists()
    assert results.read(res).set_index("run_id").loc["0" * 12, "status"] == "error"


# -- a run is resolved once --------------------------------------------------------------------------------------
def test_planned_run_ids_are_unchanged():
    """Run ids computed on 84bc967, before a run was resolved once and before stem_stride (existing run
    directories stay theirs; 1717ffa79246 is a run of the first multi-seed tiny set):
    fig3 at tiny (seed 0, one process) and at imagenet with 8 processes."""
    _, tiny = L.plan("fig3_mechanisms", "tiny", Path("/nonexistent-runs"), seeds=1, sets=TINY_V1, seed_start=0)
    ids = {p.spec.label: p.run_id for p in tiny}       # the first tiny design
    assert len(ids) == 6
    assert ids["mechanism=moco moco_k=256 seed=0"] == "51a525236ea2"
    assert ids["mechanism=moco moco_k=4096 seed=0"] == "f8b3b805044b"
    assert ids["mechanism=memory_bank moco_k=4096 seed=0"] == "1717ffa79246"
    assert config_hash(load_config("tiny", {**TINY_V1, "mechanism": "end_to_end", "moco_k": 512, "batch_size": 512,
                                            "lr_scaling": "linear", "fail_loss_frac": 1.0,
                                            "fail_below_init": True}), 1) == "41e9046c5841"
    _, big = L.plan("fig3_mechanisms", "imagenet", Path("/nonexistent-runs"), world=8)
    assert {p.spec.label: p.run_id for p in big}["mechanism=moco moco_k=65536 seed=0"] == "e1bfda1aa85b"


def test_a_grid_is_resolved_once_per_run(monkeypatch):
    """expand reads the preset once and resolves each run's config once (RunSpec.cfg); plan hashes that
    config and resolves nothing itself."""
    import ablations.grid as G
    calls = []
    real = G.load_config

    def counting(preset, overrides=None):
        calls.append(overrides)
        return real(preset, overrides)
    monkeypatch.setattr(G, "load_config", counting)
    monkeypatch.setattr("pretrain.config.load_config", lambda *a, **k: pytest.fail("resolved outside expand"))
    _, planned = L.plan("fig3_mechanisms", "tiny", Path("/nonexistent-runs"), seeds=2)
    assert len(planned) == 12 and len(calls) == 1 + 12 and calls[0] is None       # the preset, then each run
    e2e = [p for p in planned if p.cfg.mechanism == "end_to_end" and p.cfg.batch_size == 1024]
    assert [(p.cfg.moco_k, p.cfg.seed) for p in e2e] == [(1024, 1000), (1024, 1001)]     # tiny's fresh seed range
    assert all(p.cfg is p.spec.cfg and p.run_id == config_hash(p.cfg, 1) for p in planned)


def test_the_job_trains_the_planned_config_without_resolving_it(tmp_path, monkeypatch):
    """The job gets the resolved config: it neither reads the preset nor re-resolves (a preset edited or
    removed after submission does not change the run), and trains it under the planned run id."""
    from ablations.job import GridJob
    res = tmp_path / "results.csv"
    gfile = write_grid(tmp_path / "g.yaml", "t_once", [{"moco_m": 0.9}], fixed={"epochs": 1, "max_steps": 1})
    grid, planned = L.plan(str(gfile), "tiny", tmp_path / "runs")
    p = planned[0]
    monkeypatch.setattr("pretrain.config.load_config", lambda *a, **k: pytest.fail("the job resolved again"))
    monkeypatch.setattr("ablations.grid.load_config", lambda *a, **k: pytest.fail("the job resolved again"))
    job = GridJob(grid["name"], "no-such-preset", p.cfg, str(p.run_dir), ["knn"], str(res), "sha", p.run_id)
    row = X.make_executor("debug", tmp_path / "submitit", {}).submit(job).result()
    assert row["status"] == "done" and row["run_id"] == p.run_id and float(row["moco_m"]) == 0.9
    assert (p.run_dir / "checkpoint.pth").exists()


def test_rows_keep_the_configured_lr_and_record_the_effective_one(tmp_path):
    """lr_scaling linear: the row's lr is the configured one (tiny: 0.06 at lr_ref_batch 128) and lr_effective
    the one used (x batch / 128); a table written before lr_effective existed (its lr was the one used) still reads,
    with that value as lr_effective."""
    from ablations.rows import base_row
    _, planned = L.plan("fig3_mechanisms", "tiny", tmp_path / "runs", seeds=1)
    e2e = {p.cfg.batch_size: base_row("fig3_mechanisms", "tiny", p.run_id, p.run_dir, p.cfg)
           for p in planned if p.cfg.mechanism == "end_to_end"}
    assert {b: (r["lr"], r["lr_effective"]) for b, r in e2e.items()} == \
        {256: (0.06, 0.12), 1024: (0.06, 0.48)}
    moco = [base_row("g", "tiny", p.run_id, p.run_dir, p.cfg) for p in planned if p.cfg.mechanism == "moco"]
    assert {(r["lr"], r["lr_effective"]) for r in moco} == {(0.06, 0.06)}
    res = tmp_path / "results.csv"
    results.upsert([{**e2e[1024], "status": "pending"}], res, key=("grid", "run_id"))
    assert results.read(res)[["lr", "lr_effective"]].astype(float).values.tolist() == [[0.06, 0.48]]
    old = tmp_path / "old.csv"
    old.write_text("grid,run_id,status,mechanism,batch_size,lr\nfig3_mechanisms,abc,done,end_to_end,1024,0.48\n"
                   "transfer,def,done,,16,0.02\n")
    df = results.read(old)
    assert df["lr_effective"].astype(float).tolist() == [0.48, 0.02]
    assert df["lr"].astype(float).tolist() == [0.48, 0.02]


def test_the_cost_estimate_benches_the_resolved_config(tmp_path, monkeypatch):
    """pretrain.bench gets the run's resolved config as a complete YAML file, not flags re-parsed on top of
    the preset; read back it is the same config."""
    import json as _json
    from ablations import cost
    from pretrain.config import load_config as _load
    cfg = load_config("tiny", {"mechanism": "end_to_end", "batch_size": 64, "lr_scaling": "linear",
                               "schedule": [2, 4], "shuffle_bn": "off", "seed": 3})
    seen = {}

    def fake_run(argv, **kw):
        i = argv.index("--preset")
        seen["argv"] = argv
        seen["cfg"] = _load(argv[i + 1])
        return subprocess.CompletedProcess(argv, 0, _json.dumps({"images_per_s": 123.5}) + "\n", "")
    monkeypatch.setattr(cost.subprocess, "run", fake_run)
    assert cost.bench_images_per_s(cfg, steps=3) == 123.5
    assert seen["argv"][1:3] == ["-m", "pretrain.bench"] and "--mechanism" not in seen["argv"]
    assert seen["cfg"] == cfg and seen["cfg"].moco_k == 64 and seen["cfg"].shuffle_bn == "off"
    assert not Path(seen["argv"][seen["argv"].index("--preset") + 1]).exists()      # removed afterwards


def test_cost_estimate_falls_back_to_another_design_and_says_so(tmp_path):
    """No finished run of the planned design and no bench: another design's images/s, labelled a rough guess."""
    from ablations import cost
    from pretrain.config import save_yaml
    d = tmp_path / "old"
    d.mkdir()
    save_yaml(load_config("tiny", {**TINY_V1, "moco_k": 4096}), d / "config.yaml")
    res = tmp_path / "results.csv"
    results.upsert([{"grid": "x", "run_id": "b" * 12, "preset": "tiny", "status": "done", "mechanism": "moco",
                     "run_dir": str(d), "images_per_s": 50.0}], res)
    _, planned = L.plan("table1_momentum", "tiny", tmp_path / "runs", seeds=1)
    head = cost.estimate(planned, "tiny", res, bench=False)[-1]
    cfg = load_config("tiny")
    assert f"{4 * cfg.subset * cfg.epochs / 50.0 / 3600:.2f} h serial wall" in head
    assert "another design for 4 run(s): a rough guess" in head and "same design" not in head
    # --parallel 2 (local): the serial wall halved, and the caller's total over grids
    totals = []
    head2 = cost.estimate(planned, "tiny", res, params={"parallel": 2}, bench=False, totals=totals)[-1]
    serial = 4 * cfg.subset * cfg.epochs / 50.0
    assert totals == [(serial, 0)] and f"~{serial / 2 / 3600:.2f} h with 2 runs at a time" in head2
    assert "runs at a time" not in head and "pretraining only" in head
    assert cost.speed_key(load_config("tiny").to_dict()) != cost.speed_key(load_config("tiny", TINY_V1).to_dict())

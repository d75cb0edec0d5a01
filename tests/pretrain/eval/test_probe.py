"""The converged linear probe (pretrain/eval/probe.py): converged (more iterations or a tighter tolerance move the
accuracy by < 0.1 point, the gradient norm at the solution is small), invariant to each feature's scale, lambda
chosen on the validation split and never on the test set; selectable as ``--protocol logreg``."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrain.config import load_config
from pretrain.data.datasets import make_synthetic
from pretrain.eval.protocol import LinclsConfig
from pretrain.eval.lincls import fixed_protocol
from pretrain.eval.protocol import LAMBDAS, ProbeConfig
from pretrain.eval.probe import linear_probe
from pretrain.eval.protocol import default_protocol, for_dataset, result_for

REPO = Path(__file__).resolve().parents[3]


def _task(n=2400, n_test=1200, d=48, k=10, noise=3.0, seed=0):
    """A linear 10-class task with label noise (a probe at ~60 %, far from a ceiling)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(k, d))
    x = rng.normal(size=(n + n_test, d))
    y = (x @ w.T + noise * rng.gumbel(size=(n + n_test, k))).argmax(1)
    return x[:n], y[:n], x[n:], y[n:]


def test_the_probe_is_converged():
    ftr, ytr, fte, yte = _task()
    base = linear_probe(ftr, ytr, fte, yte)
    assert base["converged"] and base["iterations"] < ProbeConfig().max_iter
    assert base["grad_norm"] < 1e-4, base["grad_norm"]
    assert 40 < base["lincls_acc1"] < 90                      # not at a ceiling or at chance
    more = linear_probe(ftr, ytr, fte, yte, ProbeConfig(max_iter=2 * ProbeConfig().max_iter, tol=1e-8))
    assert more["lambda"] == base["lambda"]
    assert abs(more["lincls_acc1"] - base["lincls_acc1"]) < 0.1
    assert more["grad_norm"] <= base["grad_norm"] * 1.01


def test_a_capped_solver_says_it_did_not_converge():
    ftr, ytr, fte, yte = _task()
    r = linear_probe(ftr, ytr, fte, yte, ProbeConfig(max_iter=2, tol=1e-12))
    assert r["converged"] is False and r["iterations"] == 2


def test_the_probe_does_not_depend_on_feature_scale():
    """Standardised features: scaling each feature by its own factor (1e-3 ... 1e3) changes nothing."""
    ftr, ytr, fte, yte = _task()
    scale = 10.0 ** np.random.default_rng(1).uniform(-3, 3, size=ftr.shape[1])
    a = linear_probe(ftr, ytr, fte, yte)
    b = linear_probe(ftr * scale, ytr, fte * scale, yte)
    assert a["lambda"] == b["lambda"] and abs(a["lincls_acc1"] - b["lincls_acc1"]) < 0.1


def test_lambda_is_chosen_on_validation_never_on_the_test_set():
    ftr, ytr, fte, yte = _task()
    a = linear_probe(ftr, ytr, fte, yte)
    shuffled = np.random.default_rng(2).permutation(yte)
    b = linear_probe(ftr, ytr, fte, shuffled)
    assert a["lambda"] == b["lambda"] and a["val_acc1"] == b["val_acc1"]
    assert set(a["val_acc1"]) == {f"{lam:g}" for lam in LAMBDAS}
    assert a["val_acc1"][f"{a['lambda']:g}"] == max(a["val_acc1"].values())


def test_strong_regularisation_wins_where_features_are_noise():
    """With 400 pure-noise features and 300 images, a weak lambda overfits: the validation split picks a
    stronger one than the weakest of the grid."""
    ftr, ytr, fte, yte = _task(n=300, n_test=300, d=400, noise=50.0)
    assert linear_probe(ftr, ytr, fte, yte)["lambda"] > LAMBDAS[0]


def _synthetic_cfg():
    return dataclasses.replace(load_config("tiny"), dataset="synthetic", in_chans=3, image_size=16,
                               knn_subset=0, subset=0)


def test_fixed_protocol_runs_the_probe_on_frozen_features():
    cfg = _synthetic_cfg()
    tr, te = make_synthetic(600, True, size=16), make_synthetic(300, False, size=16)
    sets = ((tr.images, tr.labels), (te.images, te.labels))
    res = fixed_protocol(LinclsConfig(protocol="logreg"), cfg, lambda x: x.flatten(1), 3 * 16 * 16,
                         torch.device("cpu"), sets=sets)
    assert res["protocol"] == "logreg" and res["converged"] and res["cache_features"] is True
    assert 0 <= res["lincls_acc1"] <= res["lincls_acc5"] <= 100 and res["lambda"] in LAMBDAS


def test_lincls_cli_protocol_logreg(tmp_path):
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "pretrain", "--preset", "tiny", "--epochs", "1", "--max-steps", "2",
                    "--subset", "512", "--moco-k", "256", "--knn-subset", "256", "--threads", "1", "--no-progress",
                    "--output", str(out)], cwd=REPO, check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-m", "pretrain.lincls", str(out / "checkpoint.pth"), "--protocol",
                        "logreg"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((out / "lincls.json").read_text())
    assert res["protocol"] == "logreg" and res["lincls_config"]["protocol"] == "logreg" and res["converged"]
    assert "logreg probe: lambda" in r.stdout
    bad = subprocess.run([sys.executable, "-m", "pretrain.lincls", str(out / "checkpoint.pth"), "--protocol",
                          "logreg", "--no-cache-features", "--output", str(tmp_path / "x.json")], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


@pytest.mark.parametrize("protocol", ["sgd", "logreg"])
def test_result_for_tells_the_protocols_apart(tmp_path, protocol):
    other = "logreg" if protocol == "sgd" else "sgd"
    res = {"lincls_acc1": 80.0, "backbone": "f" * 64,
           "lincls_config": {**dataclasses.asdict(LinclsConfig(protocol=protocol)), "cache_features": True},
           "probe_config": dataclasses.asdict(ProbeConfig())}
    p = tmp_path / "lincls.json"
    p.write_text(json.dumps(res))
    assert result_for(p, LinclsConfig(protocol=protocol)) == res
    assert result_for(p, LinclsConfig(protocol=other)) is None
    assert result_for(p, LinclsConfig(protocol=protocol), eval_split="val") is None     # scored on other images


def test_a_result_of_other_probe_settings_is_no_result(tmp_path):
    """A probe result computed with other declared settings (here the lambda path's tolerance) is run again."""
    lc = LinclsConfig(protocol="logreg")
    res = {"lincls_acc1": 80.0, "backbone": "f" * 64,
           "lincls_config": {**dataclasses.asdict(lc), "cache_features": True},
           "probe_config": dataclasses.asdict(ProbeConfig(path_tol=1e-6))}
    p = tmp_path / "lincls.json"
    p.write_text(json.dumps(res))
    assert result_for(p, lc) is None
    res["probe_config"] = dataclasses.asdict(ProbeConfig())
    p.write_text(json.dumps(res))
    assert result_for(p, lc) == res


def test_the_probe_is_the_default_linear_protocol_of_fixed_size_datasets():
    assert [default_protocol(d) for d in ("fashion_mnist", "cifar10", "stl10", "synthetic")] == ["logreg"] * 4
    assert default_protocol("imagefolder") == "sgd"               # main_lincls.py's: the paper's ImageNet number
    assert for_dataset("imagefolder") == LinclsConfig()           # the official defaults, unchanged
    assert LinclsConfig().protocol == "sgd" and LinclsConfig().lr == 30.0 and LinclsConfig().epochs == 100


def test_the_lambda_path_tolerance_chooses_as_the_tight_one():
    """The path's looser tolerance (declared path_tol) picks a lambda whose validation accuracy is within 0.1
    point of the best one under the tight tolerance, and the test accuracy moves by < 0.2 point."""
    ftr, ytr, fte, yte = _task()
    loose, tight = linear_probe(ftr, ytr, fte, yte), linear_probe(ftr, ytr, fte, yte, ProbeConfig(path_tol=1e-6))
    assert tight["val_acc1"][f"{loose['lambda']:g}"] >= max(tight["val_acc1"].values()) - 0.1
    assert abs(loose["lincls_acc1"] - tight["lincls_acc1"]) < 0.2

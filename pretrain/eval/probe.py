"""The converged linear probe on frozen features (the linear-probe protocol of Radford et al. 2021, CLIP,
appendix A.3): multinomial logistic regression on standardised features, fitted by L-BFGS (scikit-learn's
``LogisticRegression``) to a stated gradient tolerance, its L2 strength lambda chosen from a declared grid on a
validation split carved from the training images, then refitted on all of them with that lambda. The settings
(:class:`pretrain.eval.protocol.ProbeConfig`) live beside the SGD protocol's, in the torch-free ``protocol.py``.

Why not main_lincls.py's SGD at lr 30 on cached features: with no augmentation and no weight decay the
classifier's weights grow without bound and the number read is a saturated last iterate that depends on the
features' scale. The objective here is convex and regularised, so its minimiser is one well-defined number per
feature set, and standardising makes it invariant to each feature's scale. Each result records lambda, the
solver's iterations and the gradient norm of the objective at the solution (the evidence that it converged).

Objective (per image, W the classes x features weights, b the biases):
    mean_i CE(softmax(W x_i + b), y_i) + lambda / 2 * ||W||^2
which is scikit-learn's ``C * sum_i CE + ||W||^2 / 2`` divided by ``C n`` with ``C = 1 / (lambda n)``.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from pretrain.eval.protocol import ProbeConfig


def _solver(lam: float, n: int, pc: ProbeConfig, tol: float) -> LogisticRegression:
    # warm_start: a fit starts from the model's current weights (the previous lambda's solution on the path)
    return LogisticRegression(C=1.0 / (lam * n), solver="lbfgs", max_iter=pc.max_iter, tol=tol,
                              warm_start=True)


def _fit(clf: LogisticRegression, x: np.ndarray, y: np.ndarray, lam: float) -> LogisticRegression:
    clf.set_params(C=1.0 / (lam * len(y)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)      # reported as converged: false instead
        clf.fit(x, y)
    return clf


def grad_norm(clf: LogisticRegression, x: np.ndarray, y: np.ndarray, lam: float) -> float:
    """The Euclidean norm of the per-image objective's gradient (weights and biases) at ``clf``'s solution."""
    p = clf.predict_proba(x)
    onehot = (clf.classes_[None, :] == y[:, None]).astype(p.dtype)
    r = (p - onehot) / len(y)
    gw = r.T @ x + lam * clf.coef_
    gb = r.sum(0)
    return float(np.sqrt((gw ** 2).sum() + (gb ** 2).sum()))


def _topk(proba: np.ndarray, classes: np.ndarray, y: np.ndarray, k: int) -> float:
    top = classes[np.argsort(-proba, axis=1)[:, :min(k, proba.shape[1])]]
    return 100.0 * float((top == y[:, None]).any(1).mean())


def linear_probe(ftr: np.ndarray, ytr: np.ndarray, fte: np.ndarray, yte: np.ndarray,
                 pc: ProbeConfig | None = None) -> dict:
    """Test top-1/top-5 (%) of the probe fitted on (``ftr``, ``ytr``), lambda chosen on a stratified
    validation split of them (ties: the larger lambda), then refitted on all of them; with what was chosen
    and the convergence evidence (iterations, gradient norm) of the final fit."""
    pc = pc or ProbeConfig()
    t0 = time.time()
    ftr, fte = np.asarray(ftr, np.float64), np.asarray(fte, np.float64)
    ytr, yte = np.asarray(ytr), np.asarray(yte)
    x_fit, x_val, y_fit, y_val = train_test_split(ftr, ytr, test_size=pc.val_frac, random_state=pc.seed,
                                                  stratify=ytr)
    scaler = StandardScaler().fit(x_fit)
    x_fit, x_val = scaler.transform(x_fit), scaler.transform(x_val)
    # the regularisation path from the strongest lambda to the weakest, each fit warm-started from the one
    # before (the same minimisers as cold starts, in a fraction of the iterations)
    val, coefs = {}, {}
    clf = _solver(max(pc.lambdas), len(y_fit), pc, pc.path_tol)
    for lam in sorted(pc.lambdas, reverse=True):
        _fit(clf, x_fit, y_fit, lam)
        val[lam] = 100.0 * float((clf.predict(x_val) == y_val).mean())
        coefs[lam] = clf.coef_.copy(), clf.intercept_.copy()
    best = max(val.values())
    lam = max(lam for lam, acc in val.items() if acc == best)
    scaler = StandardScaler().fit(ftr)
    x, xt = scaler.transform(ftr), scaler.transform(fte)
    clf = _solver(lam, len(ytr), pc, pc.tol)                   # the refit on all images, from the chosen solution
    clf.coef_, clf.intercept_ = coefs[lam]
    _fit(clf, x, ytr, lam)
    n_iter = int(np.max(clf.n_iter_))
    proba = clf.predict_proba(xt)
    return {"lincls_acc1": _topk(proba, clf.classes_, yte, 1), "lincls_acc5": _topk(proba, clf.classes_, yte, 5),
            "protocol": "logreg", "lambda": lam, "val_acc1": {f"{k:g}": v for k, v in val.items()},
            "iterations": n_iter, "converged": n_iter < pc.max_iter, "grad_norm": grad_norm(clf, x, ytr, lam),
            "probe_config": asdict(pc), "seconds": time.time() - t0}

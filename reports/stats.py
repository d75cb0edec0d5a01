"""The statistics behind a verdict, all from ``scipy.stats`` (nothing hand-rolled but Holm's step-down).

A paper claim compares two conditions of one grid seed by seed (paired design: seed s is the same
initialisation and data order in every condition). Every function here is pure: numbers in, numbers out.

* :func:`paired` - the mean paired difference, its 95 % t-interval (``ttest_1samp(...).confidence_interval``;
  chosen over a bootstrap interval because a percentile bootstrap on 3-5 seeds under-covers badly), and an
  exact sign-flip permutation test (``permutation_test``, ``permutation_type="samples"``, every one of the
  2^n sign patterns) in the paper's direction.
* :func:`failures` - failure counts of two conditions: Fisher's exact test (one-sided) and a percentile
  bootstrap interval of the difference in failure rates.
* :func:`holm` - Holm's (1979) step-down adjustment of the p-values of a claim's parts.
* :func:`seeds_needed` / :func:`min_detectable` - the smallest number of seeds for which a test can reach
  ``alpha`` at all, and the smallest effect these seeds could have detected (80 % power, t approximation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.80


@dataclass
class Estimate:
    """One comparison: ``effect`` is oriented so that > 0 is the paper's direction."""
    n: int                          # paired seeds (or runs per condition for failure counts)
    effect: float                   # mean of the oriented per-seed differences
    low: float                      # 95 % confidence interval of the effect
    high: float
    p: float                        # one-sided p-value in the paper's direction (nan: no test possible)
    sd: float = float("nan")        # standard deviation of the per-seed differences
    test: str = ""


def _mean(x, axis):
    return np.mean(x, axis=axis)


def paired(diffs, alpha: float = ALPHA) -> Estimate:
    """Oriented paired differences (a_s - b_s, sign-flipped where the paper expects a < b; shifted by a
    margin for a non-superiority claim). Returns the mean, its (1 - alpha) t-interval and the exact
    sign-flip permutation p-value of "mean > 0"."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    test = "exact sign-flip permutation test (one-sided), 95 % t-interval"
    if n == 0:
        return Estimate(0, math.nan, math.nan, math.nan, math.nan, test=test)
    mean = float(d.mean())
    if n == 1:
        return Estimate(1, mean, math.nan, math.nan, math.nan, test=test)
    sd = float(d.std(ddof=1))
    if sd == 0.0:                   # identical differences (e.g. a deterministic cost): the interval is a point
        low = high = mean
    else:
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(1 - alpha)
        low, high = float(ci.low), float(ci.high)
    p = float(stats.permutation_test((d,), _mean, permutation_type="samples", alternative="greater",
                                     n_resamples=np.inf).pvalue)
    return Estimate(n, mean, low, high, p, sd=sd, test=test)


def failures(fail_a: int, n_a: int, fail_b: int, n_b: int, alpha: float = ALPHA, seed: int = 0) -> Estimate:
    """Condition a fails more often than b: Fisher's exact test (one-sided); the effect is the difference of
    the failure rates in percentage points with a percentile-bootstrap (1 - alpha) interval."""
    test = "Fisher's exact test (one-sided), 95 % bootstrap interval of the rate difference"
    if n_a == 0 or n_b == 0:
        return Estimate(min(n_a, n_b), math.nan, math.nan, math.nan, math.nan, test=test)
    a = np.r_[np.ones(fail_a), np.zeros(n_a - fail_a)] * 100.0
    b = np.r_[np.ones(fail_b), np.zeros(n_b - fail_b)] * 100.0
    effect = float(a.mean() - b.mean())
    p = float(stats.fisher_exact([[fail_a, n_a - fail_a], [fail_b, n_b - fail_b]], alternative="greater").pvalue)
    if a.std() == 0 and b.std() == 0:
        low = high = effect
    else:
        ci = stats.bootstrap((a, b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                             confidence_level=1 - alpha, method="percentile", n_resamples=9999,
                             rng=np.random.default_rng(seed), vectorized=True).confidence_interval
        low, high = float(ci.low), float(ci.high)
    return Estimate(min(n_a, n_b), effect, low, high, p, test=test)


def holm(pvalues) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979): sorted ascending, the i-th (0-based) of m is multiplied
    by m - i, made monotone, capped at 1. nan stays nan (a part that could not be tested)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def seeds_needed(test: str, alpha: float = ALPHA, parts: int = 1) -> int:
    """The fewest seeds (per condition) with which ``test`` can reach p < alpha / parts at all (the strictest
    Holm threshold): an exact sign-flip test's smallest p is 2^-n; Fisher's with all of a and none of b
    failing is 1 / C(2n, n)."""
    level = alpha / max(parts, 1)
    n = 1
    if test == "fails_more":
        while 1.0 / math.comb(2 * n, n) >= level:
            n += 1
        return n
    while 0.5 ** n >= level:
        n += 1
    return n


def min_detectable(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true mean difference a one-sided paired test on ``n`` seeds detects with ``power``
    (t approximation: (t_{1-alpha} + t_{power}) * sd / sqrt(n), df = n - 1); nan when it cannot be told."""
    if n < 2 or not np.isfinite(sd) or sd <= 0:
        return math.nan
    df = n - 1
    return float((stats.t.ppf(1 - alpha, df) + stats.t.ppf(power, df)) * sd / math.sqrt(n))

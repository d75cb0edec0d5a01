"""The statistics behind a verdict, all from ``scipy.stats`` (nothing hand-rolled but Holm's step-down and the
loop of the power simulation).

A paper claim compares two conditions of one grid seed by seed (paired design: seed s is the same
initialisation and data order in every condition). Every function here is pure: numbers in, numbers out. The
estimand is the seed-to-seed variation (initialisation and data order) on a fixed test set; the test-set
sampling error (:func:`binomial_se`) is shown beside it but is not part of any interval.

Claims version 1 (``ablations/claims_v1.yaml``, kept bit for bit):

* :func:`paired` - the mean paired difference, its 95 % t-interval (``ttest_1samp(...).confidence_interval``;
  chosen over a bootstrap interval because a percentile bootstrap on 3-5 seeds under-covers badly), and an
  exact sign-flip permutation test (``permutation_test``, ``permutation_type="samples"``, every one of the
  2^n sign patterns) in the paper's direction.
* :func:`failures` - failure counts of two conditions: Fisher's exact test (one-sided) and a percentile
  bootstrap interval of the difference in failure rates.
* :func:`holm` - Holm's (1979) step-down adjustment of the p-values of a claim's parts.
* :func:`seeds_needed` / :func:`min_detectable` - the smallest number of seeds for which a test can reach
  ``alpha`` at all, and the smallest effect these seeds could have detected (80 % power, t approximation).

Claims version 2 (``ablations/claims.yaml``, declared 2026-12-06):

* :func:`paired_t` - ONE procedure for both directions: the paired t-test (``ttest_1samp`` on the oriented
  differences) with its own t-interval. Version 1 mixed two procedures: the sign-flip test's p has a floor of
  2^-n (no verdict below 5 seeds whatever the effect) and its inversion is not the t-interval, so the test
  and the interval could disagree, and "contradicted" used the interval alone. The t-test's test and its
  interval are one procedure: the two-sided (1 - alpha) interval lies above 0 exactly when the one-sided p in
  the paper's direction is < alpha / 2, and below 0 exactly when the reversed one-sided p is < alpha / 2.
  Assumption (stated in the report): the seed-to-seed differences are roughly normal; with 7 seeds the
  t-test is robust to moderate skew, not to a gross outlier, which shows in the per-seed dots of the figures.
* :func:`mcnemar` - "a fails more often than b", paired by seed: McNemar's exact test on the discordant seeds
  (``binomtest(n10, n10 + n01, 0.5, alternative="greater")``) and an exact interval of the paired difference
  of the failure rates (see the function).
* :func:`detectable_effect` / :func:`claim_power` / :func:`seeds_for` - the power of the declared version-2
  rule (every part's 95 % t-interval above 0) by simulation with common random numbers.
* :func:`binomial_se` - the test-set sampling error of an accuracy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.80
SIMS = 4000                         # simulations behind a reported detectable effect
SIM_SEED = 20261206                 # the fixed RNG of the power simulations (common random numbers)


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
    p_rev: float = float("nan")     # version 2: one-sided p-value against the paper's direction


def _mean(x, axis):
    return np.mean(x, axis=axis)


def _no_interval(d: np.ndarray, test: str) -> Estimate:
    """Fewer than two seeds: no interval and no test (one seed still has its difference)."""
    return Estimate(len(d), float(d.mean()) if len(d) else math.nan, math.nan, math.nan, math.nan, test=test)


def paired(diffs, alpha: float = ALPHA) -> Estimate:
    """Oriented paired differences (a_s - b_s, sign-flipped where the paper expects a < b; shifted by a
    margin for a non-superiority claim). Returns the mean, its (1 - alpha) t-interval and the exact
    sign-flip permutation p-value of "mean > 0"."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    test = "exact sign-flip permutation test (one-sided), 95 % t-interval"
    if n < 2:
        return _no_interval(d, test)
    mean = float(d.mean())
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


# ------------------------------------------------------------------------------------------- claims version 2
def _level(alpha: float) -> str:
    return f"{100 * (1 - alpha):g} %"


def paired_t(diffs, alpha: float = ALPHA) -> Estimate:
    """Oriented paired differences (> 0 is the paper's direction) judged by the paired t-test (Student 1908;
    ``scipy.stats.ttest_1samp``) with its own two-sided (1 - alpha) t-interval: ``p`` is the one-sided p in the
    paper's direction, ``p_rev`` the one-sided p against it (interval above 0 <=> p < alpha/2; below 0 <=>
    p_rev < alpha/2). Identical differences (a deterministic cost; equal up to float rounding) have a point
    interval and p (p_rev) 0 or 1, the t-test's limit; one seed has no interval and no test."""
    d = np.asarray(diffs, dtype=float)
    n = len(d)
    test = f"paired t-test with its {_level(alpha)} t-interval (one procedure)"
    if n < 2:
        return _no_interval(d, test)
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):         # identical up to float rounding: no spread to test against
        return Estimate(n, mean, mean, mean, 0.0 if mean > 0 else 1.0, sd=0.0, test=test,
                        p_rev=0.0 if mean < 0 else 1.0)
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(1 - alpha)
    p = float(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
    p_rev = float(stats.ttest_1samp(d, 0.0, alternative="less").pvalue)
    return Estimate(n, mean, float(ci.low), float(ci.high), p, sd=sd, test=test, p_rev=p_rev)


def mcnemar(n10: int, n01: int, n: int, alpha: float = ALPHA) -> Estimate:
    """"a fails more often than b" over ``n`` seeds paired by seed; ``n10`` seeds where only a failed, ``n01``
    where only b failed. McNemar's (1947) exact test: under "no difference" the discordant seeds split
    Binomial(n10 + n01, 1/2), so ``p = binomtest(n10, n10 + n01, 0.5, alternative="greater")`` (``p_rev``: the
    same with "less").

    Effect: the paired difference of the failure rates, (n10 - n01) / n, in percentage points. Interval: the
    exact (Clopper-Pearson) two-sided (1 - alpha) interval of the conditional proportion pi = n10 / (n10 + n01)
    (``binomtest(...).proportion_ci(method="exact")``), mapped to the rate difference given the discordant
    count m = n10 + n01: diff = (2 pi - 1) * m / n. The mapping is monotone, so the interval lies above 0
    exactly when p < alpha / 2 and below 0 exactly when p_rev < alpha / 2: the test and the interval are one
    procedure, as for :func:`paired_t`. It is conditional on m (the uncertainty of the number of discordant
    seeds is not in it); with no discordant seed there is no interval and p = 1."""
    test = f"McNemar's exact test (paired by seed) with its exact {_level(alpha)} interval"
    if n == 0:
        return Estimate(0, math.nan, math.nan, math.nan, math.nan, test=test)
    m = n10 + n01
    effect = 100.0 * (n10 - n01) / n
    if m == 0:
        return Estimate(n, effect, math.nan, math.nan, 1.0, test=test, p_rev=1.0)
    p = float(stats.binomtest(n10, m, 0.5, alternative="greater").pvalue)
    p_rev = float(stats.binomtest(n10, m, 0.5, alternative="less").pvalue)
    ci = stats.binomtest(n10, m, 0.5).proportion_ci(confidence_level=1 - alpha, method="exact")
    low, high = (100.0 * (2.0 * x - 1.0) * m / n for x in (ci.low, ci.high))
    return Estimate(n, effect, float(low), float(high), p, test=test, p_rev=p_rev)


def mcnemar_seeds_needed(alpha: float = ALPHA) -> int:
    """The fewest discordant seeds with which McNemar's exact test can reach p < alpha / 2 at all (every
    discordant seed in the paper's direction: p = 2^-m)."""
    m = 1
    while stats.binomtest(m, m, 0.5, alternative="greater").pvalue >= alpha / 2:
        m += 1
    return m


def binomial_se(acc_pct: float, n_eval: int) -> float:
    """The test-set sampling error of an accuracy (in points): the binomial standard error
    sqrt(p (1 - p) / n_eval) * 100 of a proportion p measured on n_eval test images; nan when unknown."""
    if not np.isfinite(acc_pct) or not n_eval or n_eval <= 0:
        return math.nan
    p = min(max(float(acc_pct) / 100.0, 0.0), 1.0)
    return float(math.sqrt(p * (1.0 - p) / n_eval) * 100.0)


def _per_part(x, parts: int) -> list:
    vals = list(np.atleast_1d(x))
    if len(vals) == 1:
        vals = vals * parts
    if len(vals) != parts:
        raise ValueError(f"{len(vals)} values for {parts} parts")
    return vals


def _draws(n_max: int, parts: int, sims: int, seed: int) -> np.ndarray:
    """Standard normal draws shaped (seed, part, simulation): the first n rows are the same for any n_max, so
    every n, effect and function here sees the same random numbers (common random numbers)."""
    return np.random.default_rng(seed).standard_normal((n_max, parts, sims))


def _power(effect: float, sds: list, ns: list, z: np.ndarray, alpha: float) -> float:
    """Fraction of the simulations in which the declared version-2 rule reproduces the claim: every part's
    two-sided (1 - alpha) t-interval (``ttest_1samp``) of effect + sd * z lies above 0."""
    ok = np.ones(z.shape[2], dtype=bool)
    for k, (sd, n) in enumerate(zip(sds, ns)):
        x = effect + sd * z[:n, k, :]
        ok &= stats.ttest_1samp(x, 0.0, axis=0).confidence_interval(1 - alpha).low > 0
    return float(ok.mean())


def claim_power(effect: float, sd, n, parts: int = 1, alpha: float = ALPHA, sims: int = SIMS,
                seed: int = SIM_SEED) -> float:
    """The simulated power of the version-2 rule (all ``parts`` reproduced, each by its own t-interval, no
    correction) when every part's true effect is ``effect`` and its paired differences are normal with
    standard deviation ``sd`` over ``n`` seeds (``sd``/``n``: one value, or one per part)."""
    sds, ns = _per_part(sd, parts), [int(v) for v in _per_part(n, parts)]
    return _power(effect, sds, ns, _draws(max(ns), parts, sims, seed), alpha)


def detectable_effect(sd, n, parts: int = 1, alpha: float = ALPHA, power: float = POWER, sims: int = SIMS,
                      seed: int = SIM_SEED) -> float:
    """The smallest true effect (the same in every part) that the declared version-2 rule reproduces with
    ``power``, for normal paired differences with the observed ``sd`` over ``n`` seeds (one value, or one per
    part). Found by bisection on the effect with one fixed set of random numbers (common random numbers: the
    simulated power is then monotone in the effect), to 0.01 % of its value; nan when it cannot be told
    (fewer than 2 seeds, no spread)."""
    sds, ns = _per_part(sd, parts), [int(v) for v in _per_part(n, parts)]
    if min(ns) < 2 or not all(np.isfinite(s) and s > 0 for s in sds):
        return math.nan
    z = _draws(max(ns), parts, sims, seed)
    lo, hi = 0.0, max(s / math.sqrt(k) for s, k in zip(sds, ns))
    while _power(hi, sds, ns, z, alpha) < power:
        lo, hi = hi, 2.0 * hi
        if hi > 1e12:
            return math.nan
    while hi - lo > 1e-4 * hi:
        mid = 0.5 * (lo + hi)
        if _power(mid, sds, ns, z, alpha) >= power:
            hi = mid
        else:
            lo = mid
    return float(hi)


def seeds_for(effect: float, sd, parts: int = 1, alpha: float = ALPHA, power: float = POWER, sims: int = SIMS,
              seed: int = SIM_SEED, n_max: int = 200) -> int | None:
    """Design planning: the fewest paired seeds with which the version-2 rule reproduces a claim of ``parts``
    parts, each with true effect ``effect`` and seed-to-seed sd ``sd``, with ``power`` (same simulation and
    random numbers as :func:`detectable_effect`); None if ``n_max`` seeds are not enough."""
    sds = _per_part(sd, parts)
    if not effect > 0 or not all(np.isfinite(s) and s > 0 for s in sds):
        return None
    z = _draws(n_max, parts, sims, seed)

    def ok(n: int) -> bool:
        return _power(effect, sds, [n] * parts, z, alpha) >= power
    if not ok(n_max):
        return None
    lo, hi = 1, n_max                       # ok(hi); lo: not ok (one seed has no interval)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi

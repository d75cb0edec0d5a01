"""The papers' claims judged as declared tests (a claims file, ``ablations/claims.yaml``) over paired seeds.

One :class:`Verdict` per claim and preset, with one :class:`Part` per comparison (a claim "at every K" has a
part per K). The rows given must be one preset's (:meth:`reports.data.Results.units`): presets are never pooled.
The engine dispatches on the file's ``version``:

* version 1 (``ablations/claims_v1.yaml``, kept bit for bit): a part is ``reproduced`` when the 95 % t-interval
  of the effect is above 0 in the paper's direction and the exact sign-flip test's Holm-adjusted p < alpha,
  ``contradicted`` when the interval is below 0, ``inconclusive`` otherwise; failures by Fisher's exact test.
* version 2 (``ablations/claims.yaml``): one procedure, the paired t-test with its own interval
  (:func:`reports.stats.paired_t`); a part is reproduced when its 95 % interval lies above 0; the claim is
  reproduced when every part is, each at its own level (an intersection-union test, Berger 1982: no
  multiplicity correction); contradicted when Holm (1979) over the parts' reversed one-sided p-values rejects
  at alpha / 2; ``not judgeable`` when a compared condition is not a working learner (the declared sanity
  gates, :func:`gate`); failures paired by seed (McNemar's exact test, :func:`reports.stats.mcnemar`).

``not run``: no paired seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pretrain.base.yamlio import read_yaml_mapping
from pretrain.base.errors import UserError
from pretrain.base import status as S

from . import stats
from .errors import ReportError

CLAIMS_FILE = Path(__file__).resolve().parent.parent / "ablations" / "claims.yaml"
CLAIMS_V1_FILE = CLAIMS_FILE.with_name("claims_v1.yaml")        # the version the tiny reference was judged by
REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_RUN = "reproduced", "contradicted", "inconclusive", "not run"
NOT_JUDGEABLE = "not judgeable"                                 # version 2: a compared condition never learned
OUTCOMES = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_RUN, NOT_JUDGEABLE)
VERSIONS = (1, 2)
TOP_KEYS = {"version", "alpha", "claims", "gates"}
TESTS = ("paired", "not_greater", "fails_more")
CLAIM_KEYS = {"key", "claim", "source", "grid", "metric", "test", "direction", "scale", "where", "a", "b",
              "per", "parts", "margin"}
PART_KEYS = {"label", "a", "b", "metric", "direction"}
UNITS = {"absolute": "pt", "relative": "%", "fails_more": "pp"}
# version 2: the sanity gates (``gates:`` in the claims file; every key required, see ablations/claims.yaml)
GATE_KEYS = ("pretext_over_chance", "above_random_init", "majority", "tests", "exempt_metrics")
GATE_METRICS = ("lincls_acc1", "lincls_acc5", "knn_acc")
GATEABLE_TESTS = ("paired", "not_greater")        # fails_more is judged by the failure criterion itself
NEGATIVES_FROM_K = ("moco", "memory_bank")          # negatives = moco_k; end_to_end: batch_size - 1
# the test-set sampling error: accuracy metrics, and the test-set sizes when the table has no `n_eval` column
ACCURACY_METRICS = ("knn_acc", "lincls_acc1", "lincls_acc5")
TEST_SET_SIZES = {"fashion_mnist": 10000, "cifar10": 10000, "cifar100": 10000, "stl10": 8000,
                  "imagenet": 50000, "imagenet100": 5000}
ESTIMAND = ("seed-to-seed variation (initialisation and data order) on a fixed test set; the test-set sampling "
            "error is shown beside it but is not part of the interval")


@dataclass
class Part:
    label: str
    metric: str
    outcome: str
    est: stats.Estimate
    p_adj: float = math.nan
    unit: str = "pt"
    a: dict = field(default_factory=dict)       # seed -> value
    b: dict = field(default_factory=dict)
    note: str = ""
    reason: str = ""                            # version 2: why the part is not judgeable
    p_rev_adj: float = math.nan                 # version 2: Holm-adjusted reversed one-sided p
    run_ids: set = field(default_factory=set)   # version 2: the runs of the paired seeds
    seeds_used: set = field(default_factory=set)
    se_a: float = math.nan                      # version 2: test-set sampling error of each condition (pt)
    se_b: float = math.nan
    no_baseline: set = field(default_factory=set)  # version 2: seeds whose random-init gate was not checked
    no_value: set = field(default_factory=set)

    def effect_text(self) -> str:
        e = self.est
        if e.n == 0 or not np.isfinite(e.effect):
            return "—"
        s = f"{e.effect:+.2f} {self.unit}"
        if np.isfinite(e.low):
            s += f" [{e.low:+.2f}, {e.high:+.2f}]"
        return s


@dataclass
class Verdict:
    key: str
    claim: str
    source: str
    status: str                     # the outcome (one of OUTCOMES)
    detail: str                     # the numbers behind it
    test: str = ""
    runs: int = 0
    seeds: int = 0
    parts: list = field(default_factory=list)
    unit_name: str = ""             # the preset (and dataset/arch) judged
    notes: list = field(default_factory=list)
    reason: str = ""                # version 2: why the claim is not judgeable
    version: int = 1                # the claims version that judged it
    exploratory: "Verdict | None" = None    # the same claim judged on an exploratory set, shown beside it

    @property
    def effect(self) -> str:
        if not self.parts or all(p.est.n == 0 for p in self.parts):
            return "—"
        if len(self.parts) == 1:
            return self.parts[0].effect_text()
        return "; ".join(f"{p.label}: {p.effect_text()}" for p in self.parts)


def load(path: Path | str = CLAIMS_FILE) -> dict:
    """The declared claims, checked (unknown keys, tests, directions, versions and gates are errors, each one
    :class:`ReportError` line naming the file). Returns alpha, version, claims, gates (version 2) and path."""
    try:
        spec = read_yaml_mapping(Path(path), "the claims file")
    except (UserError, OSError) as e:
        raise ReportError(str(e)) from None
    bad = sorted(str(k) for k in set(spec) - TOP_KEYS)
    if bad:
        raise ReportError(f"{path}: unknown top-level key(s) {', '.join(bad)} (known: {', '.join(sorted(TOP_KEYS))})")
    version = spec.get("version")
    if isinstance(version, bool) or version not in VERSIONS:
        raise ReportError(f"{path}: version must be one of {', '.join(map(str, VERSIONS))}, got {version!r}")
    claims = spec.get("claims")
    if not isinstance(claims, list) or not claims:
        raise ReportError(f"{path}: 'claims' must be a non-empty list")
    try:
        alpha = float(spec.get("alpha", stats.ALPHA))
    except (TypeError, ValueError):
        raise ReportError(f"{path}: alpha must be a number, got {spec.get('alpha')!r}") from None
    if not 0 < alpha < 1:
        raise ReportError(f"{path}: alpha must be in (0, 1), got {alpha}")
    seen = set()
    for c in claims:
        if not isinstance(c, dict):
            raise ReportError(f"{path}: every claim must be a mapping, got {c!r}")
        where = f"{path}: claim {c.get('key', '?')}"
        bad = sorted(set(c) - CLAIM_KEYS)
        if bad:
            raise ReportError(f"{where}: unknown key(s) {', '.join(bad)} (known: {', '.join(sorted(CLAIM_KEYS))})")
        for k in ("key", "claim", "grid", "test"):
            if not c.get(k):
                raise ReportError(f"{where}: missing {k!r}")
        if c["key"] in seen:
            raise ReportError(f"{where}: duplicate key")
        seen.add(c["key"])
        if c["test"] not in TESTS:
            raise ReportError(f"{where}: unknown test {c['test']!r} (known: {', '.join(TESTS)})")
        for p in c.get("parts") or [{}]:
            bad = sorted(set(p) - PART_KEYS)
            if bad:
                raise ReportError(f"{where}: unknown part key(s) {', '.join(bad)}")
            if c["test"] == "paired" and p.get("direction", c.get("direction")) not in ("greater", "less"):
                raise ReportError(f"{where}: direction must be 'greater' or 'less'")
            if c["test"] != "fails_more" and not p.get("metric", c.get("metric")):
                raise ReportError(f"{where}: no metric")
        if c.get("scale", "absolute") not in ("absolute", "relative"):
            raise ReportError(f"{where}: scale must be 'absolute' or 'relative'")
        if c["test"] == "not_greater" and not isinstance(c.get("margin"), (int, float)):
            raise ReportError(f"{where}: not_greater needs a numeric margin")
    out = {"alpha": alpha, "version": version, "claims": claims, "path": Path(path)}
    if version == 1:
        if "gates" in spec:
            raise ReportError(f"{path}: 'gates' are a version-2 rule (this file is version 1)")
        return out
    out["gates"] = load_gates(spec.get("gates"), path)
    return out


def load_gates(g, path) -> dict:
    """The version-2 sanity gates, checked: every key of :data:`GATE_KEYS` given, nothing else."""
    where = f"{path}: gates"
    if not isinstance(g, dict):
        raise ReportError(f"{where}: version 2 needs a 'gates' mapping ({', '.join(GATE_KEYS)})")
    bad = sorted(str(k) for k in set(g) - set(GATE_KEYS))
    if bad:
        raise ReportError(f"{where}: unknown gate key(s) {', '.join(bad)} (known: {', '.join(GATE_KEYS)})")
    missing = [k for k in GATE_KEYS if k not in g]
    if missing:
        raise ReportError(f"{where}: missing {', '.join(missing)}")
    over, maj = g["pretext_over_chance"], g["majority"]
    if isinstance(over, bool) or not isinstance(over, (int, float)) or not over > 0:
        raise ReportError(f"{where}: pretext_over_chance must be a number > 0, got {over!r}")
    if isinstance(maj, bool) or not isinstance(maj, (int, float)) or not 0 <= maj < 1:
        raise ReportError(f"{where}: majority must be a number in [0, 1), got {maj!r}")
    if g["above_random_init"] not in GATE_METRICS:
        raise ReportError(f"{where}: above_random_init must be one of {', '.join(GATE_METRICS)}, "
                          f"got {g['above_random_init']!r}")
    tests = g["tests"]
    if not isinstance(tests, list) or any(t not in GATEABLE_TESTS for t in tests):
        raise ReportError(f"{where}: tests must be a list of {', '.join(GATEABLE_TESTS)} (fails_more is judged by "
                          f"the failure itself), got {tests!r}")
    ex = g["exempt_metrics"]
    if not isinstance(ex, list) or not all(isinstance(m, str) for m in ex):
        raise ReportError(f"{where}: exempt_metrics must be a list of metric names, got {ex!r}")
    return {"pretext_over_chance": float(over), "above_random_init": g["above_random_init"],
            "majority": float(maj), "tests": tuple(tests), "exempt_metrics": tuple(ex)}


# ------------------------------------------------------------------------------------------------ selection
def _match(series: pd.Series, want) -> pd.Series:
    vals = want if isinstance(want, list) else [want]
    out = pd.Series(False, index=series.index)
    for v in vals:
        if isinstance(v, bool):
            out |= series.map(lambda x, v=v: x is v or (isinstance(x, (bool, np.bool_)) and bool(x) == v))
        elif isinstance(v, (int, float)):
            num = pd.to_numeric(series, errors="coerce")
            out |= np.isclose(num.astype(float), float(v)) & num.notna()
        else:
            out |= series.astype(str).str.lower() == str(v).lower()
    return out


def select(rows: pd.DataFrame, cond: dict) -> pd.DataFrame:
    """Rows matching ``cond``; ``max``/``min`` pick the largest/smallest value of a column among the rows that
    match the other keys (whatever their status: the design, not the data, decides)."""
    plain = {k: v for k, v in cond.items() if v not in ("max", "min")}
    for k, v in plain.items():
        rows = rows[_match(rows[k], v)]
    for k, v in cond.items():
        if v in ("max", "min"):
            col = pd.to_numeric(rows[k], errors="coerce")
            if col.notna().any():
                target = col.max() if v == "max" else col.min()
                rows = rows[np.isclose(col.astype(float), target) & col.notna()]
            else:
                rows = rows.iloc[0:0]
    return rows


def _rows_by_seed(rows: pd.DataFrame, metric: str | None, where: str) -> dict:
    """seed -> result row (status done, diverged or not_converged; with a finite ``metric`` unless it is
    None); two results for one seed in one condition is a declaration error (the condition does not name one
    cell)."""
    rows = rows[rows["status"].isin(S.RESULTS)]
    out = {}
    for _, r in rows.iterrows():
        seed = 0 if pd.isna(r["seed"]) else int(r["seed"])
        if metric is not None:
            v = r[metric]
            if v is None or pd.isna(v) or not np.isfinite(float(v)):
                continue
        if seed in out:
            raise ReportError(f"{where}: several runs of seed {seed} match one condition (run ids "
                              f"{', '.join(map(str, rows['run_id'][rows['seed'].fillna(0) == seed]))}); "
                              f"narrow the claim's conditions in {CLAIMS_FILE.name}")
        out[seed] = r
    return out


def _by_seed(rows: pd.DataFrame, metric: str | None, where: str) -> dict:
    """seed -> value (the metric, or True/False "failed" for metric None) over result rows."""
    return {s: (r["status"] in S.FAILED) if metric is None else float(r[metric])
            for s, r in _rows_by_seed(rows, metric, where).items()}


def _per_values(rows: pd.DataFrame, cols: list, a: dict, b: dict) -> list[dict]:
    """The combinations of the ``per`` columns at which both conditions have runs (any status)."""
    if not cols:
        return [{}]
    plain = lambda c: {k: v for k, v in c.items() if v not in ("max", "min") and k not in cols}  # noqa: E731
    ra, rb = select(rows, plain(a)), select(rows, plain(b))

    def combos(r):
        return {tuple(None if pd.isna(x) else x for x in t) for t in r[cols].itertuples(index=False)}
    both = combos(ra) & combos(rb)
    def order(t):
        return tuple((0, float(x), "") if isinstance(x, (int, float, np.number)) else (1, 0.0, str(x)) for x in t)
    return [dict(zip(cols, t)) for t in sorted(both, key=order) if all(x is not None for x in t)]


def _fmt_val(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return f"{v:g}" if isinstance(v, float) else str(v)


# ------------------------------------------------------------------------------------------------ judging
def _claim_rows(c: dict, rows: pd.DataFrame) -> pd.DataFrame:
    grid_rows = rows[rows["grid"] == c["grid"]]
    if c.get("where"):
        grid_rows = select(grid_rows, c["where"])
    return grid_rows


def _parts_spec(c: dict, grid_rows: pd.DataFrame) -> list[tuple]:
    """(label, a, b, metric, direction) of every part of a claim: its explicit parts crossed with ``per``."""
    out = []
    for p in c.get("parts") or [{}]:
        a = {**(c.get("a") or {}), **(p.get("a") or {})}
        b = {**(c.get("b") or {}), **(p.get("b") or {})}
        for pv in _per_values(grid_rows, list(c.get("per") or []), a, b):
            label = ", ".join(x for x in [p.get("label", "")] + [f"{k}={_fmt_val(v)}" for k, v in pv.items()] if x)
            out.append((label or "a vs b", {**a, **pv}, {**b, **pv}, p.get("metric", c.get("metric")),
                        p.get("direction", c.get("direction", "greater"))))
    return out


def _oriented(c: dict, va: dict, vb: dict, seeds: list, direction: str) -> np.ndarray:
    """The per-seed differences a - b oriented so that > 0 is the paper's direction (relative: in % of b;
    not_greater: margin - (a - b))."""
    d = np.array([va[s] - vb[s] for s in seeds], dtype=float)
    if c.get("scale", "absolute") == "relative":
        d = 100.0 * d / np.array([vb[s] for s in seeds], dtype=float)
    if c["test"] == "not_greater":
        d = float(c["margin"]) - d
    elif direction == "less":
        d = -d
    return d


def judge(c: dict, rows: pd.DataFrame, alpha: float, unit_name: str = "", version: int = 2,
          gates: dict | None = None) -> Verdict:
    """One claim on one preset's rows, by the rules of claims ``version`` (``gates``: version 2's sanity gates;
    None: none)."""
    if version == 1:
        return judge_v1(c, rows, alpha, unit_name)
    return judge_v2(c, rows, alpha, unit_name, gates)


def _compared(c: dict, grid_rows: pd.DataFrame):
    """Each part of claim ``c`` that compares two sets of runs: (label, condition a, condition b, rows of a, rows
    of b, metric, direction, where-text for errors); a part whose `max` and `min` name the same runs (one value
    of K) is skipped."""
    for label, a, b, metric, direction in _parts_spec(c, grid_rows):
        ra, rb = select(grid_rows, a), select(grid_rows, b)
        if len(ra) and set(ra.index) == set(rb.index):
            continue
        yield label, a, b, ra, rb, metric, direction, f"claim {c['key']} ({label})"


def judge_v1(c: dict, rows: pd.DataFrame, alpha: float, unit_name: str = "") -> Verdict:
    """One claim on one preset's rows, claims version 1 (sign-flip test + t-interval, Holm, Fisher)."""
    grid_rows = _claim_rows(c, rows)
    test = c["test"]
    parts = []
    for label, a, b, ra, rb, metric, direction, where in _compared(c, grid_rows):
        if test == "fails_more":
            va, vb = _by_seed(ra, None, where), _by_seed(rb, None, where)
            est = stats.failures(sum(va.values()), len(va), sum(vb.values()), len(vb), alpha)
            parts.append(Part(label, "status", "", est, unit="pp", a=va, b=vb))
            continue
        va, vb = _by_seed(ra, metric, where), _by_seed(rb, metric, where)
        seeds = sorted(set(va) & set(vb))
        d = _oriented(c, va, vb, seeds, direction)
        parts.append(Part(label, metric, "", stats.paired(d, alpha), unit=UNITS[c.get("scale", "absolute")],
                          a=va, b=vb))
    for p, padj in zip(parts, stats.holm([p.est.p for p in parts])):
        p.p_adj = padj
        e = p.est
        if e.n == 0:
            p.outcome = NOT_RUN
        elif np.isfinite(e.low) and e.low > 0 and np.isfinite(padj) and padj < alpha:
            p.outcome = REPRODUCED
        elif np.isfinite(e.high) and e.high < 0:
            p.outcome = CONTRADICTED
        else:
            p.outcome = INCONCLUSIVE
    return _verdict(c, parts, alpha, unit_name)


def _verdict(c: dict, parts: list, alpha: float, unit_name: str) -> Verdict:
    outs = [p.outcome for p in parts]
    if not parts or all(o == NOT_RUN for o in outs):
        status = NOT_RUN
    elif CONTRADICTED in outs:
        status = CONTRADICTED
    elif all(o == REPRODUCED for o in outs):
        status = REPRODUCED
    else:
        status = INCONCLUSIVE
    needed = stats.seeds_needed(c["test"], alpha, len(parts))
    n_min = min((p.est.n for p in parts if p.est.n), default=0)
    notes = []
    if status != NOT_RUN:
        if n_min == 1:
            notes.append("single seed: indicative only")
        elif n_min < needed:
            notes.append(f"{n_min} seeds < the {needed} this test needs to reach p < {alpha:g}"
                         + (f" over {len(parts)} Holm-corrected parts" if len(parts) > 1 else ""))
        for p in parts:
            if p.outcome == INCONCLUSIVE and c["test"] != "fails_more":
                mde = stats.min_detectable(p.est.sd, p.est.n, alpha)
                if np.isfinite(mde):
                    notes.append(f"{p.label}: smallest effect these {p.est.n} seeds could detect ≈ {mde:.2f} "
                                 f"{p.unit} (80 % power)")
    if not parts:
        detail = "no comparison of this claim exists in the grid's runs"
    else:
        detail = "; ".join(_part_detail(c, p) for p in parts)
    test_name = parts[0].est.test if parts else ""
    if len(parts) > 1:
        test_name += f"; {len(parts)} parts, Holm-corrected, all must hold"
    if c["test"] == "not_greater":
        test_name += f"; effect = margin {c['margin']:g} − (a − b)"
    used = {s for p in parts for s in (set(p.a) | set(p.b))}
    return Verdict(c["key"], c["claim"], c.get("source", ""), status, detail, test=test_name,
                   runs=int(sum(len(p.a) + len(p.b) for p in parts)), seeds=len(used), parts=parts,
                   unit_name=unit_name, notes=notes)


def _summary(vals: dict, fails: bool) -> str:
    if not vals:
        return "no run"
    x = np.array([float(v) for v in vals.values()])
    if fails:
        return f"{int(x.sum())}/{len(x)} failed"
    return f"{x.mean():.2f}" + (f" ± {x.std(ddof=1):.2f}" if len(x) > 1 else "") + f" (n={len(x)})"


def _part_detail(c: dict, p: Part) -> str:
    fails = c["test"] == "fails_more"
    s = f"{p.label}: a {_summary(p.a, fails)} vs b {_summary(p.b, fails)}"
    if not fails and p.metric:
        s += f" [{p.metric}]"
    if p.est.n:
        s += f", effect {p.effect_text()}"
        if np.isfinite(p.p_adj):
            s += f", p{'_Holm' if len(c.get('parts') or []) > 1 or c.get('per') else ''} = {p.p_adj:.3g}"
    s += f" → {p.outcome}"
    return s


# ------------------------------------------------------------------------------------------------ version 2
@dataclass
class GateResult:
    """The sanity gates of one condition over a part's paired seeds."""
    n: int = 0                                              # paired seeds
    failing: int = 0                                        # seeds failing at least one gate
    counts: dict = field(default_factory=dict)              # gate -> seeds failing it
    statuses: dict = field(default_factory=dict)            # status gate: status -> seeds
    thresholds: set = field(default_factory=set)            # pretext gate: the accuracies (%) to beat
    no_baseline: set = field(default_factory=set)           # seeds without a random-init row: gate not checked
    no_value: set = field(default_factory=set)              # seeds without the gate's metric: gate not checked

    def working(self, majority: float) -> bool:
        """A working learner unless more than ``majority`` of its seeds fail a gate."""
        return not self.failing > majority * self.n


def _num(r: pd.Series, col: str) -> float:
    v = r.get(col)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return math.nan
    return v if np.isfinite(v) else math.nan


def _text(r: pd.Series, col: str) -> str:
    v = r.get(col)
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v).strip()


def negatives(r: pd.Series) -> float:
    """The negatives of a run's pretext task (chance accuracy 100 / (negatives + 1) %): ``moco_k`` for MoCo
    and the memory bank (He et al. 2020, Sec. 3.2 and Fig. 3), ``batch_size - 1`` for end-to-end (the other
    keys of the batch); nan when unknown."""
    mech = _text(r, "mechanism")
    if mech in NEGATIVES_FROM_K:
        return _num(r, "moco_k")
    if mech == "end_to_end":
        return _num(r, "batch_size") - 1.0
    return math.nan


def random_init_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The random-init baseline rows of one preset's table (grid ``baselines``, ``baseline == random_init``)."""
    if "baseline" not in rows.columns:
        return rows.iloc[0:0]
    return rows[(rows["grid"] == "baselines") & (rows["baseline"].astype(str) == "random_init")
                & rows["status"].isin(S.RESULTS)]


def random_init_of(r: pd.Series, base: pd.DataFrame, metric: str) -> float:
    """The same seed's random-init baseline value of ``metric`` for run row ``r`` (same seed, same preset; for
    a linear-protocol metric the same ``lincls_protocol`` where both rows name one); nan when there is none."""
    seed = _num(r, "seed")
    seed = 0.0 if math.isnan(seed) else seed
    for _, b in base.iterrows():
        bs = _num(b, "seed")
        if (0.0 if math.isnan(bs) else bs) != seed:
            continue
        if _text(r, "preset") and _text(b, "preset") and _text(r, "preset") != _text(b, "preset"):
            continue
        if metric.startswith("lincls") and _text(r, "lincls_protocol") and _text(b, "lincls_protocol") \
                and _text(r, "lincls_protocol") != _text(b, "lincls_protocol"):
            continue
        return _num(b, metric)
    return math.nan


def gate(rows_by_seed: dict, base: pd.DataFrame, gates: dict) -> GateResult:
    """The declared sanity gates of one condition over its paired seeds (seed -> result row). A seed fails when
    its status is not ``done``, or its pretext top-1 is not above ``pretext_over_chance`` x chance, or its
    ``above_random_init`` metric is not above the same seed's random-init baseline. A row without a pretext
    accuracy (no pretext task measured) is not gated; a seed without a random-init row (``no_baseline``) or
    without the metric (``no_value``) is not failed by that gate."""
    g = GateResult(n=len(rows_by_seed))
    metric = gates["above_random_init"]
    for seed, r in rows_by_seed.items():
        pre = _num(r, "pretext_acc1")
        if math.isnan(pre):
            continue
        fails = set()
        if r["status"] != S.DONE:
            fails.add("status")
            g.statuses[r["status"]] = g.statuses.get(r["status"], 0) + 1
        neg = negatives(r)
        if not math.isnan(neg):
            thr = gates["pretext_over_chance"] * 100.0 / (neg + 1.0)
            g.thresholds.add(thr)
            if not pre > thr:
                fails.add("pretext")
        v, ref = _num(r, metric), random_init_of(r, base, metric)
        if math.isnan(ref):
            g.no_baseline.add(seed)
        elif math.isnan(v):
            g.no_value.add(seed)
        elif not v > ref:
            fails.add("random_init")
        for f in fails:
            g.counts[f] = g.counts.get(f, 0) + 1
        g.failing += bool(fails)
    return g


def _cond_text(cond: dict) -> str:
    return ", ".join(f"{k}={v if isinstance(v, list) else _fmt_val(v)}" for k, v in cond.items())


def _seed_list(seeds) -> str:
    """0, 2-4, 6 (ranges of consecutive seeds)."""
    xs, out = sorted(int(s) for s in seeds), []
    for x in xs:
        if out and x == out[-1][1] + 1:
            out[-1][1] = x
        else:
            out.append([x, x])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in out)


def _gate_reason(side: str, cond: dict, g: GateResult, gates: dict) -> str:
    """Why condition ``side`` of a part is not a working learner: how many seeds failed which gate."""
    why = []
    if g.counts.get("status"):
        why.append(f"status not done in {g.counts['status']} ("
                   + ", ".join(f"{st} {k}" for st, k in sorted(g.statuses.items())) + ")")
    if g.counts.get("pretext"):
        thr = "/".join(f"{t:.3g}" for t in sorted(g.thresholds))
        why.append(f"pretext top-1 not above {gates['pretext_over_chance']:g} × chance ({thr} %) in "
                   f"{g.counts['pretext']}")
    if g.counts.get("random_init"):
        why.append(f"{gates['above_random_init']} not above the same seed's random init in {g.counts['random_init']}")
    s = (f"{side} ({_cond_text(cond)}) is not a working learner: {g.failing} of {g.n} paired seeds fail a gate: "
         + ", ".join(why))
    if g.no_baseline or g.no_value:
        s += f" ({unchecked_text(g.no_baseline, g.no_value, gates)})"
    return s


def unchecked_text(no_baseline: set, no_value: set, gates: dict) -> str:
    """Where the random-init gate could not be checked (and so failed no seed)."""
    m = gates["above_random_init"]
    why = ([f"no random-init baseline row for seed(s) {_seed_list(no_baseline)}"] if no_baseline else []) + \
        ([f"no {m} in seed(s) {_seed_list(no_value)}"] if no_value else [])
    return f"random-init gate ({m}) not checked: " + "; ".join(why)


def n_eval(rows: list) -> int | None:
    """Images behind a condition's accuracy: the rows' ``n_eval`` where the table has it, else the declared
    test-set size of their dataset (:data:`TEST_SET_SIZES`) cut to ``knn_subset`` where that column is > 0 (the
    kNN and linear protocols evaluate the first ``knn_subset`` test images); None when unknown (also for rows
    scored on another split than the test set, ``eval_split``, without an ``n_eval``)."""
    given = [v for v in (_num(r, "n_eval") for r in rows) if not math.isnan(v) and v > 0]
    if given:
        return int(min(given))
    if any(_text(r, "eval_split") not in ("", "test") for r in rows):
        return None
    datasets = {_text(r, "dataset").lower() for r in rows}
    if len(datasets) != 1 or datasets.pop() not in TEST_SET_SIZES:
        return None
    size = TEST_SET_SIZES[_text(rows[0], "dataset").lower()]
    subsets = [v for v in (_num(r, "knn_subset") for r in rows) if not math.isnan(v) and v > 0]
    return int(min([size] + subsets))


def test_set_se(rows: list, metric: str) -> float:
    """The test-set sampling error (binomial SE, points) of a condition's mean accuracy over its paired seeds;
    nan for a metric that is no accuracy or an unknown test-set size."""
    if metric not in ACCURACY_METRICS or not rows:
        return math.nan
    n = n_eval(rows)
    return stats.binomial_se(float(np.mean([_num(r, metric) for r in rows])), n) if n else math.nan


def judge_v2(c: dict, rows: pd.DataFrame, alpha: float, unit_name: str = "", gates: dict | None = None) -> Verdict:
    """One claim on one preset's rows, claims version 2 (paired t-test and its interval; intersection-union
    over the parts; Holm on the reversed p for "contradicted"; McNemar for failures; the sanity ``gates``)."""
    grid_rows = _claim_rows(c, rows)
    base = random_init_rows(rows)
    test = c["test"]
    parts = []
    for label, a, b, ra, rb, metric, direction, where in _compared(c, grid_rows):
        pa, pb = _rows_by_seed(ra, None if test == "fails_more" else metric, where), \
            _rows_by_seed(rb, None if test == "fails_more" else metric, where)
        seeds = sorted(set(pa) & set(pb))
        if test == "fails_more":
            fa = {s: r["status"] in S.FAILED for s, r in pa.items()}
            fb = {s: r["status"] in S.FAILED for s, r in pb.items()}
            n10 = sum(fa[s] and not fb[s] for s in seeds)
            n01 = sum(fb[s] and not fa[s] for s in seeds)
            part = Part(label, "status", "", stats.mcnemar(n10, n01, len(seeds), alpha), unit="pp", a=fa, b=fb)
        else:
            va = {s: float(r[metric]) for s, r in pa.items()}
            vb = {s: float(r[metric]) for s, r in pb.items()}
            part = Part(label, metric, "", stats.paired_t(_oriented(c, va, vb, seeds, direction), alpha),
                        unit=UNITS[c.get("scale", "absolute")], a=va, b=vb)
            part.se_a = test_set_se([pa[s] for s in seeds], metric)
            part.se_b = test_set_se([pb[s] for s in seeds], metric)
            if gates and seeds and test in gates["tests"] and metric not in gates["exempt_metrics"]:
                reasons = []
                for side, cond, pr in (("a", a, pa), ("b", b, pb)):
                    g = gate({s: pr[s] for s in seeds}, base, gates)
                    part.no_baseline |= g.no_baseline
                    part.no_value |= g.no_value
                    if not g.working(gates["majority"]):
                        reasons.append(_gate_reason(side, cond, g, gates))
                part.reason = "; ".join(reasons)
        part.seeds_used = set(seeds)
        part.run_ids = {str(pa[s]["run_id"]) for s in seeds} | {str(pb[s]["run_id"]) for s in seeds}
        parts.append(part)
    outcomes_v2(parts, alpha)
    return _verdict_v2(c, parts, alpha, unit_name, gates)


def outcomes_v2(parts: list, alpha: float) -> None:
    """Each part's outcome under version 2: not run (no paired seed), not judgeable (a gate), contradicted
    (Holm over the judged parts' reversed one-sided p-values rejects at alpha / 2), reproduced (its own
    (1 - alpha) interval above 0, no correction: the claim is an intersection-union test), else inconclusive."""
    family = []
    for p in parts:
        if p.est.n == 0:
            p.outcome = NOT_RUN
        elif p.reason:
            p.outcome = NOT_JUDGEABLE
        else:
            family.append(p)
    for p, adj in zip(family, stats.holm([p.est.p_rev for p in family])):
        p.p_rev_adj = adj
        if np.isfinite(adj) and adj < alpha / 2:
            p.outcome = CONTRADICTED
        elif np.isfinite(p.est.low) and p.est.low > 0:
            p.outcome = REPRODUCED
        else:
            p.outcome = INCONCLUSIVE


def claim_outcome_v2(outs: list) -> str:
    """A claim's outcome from its parts' (version 2): contradicted beats not judgeable beats the rest; a claim
    with a not-judgeable part is never reproduced."""
    if not outs or all(o == NOT_RUN for o in outs):
        return NOT_RUN
    if CONTRADICTED in outs:
        return CONTRADICTED
    if NOT_JUDGEABLE in outs:
        return NOT_JUDGEABLE
    if all(o == REPRODUCED for o in outs):
        return REPRODUCED
    return INCONCLUSIVE


def _verdict_v2(c: dict, parts: list, alpha: float, unit_name: str, gates: dict | None) -> Verdict:
    status = claim_outcome_v2([p.outcome for p in parts])
    multi = len(parts) > 1
    notes = []
    n_min = min((p.est.n for p in parts if p.est.n), default=0)
    if status != NOT_RUN and n_min == 1:
        notes.append("single seed: indicative only")
    if status == INCONCLUSIVE and c["test"] == "fails_more":
        need = stats.mcnemar_seeds_needed(alpha)
        for p in parts:
            m = sum(p.a[s] != p.b[s] for s in p.seeds_used)
            if p.est.n and m < need:
                notes.append(f"{m} discordant seed(s) < the {need} McNemar's exact test needs to reach "
                             f"p < {alpha / 2:g}")
    elif status == INCONCLUSIVE:
        judged = [p for p in parts if p.est.n >= 2 and np.isfinite(p.est.sd) and p.est.sd > 0]
        if judged:
            mde = stats.detectable_effect([p.est.sd for p in judged], [p.est.n for p in judged], len(judged), alpha)
            if np.isfinite(mde):
                ns = sorted({p.est.n for p in judged})
                notes.append(f"smallest effect these {'/'.join(map(str, ns))} seeds would reproduce with 80 % power"
                             + (f", the same in all {len(judged)} parts" if len(judged) > 1 else "")
                             + f" ≈ {mde:.2f} {judged[0].unit} (simulated v2 rule)")
    no_base = set().union(*(p.no_baseline for p in parts)) if parts else set()
    no_val = set().union(*(p.no_value for p in parts)) if parts else set()
    if (no_base or no_val) and gates and status not in (NOT_RUN, NOT_JUDGEABLE):
        notes.append(unchecked_text(no_base, no_val, gates))
    reason = "; ".join((f"{p.label}: " if multi else "") + p.reason for p in parts if p.outcome == NOT_JUDGEABLE)
    detail = "; ".join(_part_detail_v2(c, p, multi) for p in parts) if parts else \
        "no comparison of this claim exists in the grid's runs"
    test_name = parts[0].est.test if parts else ""
    if multi:
        test_name += (f"; {len(parts)} parts, all must hold, each at its own level (intersection-union, no "
                      f"correction); contradicted by Holm over the reversed one-sided p at α/2")
    if c["test"] == "not_greater":
        test_name += f"; effect = margin {c['margin']:g} − (a − b)"
    if parts and gates and c["test"] in gates["tests"] and any(p.metric not in gates["exempt_metrics"] for p in parts):
        test_name += "; sanity gates"
    used = set().union(*(p.seeds_used for p in parts)) if parts else set()
    runs = set().union(*(p.run_ids for p in parts)) if parts else set()
    return Verdict(c["key"], c["claim"], c.get("source", ""), status, detail, test=test_name, runs=len(runs),
                   seeds=len(used), parts=parts, unit_name=unit_name, notes=notes, reason=reason, version=2)


def _part_detail_v2(c: dict, p: Part, multi: bool) -> str:
    fails = c["test"] == "fails_more"
    s = f"{p.label}: a {_summary(p.a, fails)} vs b {_summary(p.b, fails)}"
    if fails and p.seeds_used:
        n10 = sum(p.a[s] and not p.b[s] for s in p.seeds_used)
        n01 = sum(p.b[s] and not p.a[s] for s in p.seeds_used)
        s += f" (paired: only a failed in {n10}, only b in {n01} of {len(p.seeds_used)} seeds)"
    if not fails and p.metric:
        s += f" [{p.metric}]"
    if p.est.n:
        s += f", effect {p.effect_text()}"
        if np.isfinite(p.est.p):
            s += f", p = {p.est.p:.3g}"
        if np.isfinite(p.p_rev_adj):
            s += f", reversed p{'_Holm' if multi else ''} = {p.p_rev_adj:.3g}"
        if np.isfinite(p.se_a) and np.isfinite(p.se_b):
            s += f", test-set SE a ±{p.se_a:.2f} / b ±{p.se_b:.2f} pt"
    return s + f" → {p.outcome}"


def rules_text(spec: dict) -> str:
    """The rules of the spec's version in one paragraph (the report's caption of the verdict table)."""
    alpha = spec["alpha"]
    if spec["version"] == 1:
        return (f"Each claim is a test declared in the claims file (version 1), judged over paired seeds at α = "
                f"{alpha:g}: reproduced = the 95 % CI of the effect is above 0 in the paper's direction and the "
                "test passes; contradicted = the CI is below 0; otherwise inconclusive.")
    g = spec.get("gates")
    level = f"{100 * (1 - alpha):g} %"
    gates = (f" Sanity gates (claims with a learned metric): a condition is not a working learner when in more "
             f"than a fraction {g['majority']:g} of its paired seeds its run is not done, its pretext top-1 is not "
             f"above "
             f"{g['pretext_over_chance']:g} × chance (1/(negatives + 1)), or its {g['above_random_init']} is not "
             f"above the same seed's random-init network; a part with such a condition is not judgeable."
             if g else "")
    return (f"Each claim is a test declared in the claims file (version {spec['version']}), judged over paired "
            f"seeds at α = {alpha:g}. Estimand: {ESTIMAND}. A part is reproduced when its {level} interval lies "
            "above 0 in the paper's direction (the paired t-test with its own t-interval, assuming roughly normal "
            "seed-to-seed differences; failures: McNemar's exact test paired by seed, with its exact interval). "
            "A claim is reproduced when every part is, each at its own level (intersection-union test, no "
            "correction); contradicted when Holm over the parts' reversed one-sided p-values rejects at α/2; not "
            "judgeable when a part is (and none is contradicted); not run without a paired seed; otherwise "
            "inconclusive." + gates)


def judge_all(rows: pd.DataFrame, unit_name: str = "", spec: dict | None = None) -> list[Verdict]:
    """Every declared claim on one preset's rows, by the rules of the spec's version."""
    spec = spec or load()
    return [judge(c, rows, spec["alpha"], unit_name, spec["version"], spec.get("gates")) for c in spec["claims"]]

"""The papers' claims judged as declared tests (``ablations/claims.yaml``) over paired seeds.

One :class:`Verdict` per claim and preset, with one :class:`Part` per comparison (a claim "at every K" has a
part per K). Outcomes: ``reproduced`` (95 % CI of the effect above 0 in the paper's direction and the test's
Holm-adjusted p < alpha), ``contradicted`` (CI below 0), ``inconclusive`` (neither), ``not run`` (no paired
seed). The rows given must be one preset's (:meth:`reports.data.Results.units`): presets are never pooled.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pretrain.config import read_yaml_mapping

from . import stats
from .errors import ReportError

CLAIMS_FILE = Path(__file__).resolve().parent.parent / "ablations" / "claims.yaml"
REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_RUN = "reproduced", "contradicted", "inconclusive", "not run"
OUTCOMES = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_RUN)
RESULT_STATUSES = ("done", "diverged", "not_converged")     # an `error` row is never a result
FAILED = ("diverged", "not_converged")
TESTS = ("paired", "not_greater", "fails_more")
CLAIM_KEYS = {"key", "claim", "source", "grid", "metric", "test", "direction", "scale", "where", "a", "b",
              "per", "parts", "margin"}
PART_KEYS = {"label", "a", "b", "metric", "direction"}
UNITS = {"absolute": "pt", "relative": "%", "fails_more": "pp"}


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

    @property
    def effect(self) -> str:
        if not self.parts or all(p.est.n == 0 for p in self.parts):
            return "—"
        if len(self.parts) == 1:
            return self.parts[0].effect_text()
        return "; ".join(f"{p.label}: {p.effect_text()}" for p in self.parts)


def load(path: Path | str = CLAIMS_FILE) -> dict:
    """The declared claims, checked (unknown keys, tests and directions are errors)."""
    from pretrain.errors import UserError
    try:
        spec = read_yaml_mapping(Path(path), "the claims file")
    except (UserError, OSError) as e:
        raise ReportError(str(e)) from None
    claims = spec.get("claims")
    if not isinstance(claims, list) or not claims:
        raise ReportError(f"{path}: 'claims' must be a non-empty list")
    alpha = float(spec.get("alpha", stats.ALPHA))
    if not 0 < alpha < 1:
        raise ReportError(f"{path}: alpha must be in (0, 1), got {alpha}")
    seen = set()
    for c in claims:
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
    return {"alpha": alpha, "version": spec.get("version"), "claims": claims}


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


def _by_seed(rows: pd.DataFrame, metric: str | None, where: str) -> dict:
    """seed -> value (the metric, or True/False "failed" for metric None) over result rows; two results for one
    seed in one condition is a declaration error (the condition does not name one cell)."""
    rows = rows[rows["status"].isin(RESULT_STATUSES)]
    out = {}
    for _, r in rows.iterrows():
        seed = 0 if pd.isna(r["seed"]) else int(r["seed"])
        if metric is None:
            v = r["status"] in FAILED
        else:
            v = r[metric]
            if v is None or pd.isna(v) or not np.isfinite(float(v)):
                continue
            v = float(v)
        if seed in out:
            raise ReportError(f"{where}: several runs of seed {seed} match one condition (run ids "
                              f"{', '.join(map(str, rows['run_id'][rows['seed'].fillna(0) == seed]))}); "
                              f"narrow the claim's conditions in {CLAIMS_FILE.name}")
        out[seed] = v
    return out


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
def judge(c: dict, rows: pd.DataFrame, alpha: float, unit_name: str = "") -> Verdict:
    """One claim on one preset's rows."""
    grid_rows = rows[rows["grid"] == c["grid"]]
    if c.get("where"):
        grid_rows = select(grid_rows, c["where"])
    test = c["test"]
    scale = c.get("scale", "absolute")
    parts_spec = []
    for p in c.get("parts") or [{}]:
        a = {**(c.get("a") or {}), **(p.get("a") or {})}
        b = {**(c.get("b") or {}), **(p.get("b") or {})}
        for pv in _per_values(grid_rows, list(c.get("per") or []), a, b):
            label = ", ".join(x for x in [p.get("label", "")] + [f"{k}={_fmt_val(v)}" for k, v in pv.items()] if x)
            parts_spec.append((label or "a vs b", {**a, **pv}, {**b, **pv}, p.get("metric", c.get("metric")),
                               p.get("direction", c.get("direction", "greater"))))
    parts = []
    for label, a, b, metric, direction in parts_spec:
        where = f"claim {c['key']} ({label})"
        ra, rb = select(grid_rows, a), select(grid_rows, b)
        if len(ra) and set(ra.index) == set(rb.index):
            continue            # `max` and `min` name the same runs (one value of K): nothing to compare
        if test == "fails_more":
            va, vb = _by_seed(ra, None, where), _by_seed(rb, None, where)
            est = stats.failures(sum(va.values()), len(va), sum(vb.values()), len(vb), alpha)
            parts.append(Part(label, "status", "", est, unit="pp", a=va, b=vb))
            continue
        va, vb = _by_seed(ra, metric, where), _by_seed(rb, metric, where)
        seeds = sorted(set(va) & set(vb))
        d = np.array([va[s] - vb[s] for s in seeds], dtype=float)
        if scale == "relative":
            d = 100.0 * d / np.array([vb[s] for s in seeds], dtype=float)
        if test == "not_greater":
            d = float(c["margin"]) - d
        elif direction == "less":
            d = -d
        parts.append(Part(label, metric, "", stats.paired(d, alpha), unit=UNITS[scale], a=va, b=vb))
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


def judge_all(rows: pd.DataFrame, unit_name: str = "", spec: dict | None = None) -> list[Verdict]:
    """Every declared claim on one preset's rows."""
    spec = spec or load()
    return [judge(c, rows, spec["alpha"], unit_name) for c in spec["claims"]]

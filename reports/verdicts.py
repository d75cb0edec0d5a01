"""The paper's claims, each judged from our results.

A verdict is ``reproduced``, ``not reproduced`` or ``not run`` (not enough
finished runs to judge), with the numbers behind it and how many runs/seeds.
Comparisons use the mean over seeds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import data

REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"


@dataclass
class Verdict:
    key: str
    claim: str
    source: str
    status: str
    detail: str
    runs: int = 0
    seeds: int = 0
    numbers: dict = field(default_factory=dict)


def _seeds(rows) -> int:
    if rows is None or len(rows) == 0:
        return 0
    s = rows["seed"].dropna()
    return int(s.nunique()) if len(s) else 1


def _fmt(c) -> str:
    return c.label() + (f" (n={c.n})" if c.kind == "value" and c.n > 1 else "")


def m0_fails(res, mom) -> Verdict:
    claim, src = "m=0 fails (training does not converge)", "MoCo Sec. 4.1 (momentum)"
    rows = res.grid("table1_momentum")
    sub = rows[rows["moco_m"] == 0.0] if len(rows) else rows
    sub = sub[sub["status"].isin(["done", "failed"])] if len(sub) else sub
    if len(sub) == 0:
        return Verdict("m0_fails", claim, src, NOT_RUN, "no finished m=0 run")
    n_fail = int((sub["status"] == "failed").sum())
    reasons = "; ".join(sorted({str(r) for r in sub.loc[sub["status"] == "failed", "reason"] if r}))
    ok = n_fail == len(sub)
    det = f"{n_fail}/{len(sub)} m=0 runs failed" + (f" ({reasons})" if reasons else "")
    if not ok:
        c = mom["cells"].get(0.0)
        det += f"; finished m=0 runs reach {_fmt(c)} {data.METRIC_LABEL[mom['metric']]}"
    return Verdict("m0_fails", claim, src, REPRODUCED if ok else NOT_REPRODUCED, det,
                   runs=len(sub), seeds=_seeds(sub), numbers={"failed": n_fail, "runs": len(sub)})


def best_m(res, mom) -> Verdict:
    claim, src = "0.99 ≤ best m ≤ 0.9999", "MoCo Sec. 4.1 (momentum)"
    vals = {m: c for m, c in mom["cells"].items() if m and m > 0 and c.kind == "value"}
    rows = res.grid("table1_momentum")
    if len(vals) < 2:
        return Verdict("best_m", claim, src, NOT_RUN,
                       f"{len(vals)} momentum value(s) with a finished run (need ≥ 2 with m > 0)")
    best = max(vals, key=lambda m: vals[m].mean)
    ok = 0.99 <= best <= 0.9999
    det = f"best m = {best:g} ({_fmt(vals[best])}); " + ", ".join(
        f"m={m:g}: {_fmt(c)}" for m, c in sorted(vals.items())) + f" [{data.METRIC_LABEL[mom['metric']]}]"
    sub = rows[rows["status"] == "done"]
    return Verdict("best_m", claim, src, REPRODUCED if ok else NOT_REPRODUCED, det,
                   runs=len(sub), seeds=_seeds(sub),
                   numbers={"best_m": best, **{f"m={m:g}": c.mean for m, c in vals.items()}})


def moco_beats_bank(res, mech) -> Verdict:
    claim, src = "MoCo ≥ memory bank at every K", "MoCo Fig. 3"
    cells = mech["cells"]
    ks = sorted(k for (m, k) in cells if m == "moco" and cells[(m, k)].kind == "value"
                and cells.get(("memory_bank", k)) is not None
                and cells[("memory_bank", k)].kind == "value")
    if not ks:
        return Verdict("moco_ge_bank", claim, src, NOT_RUN,
                       "no K with finished runs of both MoCo and the memory bank")
    worse = [k for k in ks if cells[("moco", k)].mean < cells[("memory_bank", k)].mean]
    det = ", ".join(f"K={int(k)}: MoCo {_fmt(cells[('moco', k)])} vs bank "
                    f"{_fmt(cells[('memory_bank', k)])}" for k in ks)
    det += f" [{data.METRIC_LABEL[mech['metric']]}]"
    if worse:
        det = f"MoCo below the memory bank at K={', '.join(str(int(k)) for k in worse)}; " + det
    rows = res.grid("fig3_mechanisms")
    rows = rows[rows["mechanism"].isin(["moco", "memory_bank"]) & rows["moco_k"].isin(ks)]
    return Verdict("moco_ge_bank", claim, src, NOT_REPRODUCED if worse else REPRODUCED, det,
                   runs=len(rows), seeds=_seeds(rows),
                   numbers={int(k): (cells[("moco", k)].mean, cells[("memory_bank", k)].mean)
                            for k in ks})


def rises_with_k(res, mech) -> Verdict:
    """All three mechanisms benefit from a larger K: per mechanism with ≥ 2 K's,
    the accuracy at the largest K is above the one at the smallest, and the
    Spearman rank correlation of (K, accuracy) is positive."""
    claim, src = "accuracy rises with K", "MoCo Fig. 3"
    cells = mech["cells"]
    parts, bad, judged = [], [], 0
    numbers = {}
    for m in data.MECHANISMS:
        pts = sorted((k, c.mean) for (mm, k), c in cells.items() if mm == m and c.kind == "value")
        if len(pts) < 2:
            continue
        judged += 1
        ks = np.array([p[0] for p in pts], dtype=float)
        acc = np.array([p[1] for p in pts], dtype=float)
        rk = np.argsort(np.argsort(ks))
        ra = np.argsort(np.argsort(acc))
        rho = float(np.corrcoef(rk, ra)[0, 1]) if np.std(ra) > 0 else 0.0
        ok = acc[-1] > acc[0] and rho > 0
        numbers[m] = {"rho": rho, "first": acc[0], "last": acc[-1]}
        parts.append(f"{data.MECH_LABEL[m]}: {acc[0]:.1f} @K={int(ks[0])} → {acc[-1]:.1f} "
                     f"@K={int(ks[-1])} (Spearman ρ={rho:+.2f})")
        if not ok:
            bad.append(data.MECH_LABEL[m])
    rows = res.grid("fig3_mechanisms")
    rows = rows[rows["status"] == "done"]
    if judged == 0:
        return Verdict("rises_with_k", claim, src, NOT_RUN,
                       "no mechanism with finished runs at ≥ 2 values of K")
    det = "; ".join(parts) + f" [{data.METRIC_LABEL[mech['metric']]}]"
    if bad:
        det = f"does not rise for {', '.join(bad)}; " + det
    return Verdict("rises_with_k", claim, src, NOT_REPRODUCED if bad else REPRODUCED, det,
                   runs=len(rows), seeds=_seeds(rows), numbers=numbers)


def shuffle(res, sh) -> Verdict:
    """Fig. A.1: for MoCo and end-to-end, without shuffle-BN the final pretext
    accuracy is higher and the kNN accuracy lower than with it."""
    claim, src = "no shuffle-BN → pretext acc higher and kNN lower", "MoCo Fig. A.1"
    cells = sh["cells"]
    parts, bad, judged, n_runs, seeds = [], [], 0, 0, 0
    for m in ("moco", "end_to_end"):
        off = cells.get((m, "off"))
        ons = [(sb, v) for (mm, sb), v in cells.items() if mm == m and sb in data.SHUFFLE_ON]
        if off is None or not ons or off["pretext_acc1"].kind != "value" \
                or off["knn_acc"].kind != "value":
            continue
        for sb, on in ons:
            if on["pretext_acc1"].kind != "value" or on["knn_acc"].kind != "value":
                continue
            judged += 1
            n_runs += len(off["rows"]) + len(on["rows"])
            seeds = max(seeds, _seeds(off["rows"]), _seeds(on["rows"]))
            ok = (off["pretext_acc1"].mean > on["pretext_acc1"].mean
                  and off["knn_acc"].mean < on["knn_acc"].mean)
            parts.append(f"{data.MECH_LABEL[m]}: pretext {_fmt(off['pretext_acc1'])} (off) vs "
                         f"{_fmt(on['pretext_acc1'])} ({sb}); kNN {_fmt(off['knn_acc'])} (off) vs "
                         f"{_fmt(on['knn_acc'])} ({sb})")
            if not ok:
                bad.append(f"{data.MECH_LABEL[m]} ({sb})")
    if judged == 0:
        return Verdict("shuffle_bn", claim, src, NOT_RUN,
                       "no mechanism with finished runs both with and without shuffle-BN")
    det = "; ".join(parts)
    if bad:
        det = f"not so for {', '.join(bad)}; " + det
    return Verdict("shuffle_bn", claim, src, NOT_REPRODUCED if bad else REPRODUCED, det,
                   runs=n_runs, seeds=seeds)


def mlp_aug(res, v2) -> Verdict:
    """MoCo v2 Table 1: MLP and aug+ each improve on v1, together most (step
    schedule, shortest schedule; best τ per cell as the paper tunes τ)."""
    claim, src = "MLP and aug+ each help, together most", "MoCo v2 Table 1"
    cells = v2["cells"]
    base = [(k, c) for k, c in cells.items() if not k[2] and c.kind == "value"]
    if not base:
        return Verdict("mlp_aug", claim, src, NOT_RUN, "no finished run without cos")
    ep = min(k[3] or 0 for k, _ in base)
    best = {}
    for (mlp, aug, cos, e, tau), c in base:
        if (e or 0) != ep:
            continue
        key = (bool(mlp), bool(aug))
        if key not in best or c.mean > best[key][1].mean:
            best[key] = (tau, c)
    need = [(False, False), (True, False), (False, True), (True, True)]
    missing = [k for k in need if k not in best]
    names = {(False, False): "v1", (True, False): "+MLP", (False, True): "+aug+",
             (True, True): "+MLP+aug+"}
    if missing:
        return Verdict("mlp_aug", claim, src, NOT_RUN,
                       "missing finished runs for " + ", ".join(names[k] for k in missing))
    v = {k: best[k][1].mean for k in need}
    ok = (v[(True, False)] > v[(False, False)] and v[(False, True)] > v[(False, False)]
          and v[(True, True)] > max(v[(True, False)], v[(False, True)]))
    det = ", ".join(f"{names[k]}: {_fmt(best[k][1])}"
                    + (f" (τ={best[k][0]:g})" if best[k][0] is not None else "") for k in need)
    det += f" [{data.METRIC_LABEL[v2['metric']]}, {int(ep)} epochs, step schedule]"
    rows = res.grid("v2_table1")
    rows = rows[(rows["status"] == "done") & ~rows["cos"].map(lambda x: x is True)
                & (rows["epochs"].fillna(0) == ep)]
    return Verdict("mlp_aug", claim, src, REPRODUCED if ok else NOT_REPRODUCED, det,
                   runs=len(rows), seeds=_seeds(rows), numbers={names[k]: v[k] for k in need})


def all_verdicts(res, parts: dict) -> list[Verdict]:
    return [m0_fails(res, parts["table1_momentum"]), best_m(res, parts["table1_momentum"]),
            moco_beats_bank(res, parts["fig3_mechanisms"]), rises_with_k(res, parts["fig3_mechanisms"]),
            shuffle(res, parts["figA1_shuffle_bn"]), mlp_aug(res, parts["v2_table1"])]

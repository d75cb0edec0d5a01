"""Helpers shared by the report's tables (each table lives in its section, ``reports/sections/``): result rows
grouped by config, and K and m as the tables print them."""
from __future__ import annotations

import math

import pandas as pd


def _key(v):
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return v


def groups(rows: pd.DataFrame, keys: list):
    """Rows grouped by config ``keys`` (seeds/trials pooled), NaN keys as None."""
    if len(rows) == 0:
        return {}
    out = {}
    for i, r in rows.iterrows():
        k = tuple(_key(r[c]) for c in keys)
        out.setdefault(k, []).append(i)
    return {k: rows.loc[idx] for k, idx in out.items()}


def fmt_m(m) -> str:
    if m is None:
        return "?"
    return f"{m:g}"


def fmt_k(k) -> str:
    return "?" if k is None else f"{int(k)}"

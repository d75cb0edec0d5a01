"""Build the whole report: results table -> tables, verdicts, figures, pages.

``build(results_path, out_dir)`` writes into ``out_dir``:
``index.html`` (self-contained), ``report.md``, ``figures/*.{png,svg,pdf}``,
``tables/*.csv`` (the generated tables as text), ``verdicts.csv``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from . import data, figures, render, tables, verdicts


def build(results_path=None, out_dir="reports/out", progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    res = data.load_results(results_path)
    steps = tqdm(total=8, desc="report", disable=not progress, unit="step")

    parts = {}
    for key, fn in (("table1_momentum", tables.momentum), ("fig3_mechanisms", tables.mechanisms),
                    ("figA1_shuffle_bn", tables.shuffle_bn), ("v2_table1", tables.v2),
                    ("transfer", tables.transfer), ("cost", tables.cost)):
        t, extra = fn(res)
        parts[key] = {"table": t, **extra}
    steps.update(1)
    vds = verdicts.all_verdicts(res, parts)
    steps.update(1)

    figs = {}
    for key, fn in (("fig3_mechanisms", figures.fig3), ("table1_momentum", figures.momentum),
                    ("figA1_shuffle_bn", figures.shuffle_bn), ("cost", figures.cost)):
        figs[key] = fn(res, parts[key], fig_dir)
        steps.update(1)

    counts = res.df["status"].value_counts().to_dict() if len(res.df) else {}
    if not res.exists:
        summary = (f"No results table at {res.path}: every grid is 'not run' "
                   f"(run a grid first, e.g. `make reproduce-table`).")
    else:
        grids = [g for g in data.GRIDS if (res.df["grid"] == g).any()]
        summary = (f"Results table {res.path}: {len(res.df)} rows ("
                   + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + "); grids run: "
                   + (", ".join(grids) or "none") + ". Every number links to its run directory.")
    ref = [f"{p.name}: " + "; ".join(sorted(set(data.paper(p.stem)["source"].astype(str))))
           for p in sorted(data.PAPER_DIR.glob("*.csv"))]
    ctx = {
        "summary_line": summary,
        "verdicts": vds,
        "sources": ref,
        "sections": [
            {"key": "fig3", "title": "MoCo Fig. 3: contrastive loss mechanisms",
             "figures": [{"key": "fig3_mechanisms", "files": figs["fig3_mechanisms"],
                          "alt": "Fig. 3: accuracy vs K per mechanism, ours (left) and the paper (right)"}],
             "tables": [parts["fig3_mechanisms"]["table"]]},
            {"key": "table1", "title": "MoCo momentum ablation (Table 1 of this suite)",
             "figures": [{"key": "table1_momentum", "files": figs["table1_momentum"],
                          "alt": "Table 1: accuracy vs momentum m, ours (left) and the paper (right)"}],
             "tables": [parts["table1_momentum"]["table"]]},
            {"key": "figA1", "title": "MoCo Fig. A.1: shuffling BN",
             "figures": [{"key": "figA1_shuffle_bn", "files": figs["figA1_shuffle_bn"],
                          "alt": "Fig. A.1: pretext and kNN accuracy over epochs, shuffle BN on vs off"}],
             "tables": [parts["figA1_shuffle_bn"]["table"]]},
            {"key": "v2", "title": "MoCo v2 Table 1", "tables": [parts["v2_table1"]["table"]]},
            {"key": "transfer", "title": "Transfer to detection", "tables": [parts["transfer"]["table"]]},
            {"key": "cost", "title": "Memory and time per mechanism",
             "figures": [{"key": "cost", "files": figs["cost"],
                          "alt": "Throughput and peak memory vs K per mechanism"}],
             "tables": [parts["cost"]["table"]]},
            {"key": "reference", "title": "Other reference numbers (official repository)",
             "tables": tables.reference_tables()},
        ],
    }
    for sec in ctx["sections"]:
        for t in sec.get("tables", []):
            tmp = out_dir / "tables" / f".{t.key}.tmp.csv"
            tmp.parent.mkdir(parents=True, exist_ok=True)
            t.frame().to_csv(tmp, index=False)
            tmp.replace(out_dir / "tables" / f"{t.key}.csv")
    vdf = pd.DataFrame([{"claim": v.claim, "source": v.source, "verdict": v.status, "runs": v.runs,
                         "seeds": v.seeds, "numbers": v.detail} for v in vds])
    render.write_atomic(out_dir / "verdicts.csv", vdf.to_csv(index=False))
    steps.update(1)
    render.write_atomic(out_dir / "report.md", render.markdown(ctx, out_dir))
    render.write_atomic(out_dir / "index.html", render.page(ctx, out_dir))
    steps.update(1)
    steps.close()
    return {"results": res, "parts": parts, "verdicts": vds, "figures": figs,
            "html": out_dir / "index.html", "markdown": out_dir / "report.md",
            "summary": summary}

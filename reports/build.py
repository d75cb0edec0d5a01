"""Build the whole report: results table -> tables, verdicts, figures, pages.

``build(results_path, out_dir)`` writes into ``out_dir``:
``index.html`` (self-contained), ``report.md``, ``figures/*.{png,svg,pdf}`` (the forest plot of every claim
among them), ``tables/*.csv`` and ``tables/*.tex`` (every table as text and as LaTeX for a paper's appendix),
``verdicts.csv`` / ``verdicts.tex``. Several presets in the table: one such report per preset in
``<preset>/`` and an index page. The folder of a preset is its name as a safe slug
(:func:`reports.paths.unit_dirs`), always inside ``out_dir``; names that would share a folder are refused before
anything is written.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from . import claims, data, figures, paths, render, sections

REFERENCE_RESULTS = Path(__file__).resolve().parent / "reference" / "tiny-v1" / "results.csv"
REFERENCE_CLAIMS_VERSION = 1        # the claims version the committed reference set was judged by


def is_reference(results_path) -> bool:
    """The committed tiny reference set (that file, or a byte-identical copy)."""
    if not results_path:
        return False
    p = Path(results_path)
    try:
        return p.resolve() == REFERENCE_RESULTS or p.read_bytes() == REFERENCE_RESULTS.read_bytes()
    except OSError:
        return False


def claims_line(spec: dict, results_path=None) -> str:
    """Which claims judged the report: the file and its version; judged under another version than its own,
    the committed reference set is labelled exploratory (its seeds were seen when the rules were written)."""
    path = Path(spec.get("path", claims.CLAIMS_FILE))
    try:
        shown = str(path.resolve().relative_to(data.REPO_ROOT))
    except ValueError:
        shown = str(path)
    s = f"Claims: {shown} (version {spec['version']})"
    if spec["version"] != REFERENCE_CLAIMS_VERSION and is_reference(results_path):
        s += (f" — claims v{spec['version']} on the v{REFERENCE_CLAIMS_VERSION} (design-seed, exploratory) set: "
              f"the committed reference was judged by claims v{REFERENCE_CLAIMS_VERSION}")
    return s + "."


def exploratory_verdicts(path, spec: dict) -> dict[str, dict[str, claims.Verdict]]:
    """The claims of ``spec`` judged on the results table at ``path`` (an exploratory set: its seeds were seen
    while the design or the claims were written), per unit (preset) name and claim key."""
    exp = data.load_results(path)
    return {name: {v.key: v for v in claims.judge_all(r.df, name, spec)} for name, r in exp.units()}


def exploratory_line(path) -> str:
    return (f"Beside each verdict: the same claim judged by the same rules on the exploratory set {path} (seeds "
            "seen while the design or the claims were written: a finding it shows that the confirmatory seeds do "
            "not is not confirmed).")


def build(results_path=None, out_dir="reports/out", progress: bool = True, claims_path=None,
          exploratory_path=None) -> dict:
    """The report of every preset in the results table, judged by the claims file ``claims_path`` (default
    ``ablations/claims.yaml``). One preset (or none): the report is ``out_dir`` itself. Several: one complete
    report per preset in ``out_dir/<preset>/`` and an index page in ``out_dir`` with each preset's verdicts
    (presets, datasets and archs are never pooled). ``exploratory_path``: a second results table (an
    exploratory set) judged by the same claims, its outcome shown beside each verdict of the same preset."""
    sections.check()                # a grid YAML without its section: refused before anything is read or written
    out_dir = Path(out_dir)
    res = data.load_results(results_path)
    spec = claims.load(claims_path or claims.CLAIMS_FILE)
    spec["line"] = claims_line(spec, results_path)
    spec["rules"] = claims.rules_text(spec)
    if exploratory_path:
        spec["exploratory"] = exploratory_verdicts(exploratory_path, spec)
        spec["line"] += " " + exploratory_line(exploratory_path)
    units = res.units()
    if len(units) <= 1:
        name, r = units[0] if units else ("", res)
        return build_unit(r, out_dir, name, spec, progress)
    dirs = paths.unit_dirs(out_dir, [n for n, _ in units])       # refused here, before anything is written
    reports = {}
    for name, r in units:
        reports[name] = build_unit(r, dirs[name], name, spec, progress)
    vds = [v for rep in reports.values() for v in rep["verdicts"]]
    names = [n for n, _ in units]

    def index_summary(esc):
        return (f"Results table {esc(res.path)}: {len(res.df)} rows in {len(units)} presets, each judged on its "
                "own: " + ", ".join(esc(n) for n in names) + ".")
    summary = index_summary(str)
    ctx = {"summary_line": summary, "summary_md": index_summary(render.md_escape), "claims_line": spec["line"],
           "rules": spec["rules"],
           "units": [{"name": n, "href": paths.href(dirs[n] / "index.html", out_dir),
                      "md": paths.href(dirs[n] / "report.md", out_dir), "summary": reports[n]["summary"],
                      "summary_md": reports[n]["summary_md"], "verdicts": reports[n]["verdicts"]} for n in names]}
    _write_verdicts(out_dir, vds, spec)
    render.write_atomic(out_dir / "report.md", render.index_markdown(ctx))
    render.write_atomic(out_dir / "index.html", render.index_page(ctx))
    return {"results": res, "presets": reports, "verdicts": vds, "html": out_dir / "index.html",
            "markdown": out_dir / "report.md", "summary": summary, "claims": spec}


VERDICT_CSV_V1 = ["preset", "key", "claim", "source", "verdict", "effect_95ci", "seeds", "runs", "test", "notes",
                  "numbers"]
VERDICT_CSV_V2 = VERDICT_CSV_V1 + ["reason", "claims"]      # version 2: why not judgeable; the claims file
VERDICT_CSV_EXPLORATORY = ["exploratory_verdict", "exploratory_effect_95ci"]   # with an exploratory set beside


def _write_verdicts(out_dir: Path, vds: list, spec: dict) -> None:
    """verdicts.csv and verdicts.tex; version 1 keeps its columns exactly (the committed reference's)."""
    v2 = spec["version"] >= 2
    name = f"{Path(spec.get('path', claims.CLAIMS_FILE)).name} v{spec['version']}"
    columns = (VERDICT_CSV_V2 if v2 else VERDICT_CSV_V1) + (VERDICT_CSV_EXPLORATORY if "exploratory" in spec else [])
    vdf = pd.DataFrame([{"preset": v.unit_name, "key": v.key, "claim": v.claim, "source": v.source,
                         "verdict": v.status, "effect_95ci": v.effect, "seeds": v.seeds, "runs": v.runs,
                         "test": v.test, "notes": "; ".join(v.notes), "numbers": v.detail, "reason": v.reason,
                         "claims": name,
                         "exploratory_verdict": v.exploratory.status if v.exploratory else "not run",
                         "exploratory_effect_95ci": v.exploratory.effect if v.exploratory else "—"} for v in vds],
                       columns=columns)
    out_dir.mkdir(parents=True, exist_ok=True)
    render.write_atomic(out_dir / "verdicts.csv", vdf.to_csv(index=False))
    caption = "Verdicts" + (f" ({vds[0].unit_name})" if vds and len({v.unit_name for v in vds}) == 1 else "")
    if v2:
        render.write_atomic(out_dir / "verdicts.tex", render.latex(
            vdf[["claim", "verdict", "effect_95ci", "seeds", "test", "reason"]], caption,
            f"claims {name}; estimand: {claims.ESTIMAND}"))
    else:
        render.write_atomic(out_dir / "verdicts.tex", render.latex(
            vdf[["claim", "verdict", "effect_95ci", "seeds", "test"]], caption))


def build_unit(res: data.Results, out_dir: Path, name: str, spec: dict, progress: bool = True) -> dict:
    """The report of one preset (rows already restricted to it) into ``out_dir``: every section's tables, the
    verdicts, every section's figures and the forest plot, the pages."""
    fig_dir = out_dir / "figures"
    n_figures = sum(len(sec.figures) for sec in sections.SECTIONS)
    steps = tqdm(total=n_figures + 5, desc=f"report {name}".strip(), disable=not progress, unit="step")

    parts, shown = _tables(res)
    steps.update(1)
    vds = claims.judge_all(res.df, name, spec)
    if "exploratory" in spec:
        for v in vds:
            v.exploratory = spec["exploratory"].get(name, {}).get(v.key)
    steps.update(1)

    figs = {}
    for sec in sections.SECTIONS:
        for f in sec.figures:
            figs[f.key] = f.draw(res, parts, fig_dir)
            steps.update(1)
    figs["forest"] = figures.forest(vds, fig_dir)
    steps.update(1)

    summary = _unit_summary(res, name, str)
    ref = [f"{p.name}: " + "; ".join(sorted(set(data.paper(p.stem)["source"].astype(str))))
           for p in sorted(data.PAPER_DIR.glob("*.csv"))]
    ctx = {
        "title_suffix": f" — preset {name}" if name else "",
        "summary_line": summary,
        "summary_md": _unit_summary(res, name, render.md_escape),
        "verdicts": vds,
        "claims_version": spec.get("version"),
        "claims_line": spec.get("line", ""),
        "rules": spec.get("rules", ""),
        "alpha": spec["alpha"],
        "forest": {"key": "forest", "files": figs["forest"],
                   "alt": "Forest plot: every claim's effect with its 95 % confidence interval"},
        "sources": ref,
        "sections": [{"key": sec.anchor, "title": sec.title,
                      "figures": [{"key": f.key, "files": figs[f.key], "alt": f.alt} for f in sec.figures],
                      "tables": shown[sec.name]} for sec in sections.page_order()],
    }
    for sec in ctx["sections"]:
        for t in sec["tables"]:
            render.write_atomic(out_dir / "tables" / f"{t.key}.csv", t.frame().to_csv(index=False))
            render.write_atomic(out_dir / "tables" / f"{t.key}.tex", render.latex(t.frame(), t.title, t.caption))
    _write_verdicts(out_dir, vds, spec)
    steps.update(1)
    render.write_atomic(out_dir / "report.md", render.markdown(ctx, out_dir))
    render.write_atomic(out_dir / "index.html", render.page(ctx, out_dir))
    steps.update(1)
    steps.close()
    return {"results": res, "parts": parts, "verdicts": vds, "figures": figs, "claims": spec,
            "html": out_dir / "index.html", "markdown": out_dir / "report.md",
            "summary": summary, "summary_md": ctx["summary_md"], "preset": name}


def _tables(res: data.Results) -> tuple[dict, dict]:
    """Every section's tables: ``parts`` (by table key: the table and what its figures read) and the tables of each
    section by section name."""
    parts, shown = {}, {}
    for sec in sections.SECTIONS:
        shown[sec.name] = []
        for fn in sec.tables:
            t, extra = fn(res)
            parts[t.key] = {"table": t, **extra}
            shown[sec.name].append(t)
    return parts, shown


def _unit_summary(res: data.Results, name: str, esc) -> str:
    """The head line of one preset's report, table values passed through ``esc`` (``str`` for the HTML page,
    which escapes it whole, and the terminal; :func:`render.md_escape` for ``report.md``, whose own code
    spans stay code)."""
    if not res.exists:
        return (f"No results table at {esc(res.path)}: every grid is 'not run' "
                f"(run a grid first, e.g. `make reproduce-table`).")
    counts = res.df["status"].value_counts().to_dict() if len(res.df) else {}
    grids = [g for g in sections.result_grids() if (res.df["grid"] == g).any()]
    return ((f"Preset {esc(name)}: " if name else "") + f"results table {esc(res.path)}: {len(res.df)} rows ("
            + ", ".join(f"{v} {esc(k)}" for k, v in sorted(counts.items())) + "); grids run: "
            + (", ".join(grids) or "none") + ". Error rows (crash, OOM, lost job) are no result and "
            "enter no table or verdict. Every number links to its run directory.")

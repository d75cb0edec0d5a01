"""Hostile results tables against ``python -m reports`` (merged into ``scripts/hostile_inputs.py``): table values
that would choose where the report writes (a preset of ``../x``, an absolute path, ``a/b``, two presets for one
folder), become links (a ``run_dir`` of ``javascript:``, ``http://``, ``../../etc``) or markup (a cell with ``|``,
``<script>``, ``[x](http://e)``, a newline, a TeX command, a preset with ``$`` for the figures' mathtext).

Each case writes its table with the csv module only (no import of the code under test), so it measures an older
checkout as well; the check says what a look at the files found, a bad outcome in upper case."""
from __future__ import annotations

import csv
import re
from pathlib import Path

from hostile_common import Ctx, _res

COLS = ["grid", "run_id", "preset", "run_dir", "status", "mechanism", "moco_k", "moco_m", "seed", "knn_acc",
        "task", "weights", "trial", "AP50", "AP", "AP75"]
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
TRANSFER_TITLE = "### Transfer: PASCAL VOC / COCO detection"


def _row(**kw) -> dict:
    r = {"grid": "table1_momentum", "run_id": "r0", "preset": "tiny", "status": "done", "mechanism": "moco",
         "moco_k": 4096, "moco_m": 0.999, "seed": 0, "knn_acc": 60.0}
    r.update(kw)
    return r


def _transfer(task: str, preset: str = "tiny") -> list[dict]:
    """Two transfer rows, the first with ``task`` as its text (a table cell of the report)."""
    return [_row(grid="transfer", run_id=f"t{i}", preset=preset, task=task if i == 0 else "voc",
                 weights="moco_v1", trial=0, AP50=80.0, AP=50.0, AP75=55.0, mechanism="", moco_k="", moco_m="",
                 knn_acc="") for i in range(2)]


def _table(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") for k in COLS})
    return path


def _report(c: Ctx, table: Path, out: Path):
    return c.run(["-m", "reports", "--quiet", "--results", str(table), "--out", str(out)])


def _files(root: Path) -> set:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _outside(c: Ctx, out: Path, before: set) -> str:
    """What the report wrote in the scratch folder outside ``out``."""
    rel = out.relative_to(c.tmp).as_posix() + "/"
    new = sorted(p for p in _files(c.tmp) - before if not p.startswith(rel))
    if not new:
        return "nothing outside --out"
    return f"wrote OUTSIDE --out: {', '.join(new[:3])}" + (f" (+{len(new) - 3})" if len(new) > 3 else "")


def _planted(c: Ctx, folder: str) -> Path:
    """Another report's page, where a hostile preset would point the writer."""
    p = c.tmp / folder / "report.md"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("another report\n")
    return p


def _preset_case(c: Ctx, preset: str, planted: Path | None = None) -> dict:
    table = _table(c.tmp / "data" / "results.csv", [_row(run_id="a"), _row(run_id="b", preset=preset)])
    out = c.tmp / "rep"
    before = _files(c.tmp)
    r = _report(c, table, out)
    check = _outside(c, out, before)
    if planted is not None and planted.read_text() != "another report\n":
        check += "; another report OVERWRITTEN"
    folders = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("index.html") if p.parent != out) \
        if out.is_dir() else []
    folders = [f.replace(c.tmp.name, "<scratch>") for f in folders]     # the same line on every run
    return _res(r, check + (f"; folders {', '.join(folders)}" if folders else ""))


# --- presets: where the report writes -------------------------------------------------------------------------
def report_preset_dotdot(c: Ctx):
    return _preset_case(c, "../other", _planted(c, "other"))


def report_preset_abs(c: Ctx):
    victim = _planted(c, "victim")          # an absolute path (inside the scratch folder, so the old code's write
    return _preset_case(c, str(victim.parent), victim)      # lands somewhere harmless and is seen)


def report_preset_slash(c: Ctx):
    r = _preset_case(c, "a/b")
    if "folders " in r["check"] and "a/b" in r["check"].split("folders ", 1)[1]:
        r["check"] += "; NESTED"
    return r


def report_preset_collision(c: Ctx):
    """``tiny/`` is the folder of ``tiny`` when joined as a path; ``a/b`` and ``a_b`` share one once slugged."""
    presets = ["tiny", "tiny/", "a/b", "a_b"]
    table = _table(c.tmp / "data" / "results.csv", [_row(run_id=f"r{i}", preset=p) for i, p in enumerate(presets)])
    out = c.tmp / "rep"
    r = _report(c, table, out)
    if r.returncode == 2:
        return _res(r, "refused, nothing written" if not (out.exists() and any(out.iterdir()))
                    else "refused, but files WRITTEN")
    n = sum(1 for p in out.rglob("index.html") if p.parent != out) if out.is_dir() else 0
    return _res(r, f"{len(presets)} presets in {n} folders" + ("; MERGED" if n < len(presets) else ""))


def report_preset_dollar(c: Ctx):
    """A preset with ``$...$``: matplotlib's mathtext in the figure's title, unless drawn as plain text."""
    table = _table(c.tmp / "data" / "results.csv", [_row(grid="fig3_mechanisms", preset="p$\\frac{$")])
    r = _report(c, table, c.tmp / "rep")
    png = c.tmp / "rep" / "figures" / "fig3_mechanisms.png"
    return _res(r, "figures drawn" if png.is_file() else "figures MISSING")


# --- run_dir: what the report links to -----------------------------------------------------------------------
def _links(folder: Path) -> list[str]:
    html = (folder / "index.html").read_text() if (folder / "index.html").is_file() else ""
    md = (folder / "report.md").read_text() if (folder / "report.md").is_file() else ""
    return re.findall(r'href="([^"]*)"', html) + re.findall(r"\]\(([^)\s]*)\)", md)


def _run_dir_case(c: Ctx, run_dir: str) -> dict:
    """The report beside its table (``--out`` the table's folder), as ``make report`` users keep them."""
    data = c.tmp / "data"
    table = _table(data / "results.csv", [_row(run_dir=run_dir)])
    r = _report(c, table, data)
    bad = []
    for h in _links(data):
        if SCHEME.match(h):
            bad.append(f"to {h}")
        elif h.startswith("/") or not (data / h).resolve().is_relative_to(data.resolve()):
            bad.append(f"out of the tree {h}")
    return _res(r, f"LINK {bad[0]}" if bad else "no href with a scheme or out of the tree")


def report_rundir_javascript(c: Ctx):
    return _run_dir_case(c, "javascript:alert(1)")


def report_rundir_http(c: Ctx):
    return _run_dir_case(c, "http://evil")


def report_rundir_dotdot(c: Ctx):
    return _run_dir_case(c, "../../etc")


# --- cell text: markup in report.md, index.html, the LaTeX tables --------------------------------------------
def _cell_case(c: Ctx, task: str, preset: str = "tiny"):
    out = c.tmp / "rep"
    r = _report(c, _table(c.tmp / "data" / "results.csv", _transfer(task, preset)), out)
    md = (out / "report.md").read_text() if (out / "report.md").is_file() else ""
    return r, out, md


def _md_rows(md: str) -> str:
    """Whether the transfer table of ``report.md`` kept one line per row and the header's number of cells."""
    if TRANSFER_TITLE not in md:
        return "no transfer table"
    lines = md.split(TRANSFER_TITLE + "\n\n", 1)[1].split("\n\n", 1)[0].split("\n")
    cells = [len(re.split(r"(?<!\\)\|", ln.strip().strip("|"))) for ln in lines]
    if any(not ln.startswith("|") for ln in lines):
        return "markdown row BROKEN (a line outside the table)"
    if len(set(cells)) > 1:
        return f"markdown row SPLIT ({max(cells)} cells, header {cells[0]})"
    return "markdown rows intact"


def report_cell_pipe(c: Ctx):
    r, _, md = _cell_case(c, "voc|x|y")
    return _res(r, _md_rows(md))


def report_cell_newline(c: Ctx):
    r, _, md = _cell_case(c, "voc\nnext | line")
    return _res(r, _md_rows(md))


def report_cell_script(c: Ctx):
    r, out, _ = _cell_case(c, "<script>alert(1)</script>", preset="<script>alert(2)</script>")
    raw = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                 if p.suffix in (".md", ".html") and "<script" in p.read_text())
    return _res(r, f"raw <script> UNESCAPED in {', '.join(raw)}" if raw else "escaped in report.md and index.html")


def report_cell_link(c: Ctx):
    r, out, md = _cell_case(c, "[x](http://e)")
    html = (out / "index.html").read_text() if (out / "index.html").is_file() else ""
    where = (["report.md"] if re.search(r"(?<!\\)\[x(?<!\\)\]\(http://e\)", md) else []) + \
        (["index.html"] if 'href="http://e"' in html else [])
    return _res(r, f"LINK injected in {', '.join(where)}" if where else "shown as text, no link")


def report_cell_latex(c: Ctx):
    r, out, _ = _cell_case(c, "\\input{/etc/passwd}", preset="\\input{/etc/passwd}")
    tex = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.tex") if "\\input{" in p.read_text())
    return _res(r, f"TeX command UNESCAPED in {', '.join(tex)}" if tex else "escaped in every .tex")


CASES = {f.__name__: f for f in (report_preset_dotdot, report_preset_abs, report_preset_slash,
                                 report_preset_collision, report_preset_dollar, report_rundir_javascript,
                                 report_rundir_http, report_rundir_dotdot, report_cell_pipe, report_cell_newline,
                                 report_cell_script, report_cell_link, report_cell_latex)}

"""A results table is untrusted input to ``python -m reports``: its values never choose where the report writes
(a preset of ``../x``, an absolute path, ``a/b``), never become a link out of the results' tree or to a URL (a
``run_dir`` of ``javascript:...``, ``http://...``, ``../../etc``), and its text is escaped in ``report.md``,
``index.html`` and the LaTeX tables (``|``, ``<script>``, ``[x](http://e)``, a newline, TeX commands)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import markdown
import pandas as pd
import pytest

from ablations.results import COLUMNS
from reports import paths
from reports.build import build

ROOT = Path(__file__).resolve().parents[2]
HREF = re.compile(r'href="([^"]*)"')


def _row(grid="table1_momentum", run_id="r", preset="tiny", **kw):
    r = {"grid": grid, "run_id": run_id, "preset": preset, "status": "done", "mechanism": "moco", "moco_k": 4096,
         "moco_m": 0.999, "seed": 0, "knn_acc": 60.0, "dataset": "synthetic", "arch": "resnet18"}
    r.update(kw)
    return r


def _table(rows, path: Path) -> Path:
    """The rows as a results table (no run directory is made: the run_dir values here are hostile)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).reindex(columns=COLUMNS).to_csv(path, index=False)
    return path


def _files(root: Path) -> set:
    return {p for p in root.rglob("*") if p.is_file()}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "reports", "--quiet", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def _md_cells(line: str) -> int:
    """The cells of one Markdown table row (an escaped ``\\|`` is no separator)."""
    return len(re.split(r"(?<!\\)\|", line.strip().strip("|")))


def _md_table(md: str, title: str) -> list[str]:
    """The lines of the table under ``### title`` up to the blank line that ends it."""
    lines = md.split(f"### {title}\n\n", 1)[1].split("\n")
    return lines[: lines.index("")]


# ------------------------------------------------------------------------------------------- folder names
def test_presets_from_the_table_write_only_inside_out(tmp_path):
    victim = tmp_path / "victim"                        # an absolute preset, pointing where another report lives
    victim.mkdir()
    (victim / "report.md").write_text("someone else's report\n")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "report.md").write_text("another report\n")
    presets = ["tiny", "../x", str(victim), "a/b"]
    table = _table([_row(run_id=f"r{i}", preset=p) for i, p in enumerate(presets)], tmp_path / "data" / "r.csv")
    out = tmp_path / "out"
    before = _files(tmp_path)
    r = build(table, out, progress=False)
    new = _files(tmp_path) - before
    assert new and all(p.is_relative_to(out) for p in new), sorted(str(p) for p in new if not p.is_relative_to(out))
    assert (victim / "report.md").read_text() == "someone else's report\n"
    assert (tmp_path / "x" / "report.md").read_text() == "another report\n"
    assert set(r["presets"]) == set(presets)                 # each preset its own report, under its own name
    folders = {p.name for p in out.iterdir() if p.is_dir()}
    assert folders == {"tiny", "x", paths.slug(str(victim)), "a_b"}
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", f) for f in folders)
    index = (out / "index.html").read_text()
    hrefs = HREF.findall(index)
    assert sorted(hrefs) == sorted(f"{f}/index.html" for f in folders)
    assert "Preset ../x" in index                            # the reader still sees the preset's own name


@pytest.mark.parametrize("presets, says", [
    (["a/b", "a_b"], "would share the folder 'a_b'"),        # slugged into one folder: refused, never merged
    (["tiny", "Tiny"], "would share the folder 'tiny'"),     # one folder on macOS and Windows
    (["tiny", ".."], "gives no usable folder name"),
    (["tiny", "index.html"], "a name the report itself writes"),
])
def test_presets_that_would_share_a_folder_are_refused_before_writing(tmp_path, presets, says):
    table = _table([_row(run_id=f"r{i}", preset=p) for i, p in enumerate(presets)], tmp_path / "r.csv")
    before = _files(tmp_path)
    p = _cli("--results", str(table), "--out", str(tmp_path / "out"))
    assert p.returncode == 2, p.stdout
    assert p.stderr.startswith("error: ") and p.stderr.strip().count("\n") == 0, p.stderr
    assert says in p.stderr and "Traceback" not in p.stderr
    assert _files(tmp_path) == before                       # nothing half-written


def test_slug():
    assert paths.slug("../x") == "x" and paths.slug("/abs/path") == "abs_path" and paths.slug("a/b") == "a_b"
    assert paths.slug(".hidden") == "hidden" and paths.slug("..") == "" and paths.slug("imagenet-v2") == "imagenet-v2"
    assert len(paths.slug("p" * 500)) == paths.MAX_NAME


# ------------------------------------------------------------------------------------------------- links
HOSTILE_RUN_DIRS = ["javascript:alert(1)", "http://evil", "../../etc", "data:text/html,<script>alert(1)</script>",
                    " JavaScript:alert(2)"]


def test_run_dirs_that_are_urls_or_leave_the_tree_are_text_never_links(tmp_path):
    data_dir = tmp_path / "data"
    (data_dir / "runs" / "ok").mkdir(parents=True)              # a legitimate run directory beside the table
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    rows = [_row(run_id="ok", run_dir="runs/ok", seed=0)]
    rows += [_row(run_id=f"h{i}", run_dir=d, seed=i + 1) for i, d in enumerate(HOSTILE_RUN_DIRS + [str(outside)])]
    table = _table(rows, data_dir / "results.csv")
    before = _files(tmp_path)
    r = build(table, data_dir, progress=False)               # the report beside its table: hrefs are bare names
    assert all(p.is_relative_to(data_dir) for p in _files(tmp_path) - before)
    cell = r["parts"]["table1_momentum"]["table"].find("0.999")[1]
    assert cell.n == 7                                       # every row is still counted: only the link goes
    assert [Path(p) for p in cell.runs] == [(data_dir / "runs" / "ok").resolve()]
    assert sorted(cell.unlinked) == sorted([d.strip() for d in HOSTILE_RUN_DIRS] + [str(outside)])
    html = (data_dir / "index.html").read_text()
    for h in HREF.findall(html):
        assert not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", h), h              # no scheme
        assert not h.startswith("/") and (data_dir / h).resolve().is_relative_to(data_dir.resolve()), h
    assert re.search(r'href="runs/ok">', html)                       # the legitimate run is still linked
    assert "<script" not in html and "javascript:alert(1)" in html   # shown, escaped, in the cell's title
    md = (data_dir / "report.md").read_text()
    targets = re.findall(r"\]\(([^)]*)\)", md)
    assert "runs/ok" in targets
    for t in targets:
        assert not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", t) and (data_dir / t).resolve().is_relative_to(
            data_dir.resolve()), t
    rendered = markdown.markdown(md, extensions=["tables"])
    assert not re.search(r'href="(javascript|http|data):', rendered, re.I)
    assert "<script" not in rendered


def test_href_is_relative_and_percent_encoded(tmp_path):
    assert paths.href(tmp_path / "javascript:alert(1)", tmp_path) == "javascript%3Aalert%281%29"
    assert paths.href(tmp_path / "a b#c?d", tmp_path / "out") == "../a%20b%23c%3Fd"
    assert paths.has_scheme("http://evil") and paths.has_scheme("data:x") and not paths.has_scheme("runs/a:b")


# ---------------------------------------------------------------------------------------------- table text
NASTY = "voc|x <script>alert(1)</script> [x](http://e) `c` *b* _i_ ~s~ $\\input{/etc/passwd}$ & a\nnext \x1b[2J\u202e"


def test_table_text_is_escaped_in_markdown_html_and_latex(tmp_path):
    rows = [_row(grid="transfer", run_id=f"t{i}", task="voc" if i else NASTY, weights=NASTY, trial=0,
                 AP50=80.0, AP=50.0, AP75=55.0, mechanism=None, moco_k=None, moco_m=None, knn_acc=None)
            for i in range(2)]
    rows.append(_row(grid="fig3_mechanisms", run_id="f", preset="tiny"))
    for r in rows:
        r["preset"] = "p|$\\frac{$ <b>x</b>"                   # one preset: in the titles, the figure's title
    table = _table(rows, tmp_path / "r.csv")
    out = tmp_path / "out"
    r = build(table, out, progress=False)
    assert r["preset"] == "p|$\\frac{$ <b>x</b>"
    t = r["parts"]["transfer"]["table"]
    md = (out / "report.md").read_text()
    lines = _md_table(md, t.title)
    assert len(lines) == 2 + len(t.rows)                      # one line per row: the newline did not split one
    assert {_md_cells(ln) for ln in lines} == {len(t.columns)}, lines   # no `|` split a cell
    for bad in ("<script", "<b>", "\x1b", "\u202e"):
        assert bad not in md, bad
    for ch in "`*_[]~$":                                     # every markup character of the cell escaped
        assert not re.search(r"(?<!\\)" + re.escape(ch), "".join(lines[2:])), ch
    rendered = markdown.markdown(md, extensions=["tables"])
    cells = rendered.split(f"<h3>{t.title}</h3>", 1)[1].split("</table>", 1)[0]
    for tag in ("<script", "<b>", "<a ", "<code>", "<em>", "<strong>"):
        assert tag not in cells, tag
    assert "&lt;script&gt;" in cells and "[x](http://e)" in cells and "*b* _i_" in cells   # there, as text
    html = (out / "index.html").read_text()
    assert "<script" not in html and "<b>" not in html and "\x1b" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "Preset p|$\\frac{$ &lt;b&gt;x&lt;/b&gt;" in html
    tex = (out / "tables" / "transfer.tex").read_text()
    assert "\\input{" not in tex and "\\textbackslash" in tex
    assert "\\$" in tex and "\\_i\\_" in tex
    vtex = (out / "verdicts.tex").read_text()
    assert "\\frac{" not in vtex and "p|\\$\\textbackslash{}frac\\{\\$" in vtex    # the caption names the preset
    assert (out / "figures" / "fig3_mechanisms.png").stat().st_size > 0          # `$...$` drawn as text
    assert "ours (p|$\\frac{$ &lt;b&gt;x&lt;/b&gt; preset)" in (out / "figures" / "fig3_mechanisms.svg").read_text()

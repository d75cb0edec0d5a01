"""Rendering the report: Markdown (``report.md``) and one self-contained HTML
page (``index.html``, figures embedded as base64 PNG, no external resource).

Table text is input, not markup: every value from the results table is escaped for the format it lands in
(:func:`md_escape` for Markdown, ``html.escape`` for HTML, :func:`latex_escape` / the Styler's
``escape="latex"`` for LaTeX), so a cell cannot end a table row, open a link or inject HTML or a TeX command.
Links are made only by :func:`reports.paths.href` (relative, percent-encoded), to run directories inside the
results' tree."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from pretrain.base.fileio import atomic_write_text

from .cells import Cell, Table
from .paths import href

STATUS_COLOR = {"reproduced": "#1a7f37", "contradicted": "#cf222e", "inconclusive": "#bf8700",
                "not run": "#6e7781", "not judgeable": "#8250df"}
VERDICT_COLUMNS = ["claim", "source", "verdict", "effect ± 95 % CI", "seeds", "test", "numbers behind it"]


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def latex_escape(s: str) -> str:
    """``s`` as LaTeX text: every character TeX reads as a command or markup escaped (as ``escape="latex"``)."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], str(s))


def latex(frame, caption: str = "", note: str = "") -> str:
    """A table as LaTeX (pandas ``Styler.to_latex``, booktabs rules, special characters escaped in the cells,
    the header and the caption)."""
    import pandas as pd
    df = pd.DataFrame(frame).astype(str)
    st = df.style.hide(axis="index").format(escape="latex").format_index(escape="latex", axis=1)
    cap = caption + (f". {note}" if note else "")
    tex = st.to_latex(hrules=True, caption=latex_escape(cap) or None, position_float="centering")
    for u, t in LATEX_SYMBOLS.items():
        tex = tex.replace(u, t)
    return tex


# what pdflatex cannot typeset from UTF-8 without extra packages
LATEX_SYMBOLS = {"±": r"$\pm$", "τ": r"$\tau$", "α": r"$\alpha$", "≈": r"$\approx$", "≥": r"$\geq$",
                 "≤": r"$\leq$", "→": r"$\rightarrow$", "✓": r"$\checkmark$", "—": "---", "−": "-", "₂": "$_2$",
                 "…": r"\ldots{}", "×": r"$\times$", "–": "--"}


def _verdict_note(v) -> str:
    return "; ".join(v.notes)


def _verdict_reason(v) -> str:
    """Why a claim is not judgeable (version 2), else empty."""
    return getattr(v, "reason", "") or ""


def write_atomic(path: Path, text: str) -> None:
    atomic_write_text(path, text)


# -------------------------------------------------------------------- Markdown
_MD_ENTITY = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MD_RE = re.compile(r"[\\`*_\[\]|~$&<>]|\r\n|[\r\n]")


def md_escape(s) -> str:
    """``s`` as Markdown text: ``\\ ` * _ [ ] | ~ $`` backslash-escaped, ``& < >`` as entities (no flavour reads
    an entity as HTML), a line break as a space; so it can sit in a table cell without splitting it, open no
    link, emphasis, code span or HTML tag."""
    def sub(m):
        c = m.group(0)
        if c in _MD_ENTITY:
            return _MD_ENTITY[c]
        return " " if c in ("\r\n", "\r", "\n") else "\\" + c
    return _MD_RE.sub(sub, str(s))


def md_cell(c: Cell, out_dir: Path) -> str:
    s = md_escape(c.label())
    if c.runs:
        links = [href(r, out_dir) for r in c.runs]
        s = f"[{s}]({links[0]})"
        if len(links) > 1:
            s += " " + " ".join(f"[{i + 1}]({l})" for i, l in enumerate(links[1:], start=1))
    note = c.note()
    if note:
        s += f" ({md_escape(note)})"
    return s


def md_table(t: Table, out_dir: Path) -> str:
    lines = [f"### {t.title}", ""]
    lines.append("| " + " | ".join(md_escape(c) for c in t.columns) + " |")
    lines.append("|" + "---|" * len(t.columns))
    for r in t.rows:
        lines.append("| " + " | ".join(md_cell(c, out_dir) for c in r) + " |")
    if t.caption:
        lines += ["", f"*{t.caption}*"]
    return "\n".join(lines) + "\n"


def markdown(ctx: dict, out_dir: Path) -> str:
    L = ["# mocobench: MoCo / MoCo v2 ablations, ours vs the paper" + md_escape(ctx.get("title_suffix", "")), ""]
    L += [ctx.get("summary_md", md_escape(ctx["summary_line"])), ""]
    if ctx.get("claims_line"):
        L += [md_escape(ctx["claims_line"]), ""]
    L += md_verdicts(ctx["verdicts"], ctx.get("rules", ""))
    f = ctx.get("forest")
    if f:
        L += [f"![{f['alt']}]({href(f['files']['png'], out_dir)})", "",
              f"*{f['alt']}* — [SVG]({href(f['files']['svg'], out_dir)}), [PDF]({href(f['files']['pdf'], out_dir)})",
              ""]
    for sec in ctx["sections"]:
        L += [f"## {sec['title']}", ""]
        for f in sec.get("figures", []):
            files = f["files"]
            L.append(f"![{f['alt']}]({href(files['png'], out_dir)})")
            L.append("")
            L.append(f"*{f['alt']}* — [SVG]({href(files['svg'], out_dir)}), "
                     f"[PDF]({href(files['pdf'], out_dir)})")
            L.append("")
        for t in sec.get("tables", []):
            L.append(md_table(t, out_dir))
    L += ["## Sources", ""] + [f"- {s}" for s in ctx["sources"]] + [""]
    return "\n".join(L)


EXPLORATORY_COLUMN = "exploratory set (same rules)"


def _exploratory(vds) -> bool:
    """Whether the verdicts carry an exploratory set's outcome beside them (a column is added)."""
    return any(getattr(v, "exploratory", None) is not None for v in vds)


def exploratory_text(v) -> str:
    """The exploratory set's outcome of the same claim and its effect ("not run" where that set lacks it)."""
    e = getattr(v, "exploratory", None)
    return f"{e.status}: {e.effect}" if e is not None else "not run"


def md_verdicts(vds, rules: str = "", heading: str = "## Verdicts") -> list[str]:
    """The verdict table in Markdown under ``rules`` (the claims version's rules, :func:`claims.rules_text`);
    a not-judgeable claim's reason beside its verdict; an exploratory set's outcome in a last column."""
    cols = VERDICT_COLUMNS + ([EXPLORATORY_COLUMN] if _exploratory(vds) else [])
    L = [heading, ""] + ([md_escape(rules), ""] if rules else []) + [
        "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for v in vds:
        note = "; ".join(x for x in (_verdict_reason(v), _verdict_note(v)) if x)
        L.append(f"| {md_escape(v.claim)} | {md_escape(v.source)} | **{md_escape(v.status)}**"
                 + (f" ({md_escape(note)})" if note else "")
                 + f" | {md_escape(v.effect)} | {v.seeds} | {md_escape(v.test)} | {md_escape(v.detail)} |"
                 + (f" {md_escape(exploratory_text(v))} |" if len(cols) > len(VERDICT_COLUMNS) else ""))
    L.append("")
    return L


def index_markdown(ctx: dict) -> str:
    L = ["# mocobench: MoCo / MoCo v2 ablations, ours vs the paper (one report per preset)", "",
         ctx.get("summary_md", md_escape(ctx["summary_line"])), ""]
    if ctx.get("claims_line"):
        L += [md_escape(ctx["claims_line"]), "", md_escape(ctx.get("rules", "")), ""]
    for u in ctx["units"]:
        L += [f"## Preset {md_escape(u['name'])}", "", f"Full report: [{md_escape(u['md'])}]({u['md']})", "",
              u.get("summary_md", md_escape(u["summary"])), ""]
        L += md_verdicts(u["verdicts"], heading="### Verdicts")
    return "\n".join(L)


def index_page(ctx: dict) -> str:
    H = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         "<title>mocobench report: one report per preset</title>", f"<style>{CSS}</style></head><body>",
         "<h1>mocobench: MoCo / MoCo v2 ablations, ours vs the paper</h1>",
         f'<p class="summary">{html.escape(ctx["summary_line"])}</p>']
    if ctx.get("claims_line"):
        H.append(f'<p class="claims">{html.escape(ctx["claims_line"])}</p>'
                 f'<p class="caption">{html.escape(ctx.get("rules", ""))}</p>')
    for u in ctx["units"]:
        H.append(f'<h2 id="{html.escape(u["name"], quote=True)}">Preset {html.escape(u["name"])}</h2>')
        H.append(f'<p><a href="{html.escape(u["href"], quote=True)}">full report</a> — '
                 f'{html.escape(u["summary"])}</p>')
        H.append(html_verdicts(u["verdicts"]))
    H.append("</body></html>")
    return "\n".join(H) + "\n"


def _html_effect(v) -> str:
    """One line per part: the effect with its 95 % CI, coloured by the part's outcome."""
    if not v.parts:
        return "—"
    lines = []
    for p in v.parts:
        label = f"{html.escape(p.label)}: " if len(v.parts) > 1 else ""
        lines.append(f'<span style="color:{STATUS_COLOR[p.outcome]}">{label}{html.escape(p.effect_text())}</span>')
    return "<br>".join(lines)


def html_verdicts(vds) -> str:
    side = _exploratory(vds)
    cols = VERDICT_COLUMNS + ([EXPLORATORY_COLUMN] if side else [])
    H = ['<table data-table="verdicts"><tr>' + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"]
    for v in vds:
        note = _verdict_note(v)
        reason = _verdict_reason(v)
        H.append(f'<tr data-claim="{html.escape(v.key, quote=True)}"><td>{html.escape(v.claim)}</td>'
                 f'<td>{html.escape(v.source)}</td>'
                 f'<td><span class="badge" style="background:{STATUS_COLOR[v.status]}">{html.escape(v.status)}</span>'
                 + (f'<br><small class="reason">{html.escape(reason)}</small>' if reason else "")
                 + (f"<br><small>{html.escape(note)}</small>" if note else "")
                 + f"</td><td class=eff>{_html_effect(v)}</td><td class=num>{v.seeds}</td>"
                 f"<td><small>{html.escape(v.test)}</small></td>"
                 f"<td><details><summary><small>{len(v.parts)} comparison(s)</small></summary><small>"
                 + "<br>".join(html.escape(x) for x in v.detail.split("; ")) + "</small></details></td>"
                 + (f'<td data-exploratory="{html.escape(v.exploratory.status if v.exploratory else "not run", quote=True)}">'
                    f"<small>{html.escape(exploratory_text(v))}</small></td>" if side else "") + "</tr>")
    H.append("</table>")
    return "\n".join(H)


# ------------------------------------------------------------------------ HTML
CSS = """
body{font-family:-apple-system,'DejaVu Sans',Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#1f2328;background:#fff;line-height:1.45}
h1{font-size:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}
h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
h3{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td.num{text-align:right;white-space:nowrap}
td.eff{white-space:nowrap;font-size:.85em}
td.fail{color:#cf222e;font-weight:600;text-align:right}
td.notrun{color:#6e7781;font-style:italic;text-align:right}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-weight:600;
white-space:nowrap}
figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #eaeef2}
figcaption{font-size:.9em;color:#57606a}
.caption{font-size:.88em;color:#57606a;max-width:1000px}
sup a{font-size:.8em;margin-left:2px}
.summary{background:#f6f8fa;border:1px solid #d0d7de;padding:.6em 1em;border-radius:6px}
.claims{font-weight:600}
small.reason{color:#8250df}
"""


def html_cell(c: Cell, out_dir: Path) -> str:
    label = html.escape(c.label())
    title = []
    if c.runs:
        title.append("runs: " + ", ".join(str(r) for r in c.runs))
    if c.unlinked:
        title.append("not linked (a URL, or outside the results' tree): " + ", ".join(c.unlinked))
    if c.reason:
        title.append("reason: " + c.reason)
    cls = {"value": "num", "fail": "fail", "not_run": "notrun"}.get(c.kind, "")
    inner = label
    if c.runs:
        links = [html.escape(href(r, out_dir), quote=True) for r in c.runs]
        inner = f'<a class="run" href="{links[0]}">{label}</a>'
        if len(links) > 1:
            inner += "<sup>" + " ".join(f'<a class="run" href="{l}">{i + 1}</a>'
                                        for i, l in enumerate(links[1:], start=1)) + "</sup>"
    note = c.note()
    if note:
        inner += f' <small>({html.escape(note)})</small>'
    t = f' title="{html.escape("; ".join(title), quote=True)}"' if title else ""
    return f'<td class="{cls}"{t}>{inner}</td>'


def html_table(t: Table, out_dir: Path) -> str:
    key = html.escape(t.key, quote=True)
    h = [f'<h3 id="{key}">{html.escape(t.title)}</h3>', f'<table data-table="{key}">', "<tr>"]
    h += [f"<th>{html.escape(c)}</th>" for c in t.columns] + ["</tr>"]
    for r in t.rows:
        h.append("<tr>" + "".join(html_cell(c, out_dir) for c in r) + "</tr>")
    h.append("</table>")
    if t.caption:
        h.append(f'<p class="caption">{html.escape(t.caption)}</p>')
    return "\n".join(h)


def _img_b64(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def page(ctx: dict, out_dir: Path) -> str:
    H = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         '<meta name="viewport" content="width=device-width, initial-scale=1">',
         "<title>mocobench report: MoCo / MoCo v2 ablations vs the paper</title>",
         f"<style>{CSS}</style></head><body>",
         "<h1>mocobench: MoCo / MoCo v2 ablations, ours vs the paper" + html.escape(ctx.get("title_suffix", ""))
         + "</h1>",
         f'<p class="summary">{html.escape(ctx["summary_line"])}</p>',
         f'<p class="claims">{html.escape(ctx.get("claims_line", ""))}</p>',
         '<h2 id="verdicts">Verdicts</h2>',
         f'<p class="caption">{html.escape(ctx.get("rules", ""))}</p>',
         html_verdicts(ctx["verdicts"])]
    f = ctx.get("forest")
    if f:
        files = f["files"]
        H.append(f'<figure><img src="{_img_b64(files["png"])}" alt="{html.escape(f["alt"], quote=True)}" '
                 f'data-figure="{f["key"]}"><figcaption>{html.escape(f["alt"])} — '
                 f'<a href="{html.escape(href(files["svg"], out_dir), quote=True)}">SVG</a>, '
                 f'<a href="{html.escape(href(files["pdf"], out_dir), quote=True)}">PDF</a></figcaption></figure>')
    for sec in ctx["sections"]:
        H.append(f'<h2 id="{sec["key"]}">{html.escape(sec["title"])}</h2>')
        for f in sec.get("figures", []):
            files = f["files"]
            H.append(f'<figure><img src="{_img_b64(files["png"])}" alt="{html.escape(f["alt"], quote=True)}" '
                     f'data-figure="{f["key"]}"><figcaption>{html.escape(f["alt"])} — '
                     f'<a href="{html.escape(href(files["svg"], out_dir), quote=True)}">SVG</a>, '
                     f'<a href="{html.escape(href(files["pdf"], out_dir), quote=True)}">PDF</a></figcaption></figure>')
        for t in sec.get("tables", []):
            H.append(html_table(t, out_dir))
    H.append('<h2 id="sources">Sources</h2><ul>')
    H += [f"<li>{html.escape(s)}</li>" for s in ctx["sources"]]
    H.append("</ul></body></html>")
    return "\n".join(H) + "\n"

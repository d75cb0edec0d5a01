"""The report built from fixture results tables (reports/fixtures/make_fixtures.py, 8 paired seeds): table
values, verdicts (a table where the claims hold, one where they are reversed, a partial one, none at all),
figure files, LaTeX tables, links to run directories, CLI errors."""
from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import stats

from reports.build import build

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ("fig3_mechanisms", "table1_momentum", "figA1_shuffle_bn", "cost", "forest")
CLAIMS = {"m0_fails", "momentum_helps", "momentum_saturates", "moco_ge_bank", "rises_with_k", "e2e_memory_grows",
          "moco_cheaper", "shuffle_bn", "mlp_aug"}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    from reports.fixtures.make_fixtures import write_all
    return write_all(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture(scope="module")
def good(tmp_path_factory, fixtures):
    out = tmp_path_factory.mktemp("report_good")
    return build(fixtures["good"], out, progress=False), out


@pytest.fixture(scope="module")
def bad(tmp_path_factory, fixtures):
    out = tmp_path_factory.mktemp("report_bad")
    return build(fixtures["bad"], out, progress=False), out


def _verdicts(r):
    return {v.key: v for v in r["verdicts"]}


def _table(r, key):
    return r["parts"][key]["table"]


def _mean_sd(df, digits=1):
    x = df.to_numpy(dtype=float)
    return f"{x.mean():.{digits}f} ± {x.std(ddof=1):.{digits}f}"


# ----------------------------------------------------------------- table values
def test_momentum_table_values(good, fixtures):
    r, _ = good
    raw = pd.read_csv(fixtures["good"])
    t = _table(r, "table1_momentum")
    f = t.frame().set_index("m")
    assert r["parts"]["table1_momentum"]["metric"] == "lincls_acc1"  # every run has lincls
    assert "linear top-1" in t.columns[1]
    # m=0: every seed not_converged, rendered "fail" exactly as the paper prints it
    assert f.loc["0", t.columns[1]] == "fail"
    assert f.loc["0", t.columns[-1]] == "fail"
    want = raw[(raw["grid"] == "table1_momentum") & (raw["moco_m"] == 0.999)]["lincls_acc1"]
    assert f.loc["0.999", t.columns[1]] == _mean_sd(want)       # mean ± sd over the 8 seeds
    assert f.loc["0.999", "runs"] == "8"
    assert [f.loc[m, t.columns[-1]] for m in ("0.9", "0.99", "0.999", "0.9999")] == \
        ["55.2", "57.8", "59.0", "58.9"]
    cell = t.find("0.999")[1]
    assert cell.n == 8 and cell.mean == pytest.approx(want.mean()) and cell.std == pytest.approx(want.std(ddof=1))
    assert sorted(cell.values) == pytest.approx(sorted(want))    # the per-seed points the figure plots
    assert "random init" in t.find("0")[1].reason


def test_fig3_table_values(good, fixtures):
    r, _ = good
    raw = pd.read_csv(fixtures["good"])
    t = _table(r, "fig3_mechanisms")
    f = t.frame().set_index("K")
    assert r["parts"]["fig3_mechanisms"]["metric"] == "lincls_acc1"
    moco256 = raw[(raw["mechanism"] == "moco") & (raw["moco_k"] == 256) & (raw["grid"] == "fig3_mechanisms")]
    assert f.loc["256", "MoCo (ours)"] == _mean_sd(moco256["lincls_acc1"])
    # the OOM crash is an error: no result, so K=1024 end-to-end shows the 8 finished seeds only
    cell = [row for row in t.rows if row[0].label() == "1024"][0][3]
    assert cell.kind == "value" and cell.n == 8 and cell.n_failed == 0
    assert f.loc["4096", "end-to-end (ours)"] == "— (K > 1024)"             # beyond the paper
    assert "K=4096 are beyond the paper's limit" in t.caption
    assert f.loc["4096", "MoCo (paper)"] == "59.0"
    assert f.loc["65536", "MoCo (paper)"] == "60.6"
    assert f.loc["65536", "memory bank (paper)"] == "58.0"
    assert f.loc["65536", "MoCo (ours)"] == "not run"
    assert ("end_to_end", 4096.0) not in r["parts"]["fig3_mechanisms"]["cells"]


def test_shuffle_v2_transfer_cost_baseline_values(good, fixtures):
    r, _ = good
    raw = pd.read_csv(fixtures["good"])
    a1 = _table(r, "figA1_shuffle_bn").frame()
    row = a1[(a1["mechanism"] == "MoCo") & (a1["shuffle BN"] == "off")].iloc[0]
    src = raw[(raw["grid"] == "figA1_shuffle_bn") & (raw["mechanism"] == "moco") & (raw["shuffle_bn"] == "off")]
    assert row["final kNN top-1 (%)"] == _mean_sd(src["knn_acc"])

    v2 = _table(r, "v2_table1").frame()
    acc = [c for c in v2.columns if c.startswith("ours: linear")][0]
    by = {(a, b): y for a, b, y in zip(v2["ours"], v2["τ"], v2["paper: ImageNet linear top-1 (%)"])}
    assert by[("MoCo v1", "0.07")] == "60.6" and by[("MLP", "0.2")] == "66.2"
    assert by[("MLP + aug+ + cos (long)", "0.2")] == "71.1"
    assert v2[acc].str.contains("±").sum() == 6
    sup = v2[v2["paper row"] == "supervised"].iloc[0]
    assert sup["paper: VOC07 AP50/AP/AP75"] == "81.3/53.5/58.8"

    tr = _table(r, "transfer").frame()
    ours = tr[(tr["source"] == "ours") & (tr["weights"] == "moco_v1")].iloc[0]
    assert (ours["AP50"], ours["AP"], ours["AP75"], ours["trials"]) == \
        ("45.3 ± 0.3", "20.2 ± 0.3", "18.5 ± 0.4", "2")

    cost = _table(r, "cost").frame()
    e2e = cost[(cost["mechanism"] == "end-to-end") & (cost["K"] == "512")].iloc[0]
    assert e2e["peak memory (MB)"] == "3608 ± 0" and e2e["batch"] == "512"

    base = _table(r, "baselines").frame().set_index("features")
    ri = raw[(raw["grid"] == "baselines") & (raw["baseline"] == "random_init")]
    assert base.loc["the same network at random init", "kNN top-1 (%)"] == _mean_sd(ri["knn_acc"])
    assert base.loc["raw pixels", "linear top-1 (%)"] == "58.0"
    assert base.loc["the same network at random init", "seeds"] == "8"


def test_every_number_links_to_an_existing_run_dir(good):
    r, out = good
    n = 0
    for key in ("table1_momentum", "fig3_mechanisms", "figA1_shuffle_bn", "v2_table1",
                "transfer", "cost"):
        for row in _table(r, key).rows:
            for c in row:
                if c.kind in ("value", "fail") and not c.runs:
                    # only the paper's own numbers carry no run
                    assert key in ("table1_momentum", "fig3_mechanisms", "v2_table1", "transfer")
                    continue
                for p in c.runs:
                    assert Path(p).is_dir(), p
                    n += 1
    assert n > 400
    md = (out / "report.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", md)
    run_links = [l for l in links if "/runs/" in l]
    assert len(run_links) > 400
    for l in set(run_links):
        assert (out / l).resolve().is_dir(), l
    html = (out / "index.html").read_text()
    hrefs = re.findall(r'<a class="run" href="([^"]+)"', html)
    assert len(hrefs) == n
    assert all((out / h).resolve().is_dir() for h in set(hrefs))
    assert "fig3_end_to_end_K1024_oom" not in html          # an error run is linked nowhere
    assert re.search(r'href="[^"]*t1_tiny_m0\.999_s0">64\.\d ± 0\.\d</a>', html)


def test_tables_written_as_latex(good):
    _, out = good
    for key in ("table1_momentum", "fig3_mechanisms", "baselines", "cost", "v2_table1"):
        tex = (out / "tables" / f"{key}.tex").read_text()
        assert tex.count("\\begin{tabular}") == 1 and "\\toprule" in tex and "\\bottomrule" in tex
        assert "±" not in tex and "—" not in tex and "τ" not in tex      # pdflatex-safe
        body = tex.split("\\midrule")[1]
        assert "%" not in body.replace("\\%", "")                      # every % escaped
    tex = (out / "tables" / "table1_momentum.tex").read_text()
    assert "$\\pm$" in tex and "linear top-1 (\\%)" in tex
    v = (out / "verdicts.tex").read_text()
    assert "reproduced" in v and "\\begin{tabular}" in v


# --------------------------------------------------------------------- verdicts
def test_verdicts_all_reproduced_on_good_fixture(good, fixtures):
    r, out = good
    v = _verdicts(r)
    assert set(v) == CLAIMS
    assert {k: x.status for k, x in v.items()} == {k: "reproduced" for k in v}
    raw = pd.read_csv(fixtures["good"])
    t1 = raw[raw["grid"] == "table1_momentum"].set_index(["moco_m", "seed"])["lincls_acc1"]
    d = np.array([t1[(0.999, s)] - t1[(0.9, s)] for s in range(8)])
    part = [p for p in v["momentum_helps"].parts if p.label == "m=0.999 vs m=0.9"][0]
    assert part.est.effect == pytest.approx(d.mean()) and part.est.n == 8
    assert part.est.p == pytest.approx(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)  # claims v2: t-test
    assert part.est.low < d.mean() < part.est.high and part.est.low > 0
    assert len(v["moco_ge_bank"].parts) == 5 and v["moco_ge_bank"].seeds == 8
    assert [p.label for p in v["rises_with_k"].parts] == \
        ["mechanism=end_to_end", "mechanism=memory_bank", "mechanism=moco"]
    assert v["m0_fails"].parts[0].est.effect == pytest.approx(100.0)
    vdf = pd.read_csv(out / "verdicts.csv")
    assert set(vdf["verdict"]) == {"reproduced"} and vdf["effect_95ci"].str.contains(r"\[").all()
    assert set(vdf["preset"]) == {"tiny"}


def test_verdicts_contradicted_on_reversed_fixture(bad):
    r, out = bad
    v = {k: x.status for k, x in _verdicts(r).items()}
    assert v == {"m0_fails": "inconclusive", "momentum_helps": "contradicted", "momentum_saturates": "contradicted",
                 "moco_ge_bank": "contradicted", "rises_with_k": "contradicted", "e2e_memory_grows": "not run",
                 "moco_cheaper": "not run", "shuffle_bn": "contradicted", "mlp_aug": "contradicted"}
    vdf = pd.read_csv(out / "verdicts.csv")
    assert (vdf["verdict"] == "contradicted").sum() == 6
    assert "contradicted" in (out / "index.html").read_text()


def test_partial_table_gives_not_run(tmp_path, fixtures):
    df = pd.read_csv(fixtures["good"])
    df = df[df["grid"] == "fig3_mechanisms"].copy()
    df["run_dir"] = [str(Path(fixtures["good"]).parent / p) if isinstance(p, str) else p for p in df["run_dir"]]
    p = tmp_path / "results.csv"
    df.to_csv(p, index=False)
    r = build(p, tmp_path / "out", progress=False)
    v = {k: x.status for k, x in _verdicts(r).items()}
    assert v == {"m0_fails": "not run", "momentum_helps": "not run", "momentum_saturates": "not run",
                 "moco_ge_bank": "reproduced", "rises_with_k": "reproduced", "e2e_memory_grows": "reproduced",
                 "moco_cheaper": "reproduced", "shuffle_bn": "not run", "mlp_aug": "not run"}
    f = _table(r, "table1_momentum").frame().set_index("m")
    assert f.loc["0.999"].iloc[0] == "not run" and f.loc["0.999"].iloc[-1] == "59.0"
    tr = _table(r, "transfer").frame()
    assert tr[tr["source"] == "ours"]["AP50"].tolist() == ["not run"]
    for name in FIGURES:
        assert (tmp_path / "out" / "figures" / f"{name}.png").is_file()


# ---------------------------------------------------------------------- figures
def _nontrivial_png(path: Path):
    im = Image.open(path)
    im.verify()
    im = Image.open(path).convert("RGB")
    assert im.size[0] >= 600 and im.size[1] >= 300
    a = np.asarray(im, dtype=float)
    assert a.std() > 10, f"{path} looks blank (pixel std {a.std():.1f})"
    assert (a.min(axis=2) < 200).mean() > 0.01, f"{path}: almost no ink"
    return a


@pytest.mark.parametrize("name", FIGURES)
def test_figure_files_valid_and_nontrivial(good, name):
    r, out = good
    d = out / "figures"
    _nontrivial_png(d / f"{name}.png")
    svg = ET.parse(d / f"{name}.svg").getroot()
    assert svg.tag.endswith("svg")
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}path")) > 10
    pdf = (d / f"{name}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-64:] and len(pdf) > 5000


def _color_pixels(a, rgb, tol=30):
    return int((np.abs(a - np.array(rgb, dtype=float)).max(axis=2) < tol).sum())


def test_figures_show_the_data(good, tmp_path):
    """The lines are drawn: MoCo blue / memory-bank red / end-to-end green pixels in
    the 'ours' half of Fig. 3, many more than in a report with no results."""
    r, out = good
    a = _nontrivial_png(out / "figures" / "fig3_mechanisms.png")
    left = a[:, : a.shape[1] // 2]
    blue, red, green = (0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28), (0x2C, 0xA0, 0x2C)
    counts = [_color_pixels(left, c) for c in (blue, red, green)]
    assert min(counts) > 500, counts
    empty = build(tmp_path / "missing.csv", tmp_path / "empty", progress=False)
    e = np.asarray(Image.open(empty["figures"]["fig3_mechanisms"]["png"]).convert("RGB"), dtype=float)
    assert _color_pixels(e[:, : e.shape[1] // 2], blue) < counts[0] / 5
    # Fig. A.1: both panels have curves (pretext and kNN)
    a1 = _nontrivial_png(out / "figures" / "figA1_shuffle_bn.png")
    for half in (a1[:, : a1.shape[1] // 2], a1[:, a1.shape[1] // 2:]):
        assert _color_pixels(half, blue) > 300 and _color_pixels(half, green) > 300


def test_html_is_self_contained(good):
    r, out = good
    html = (out / "index.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == len(FIGURES)
    for s in srcs:
        assert s.startswith("data:image/png;base64,")
        im = Image.open(io.BytesIO(base64.b64decode(s.split(",", 1)[1])))
        im.verify()
    assert not re.search(r'<(script|link)[^>]+(src|href)="https?:', html)
    assert html.count('data-claim="') == len(CLAIMS)


# -------------------------------------------------------------------------- CLI
def _cli(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "reports", "--quiet", *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=300)


def test_cli_without_results_table_exits_0(tmp_path):
    p = _cli("--out", str(tmp_path / "out"), env={"MOCOBENCH_RESULTS": str(tmp_path / "none.csv")})
    assert p.returncode == 0, p.stderr
    assert "No results table" in p.stdout
    assert p.stdout.count("[     not run]") == len(CLAIMS)
    assert (tmp_path / "out" / "index.html").is_file()
    for name in FIGURES:
        _nontrivial_png(tmp_path / "out" / "figures" / f"{name}.png")


def test_cli_bad_inputs_one_line_error(tmp_path):
    p = _cli("--results", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o"))
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "does not exist" in p.stderr
    corrupt = tmp_path / "corrupt.csv"
    corrupt.write_bytes(b"grid,run_id\n\"fig3_mechanisms,abc\n\xff\xfe\x00\x01")
    p = _cli("--results", str(corrupt), "--out", str(tmp_path / "o"))
    assert p.returncode == 2, p.stdout
    assert "Traceback" not in p.stderr and p.stderr.startswith("error: ")
    assert "is not a mocobench results table (" in p.stderr and p.stderr.strip().count("\n") == 0
    assert p.stderr.strip().count("\n") == 0
    assert not (tmp_path / "o" / "index.html").exists()


def test_messy_real_style_table(tmp_path):
    """A table as the launcher writes it mid-way: pending/running rows, empty
    swept keys, shuffle_bn=auto, end-to-end without K, a missing run dir,
    a grid we do not know, a truncated metrics.jsonl line."""
    run = tmp_path / "runs" / "a1_auto"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "pretext_acc1": 50.0, "knn_acc": 40.0}\n'
                                       '{"epoch": 2, "pretext_acc1": 60.0, "knn_acc": 45.0}\n{"epoch": 3, "pre')
    rows = [
        {"grid": "fig3_mechanisms", "run_id": "a", "status": "pending", "mechanism": "moco", "moco_k": 256},
        {"grid": "fig3_mechanisms", "run_id": "b", "status": "running", "mechanism": "moco", "moco_k": 512},
        {"grid": "fig3_mechanisms", "run_id": "c", "status": "done", "mechanism": "end_to_end",
         "batch_size": 256, "knn_acc": 30.0, "run_dir": str(tmp_path / "runs" / "gone")},
        {"grid": "figA1_shuffle_bn", "run_id": "d", "status": "done", "mechanism": "moco",
         "shuffle_bn": "auto", "pretext_acc1": 60.0, "knn_acc": 45.0, "run_dir": str(run)},
        {"grid": "figA1_shuffle_bn", "run_id": "e", "status": "done", "mechanism": "moco",
         "shuffle_bn": "off", "pretext_acc1": 90.0, "knn_acc": 35.0, "run_dir": "runs/missing"},
        {"grid": "v2_table1", "run_id": "f", "status": "done", "knn_acc": 20.0},
        {"grid": "something_else", "run_id": "g", "status": "done", "knn_acc": 1.0},
    ]
    p = tmp_path / "results.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    r = build(p, tmp_path / "out", progress=False)
    v = _verdicts(r)
    # auto counts as shuffle BN on; one seed: judged, but only indicative
    assert v["shuffle_bn"].status == "inconclusive" and "single seed: indicative only" in v["shuffle_bn"].notes
    assert v["shuffle_bn"].parts[0].est.effect == pytest.approx(30.0)
    assert v["mlp_aug"].status == "not run" and v["moco_ge_bank"].status == "not run"
    f = _table(r, "fig3_mechanisms").frame().set_index("K")
    assert f.loc["256", "end-to-end (ours)"] == "30.0"   # K from the batch size
    assert f.loc["256", "MoCo (ours)"] == "not run" and f.loc["512", "MoCo (ours)"] == "not run"
    _nontrivial_png(tmp_path / "out" / "figures" / "figA1_shuffle_bn.png")
    assert "5 done, 1 pending, 1 running" in r["summary"]

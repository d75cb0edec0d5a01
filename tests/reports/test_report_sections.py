"""The report's sections registry (reports/sections/): every grid YAML in ablations/grids has a section, every grid
a section names has a YAML, a mismatch is one clear error (from the check, from build and from the CLI), and the
page shows the sections, tables and figures in their order."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from ablations import grid
from reports.__main__ import main as report_main
from reports.build import build
from reports.errors import ReportError
from reports.sections import SECTIONS, Figure, Section, check, page_order, result_grids

ROOT = Path(__file__).resolve().parents[2]
GRIDS = ["fig3_mechanisms", "figA1_shuffle_bn", "table1_momentum", "v2_table1"]
# the page as it is: section anchors, tables and figures in order (a new section may come anywhere between them)
ANCHORS = ["baselines", "fig3", "table1", "figA1", "v2", "transfer", "cost", "reference"]
TABLES = ["baselines", "fig3_mechanisms", "table1_momentum", "figA1_shuffle_bn", "v2_table1", "transfer", "cost",
          "official_trials", "cifar_demo"]
FIGURES = ["fig3_mechanisms", "table1_momentum", "figA1_shuffle_bn", "cost"]
SUMMARY_GRIDS = ["fig3_mechanisms", "table1_momentum", "figA1_shuffle_bn", "v2_table1", "transfer", "baselines"]


def _in_order(seen: list, expected: list) -> list:
    """``seen`` restricted to ``expected``'s names (to compare their order)."""
    return [s for s in seen if s in expected]


@pytest.fixture
def grid_dir(tmp_path, monkeypatch):
    """A copy of ablations/grids that the test may add to (``ablations.grid.GRID_DIR`` pointed at it)."""
    d = tmp_path / "grids"
    shutil.copytree(grid.GRID_DIR, d)
    monkeypatch.setattr(grid, "GRID_DIR", d)
    return d


def test_every_grid_yaml_has_a_section():
    names = grid.grid_names()
    assert set(GRIDS) <= set(names)
    readers = {g: [s.name for s in SECTIONS if g in s.grids] for g in names}
    assert all(readers.values()), readers
    assert {g: readers[g] for g in GRIDS} == {"fig3_mechanisms": ["fig3_mechanisms", "cost"],
                                              "figA1_shuffle_bn": ["figA1_shuffle_bn"],
                                              "table1_momentum": ["table1_momentum"], "v2_table1": ["v2_table1"]}
    assert {g for s in SECTIONS for g in s.grids} == set(names)     # and no section names a grid without YAML
    assert [s.name for s in SECTIONS if s.sources] == ["transfer", "baselines"]
    assert [g for s in SECTIONS for g in s.sources] == ["transfer", "baselines"]
    assert len({s.name for s in SECTIONS}) == len(SECTIONS) >= 8
    check()                                                     # the committed grids and sections agree


def test_registry_order_is_the_page_order():
    assert _in_order([s.anchor for s in page_order()], ANCHORS) == ANCHORS
    assert [s.anchor for s in page_order() if s.lead] == ["baselines"]
    assert _in_order([f.key for s in SECTIONS for f in s.figures], FIGURES) == FIGURES
    assert _in_order(list(result_grids()), SUMMARY_GRIDS) == SUMMARY_GRIDS


def test_a_grid_without_a_section_is_one_error(grid_dir):
    committed = grid.grid_names()
    shutil.copy(grid_dir / "v2_table1.yaml", grid_dir / "fig9_new.yaml")
    assert len(grid.grid_names()) == len(committed) + 1 and "fig9_new" in grid.grid_names()
    with pytest.raises(ReportError) as e:
        check()
    msg = str(e.value)
    assert msg == ("report sections do not match the grids: grid YAML without a report section: fig9_new (add "
                   "reports/sections/<grid>.py and its line in reports.sections.SECTIONS)")


def test_a_section_naming_a_missing_grid_is_one_error(grid_dir):
    (grid_dir / "v2_table1.yaml").unlink()
    with pytest.raises(ReportError) as e:
        check()
    assert str(e.value) == (f"report sections do not match the grids: section naming a grid with no YAML in "
                            f"{grid_dir}: v2_table1 -> v2_table1")


def test_every_mismatch_in_the_one_error():
    bad = SECTIONS + (Section(name="extra", anchor="extra", title="Extra", grids=("fig8_gone",),
                              sources=("table1_momentum",),
                              figures=(Figure("cost", lambda res, parts, out: {}, "twice"),)),)
    with pytest.raises(ReportError) as e:
        check(bad, GRIDS + ["fig9_new"])
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.count("report sections do not match the grids: ") == 1
    assert "grid YAML without a report section: fig9_new " in msg
    assert "section naming a grid with no YAML in " in msg and ": extra -> fig8_gone" in msg
    assert "section declaring a grid YAML as a source (name it in grids): extra -> table1_momentum" in msg
    assert msg.endswith("figure keys used twice: cost")


def test_build_and_cli_refuse_a_grid_without_a_section(grid_dir, tmp_path, capsys):
    shutil.copy(grid_dir / "v2_table1.yaml", grid_dir / "fig9_new.yaml")
    out = tmp_path / "out"
    with pytest.raises(ReportError, match="grid YAML without a report section: fig9_new "):
        build(tmp_path / "none.csv", out, progress=False)
    results = ROOT / "reports" / "reference" / "tiny" / "results.csv"
    assert report_main(["--results", str(results), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: report sections do not match the grids: ") \
        and "fig9_new" in err[0]
    assert not out.exists()                                     # refused before anything is written


def test_the_page_shows_the_sections_in_order(tmp_path):
    r = build(tmp_path / "none.csv", tmp_path / "out", progress=False)
    html = (tmp_path / "out" / "index.html").read_text()
    assert _in_order(re.findall(r'<h2 id="([^"]+)"', html), ANCHORS) == ANCHORS
    assert re.findall(r'<h2 id="([^"]+)"', html)[0] == "verdicts"
    assert _in_order(re.findall(r'data-figure="([^"]+)"', html), ["forest"] + FIGURES) == ["forest"] + FIGURES
    assert list(r["figures"]) == [f.key for s in SECTIONS for f in s.figures] + ["forest"]
    md = (tmp_path / "out" / "report.md").read_text()
    titles = {s.anchor: s.title for s in SECTIONS}
    assert _in_order(re.findall(r"^## (.+)$", md, re.M), [titles[a] for a in ANCHORS]) == [titles[a] for a in ANCHORS]
    assert _in_order(re.findall(r'data-table="([^"]+)"', html), TABLES) == TABLES
    assert sorted(p.stem for p in (tmp_path / "out" / "tables").glob("*.csv")) == sorted(r["parts"])
    assert set(TABLES) <= set(r["parts"])

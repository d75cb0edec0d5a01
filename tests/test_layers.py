"""The layering is a contract: import-linter's contracts in pyproject.toml hold, a contract that the code breaks is
reported as broken (the check can fail), no project module imports another inside a function, and the base and
config layers (what the grid planner and the report read) load without torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("pretrain", "ablations", "reports", "transfer")


def lint(config: Path | None = None) -> subprocess.CompletedProcess:
    args = [str(LINT), "--no-cache"] + (["--config", str(config)] if config else [])
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_are_kept():
    r = lint()
    assert r.returncode == 0, r.stdout + r.stderr
    text = " ".join(r.stdout.split())              # import-linter wraps long contract names
    assert "Contracts: 3 kept, 0 broken." in text, r.stdout
    for name in ("pretrain in layers", "the suite: reports and transfer > ablations > pretrain",
                 "never its command-line modules"):
        assert f"{name}" in text and text.count(" KEPT") == 3


def test_a_reversed_layering_is_reported_broken(tmp_path):
    cfg = tmp_path / "reversed.toml"
    cfg.write_text('[tool.importlinter]\nroot_packages = ["pretrain"]\n\n[[tool.importlinter.contracts]]\n'
                   'name = "base above engine"\ntype = "layers"\nlayers = ["pretrain.base", "pretrain.engine"]\n')
    r = lint(cfg)
    assert r.returncode == 1
    assert "Contracts: 0 kept, 1 broken." in r.stdout, r.stdout


def function_level_imports(path: Path) -> list[str]:
    """``file:line module`` of every import of a project package inside a function or class body."""
    out = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                mod = None
                if isinstance(inner, ast.ImportFrom):
                    mod = "." * inner.level + (inner.module or "")
                elif isinstance(inner, ast.Import):
                    mod = ",".join(a.name for a in inner.names)
                if mod and (mod.startswith(".") or mod.split(".")[0] in PACKAGES):
                    out.append(f"{path.relative_to(REPO)}:{inner.lineno} {mod}")
    return sorted(set(out))


def test_pretrain_has_no_import_inside_a_function():
    found = [x for p in sorted((REPO / "pretrain").rglob("*.py")) for x in function_level_imports(p)]
    assert found == []


def test_base_and_config_load_without_torch():
    code = ("import sys, pretrain.config, pretrain.base.errors, pretrain.base.fileio, pretrain.base.yamlio, "
            "pretrain.base.rundir, pretrain.base.status, pretrain.base.provenance, pretrain.engine.finished, "
            "pretrain.eval.protocol; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"

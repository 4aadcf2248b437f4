"""The layering of docs/ARCHITECTURE.md, checked by import-linter's contracts in pyproject.toml.

The first test runs `lint-imports` on the package as it is; the parametrised ones run it on a scratch copy with one
forbidden import added, so a contract that stopped catching anything would fail here too. The last two check that
the contract covers every package and that the package graph has no cycle.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    if not LINT_IMPORTS.exists():
        pytest.fail(
            f"{LINT_IMPORTS} not found: install the dev extra (pip install -e '.[dev]', which has import-linter)"
        )
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_import_contracts_are_kept():
    result = lint_imports(ROOT, ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " BROKEN" not in result.stdout


@pytest.mark.parametrize(
    "module, bad_import, contract",
    [
        # an import inside a function counts as much as one at the top
        ("core/metrics.py", "def _bad():\n    from ..train import loop\n", "Library layers"),
        ("tasks/base.py", "from ..models import factory\n", "Library layers"),
        ("config.py", "from . import tasks\n", "Library layers"),  # a config loads without the tasks (and torch)
        ("models/connector.py", "from ..features import cache\n", "Library layers"),  # siblings are independent
        ("core/schema.py", "from ..data import pipeline\n", "Library layers"),
        ("data/pipeline.py", "from .. import commands\n", "Library code never imports a command module"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, bad_import, contract):
    shutil.copytree(
        ROOT / "src" / "socialfusion",
        tmp_path / "src" / "socialfusion",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    path = tmp_path / "src" / "socialfusion" / module
    path.write_text(path.read_text() + "\n\n" + bad_import)
    result = lint_imports(tmp_path, tmp_path / "src")
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Broken contracts" in result.stdout, result.stdout + result.stderr
    assert contract in result.stdout.split("Broken contracts", 1)[1], result.stdout


def _layered_names() -> set[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    return {name.strip() for layer in layers for name in layer.split("|")}


def test_every_package_and_top_level_module_is_a_layer():
    package = ROOT / "src" / "socialfusion"
    names = {f"socialfusion.{p.stem}" for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    names |= {f"socialfusion.{p.parent.name}" for p in package.glob("*/__init__.py")}
    assert names - _layered_names() == set(), "add these to the layers contract in pyproject.toml"
    assert _layered_names() - names == set(), "the layers contract names modules that no longer exist"


def test_the_package_graph_has_no_cycle():
    """Packages (and top-level modules) as nodes, an edge where any module of one imports any of the other."""
    import grimp  # import-linter's graph library, installed with it (the dev extra)

    graph = grimp.build_graph("socialfusion")
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            source, target = ".".join(module.split(".")[:2]), ".".join(imported.split(".")[:2])
            if source != target:
                edges.setdefault(source, set()).add(target)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reaches(nxt, goal, seen))):
                return True
        return False

    cycles = sorted(f"{a} -> {b} -> ... -> {a}" for a in edges for b in edges[a] if reaches(b, a, set()))
    assert cycles == []

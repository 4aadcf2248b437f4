"""The layering of docs/ARCHITECTURE.md, checked by import-linter's contracts in pyproject.toml.

The first test runs `lint-imports` on the package as it is; the others run it on a scratch copy with one forbidden
import added, so a contract that stopped catching anything would fail here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
        ("eval/metrics.py", "def _bad():\n    from ..train import loop\n", "Evaluation never imports training"),
        ("tasks/base.py", "from ..models import factory\n", "Tasks never import models"),
        ("data/pipeline.py", "from .. import commands\n", "Library code never imports a command module"),
        ("models/connector.py", "from ..eval import runner\n", "Models never import the layers that use them"),
        ("data/schema.py", "from . import pipeline\n", "Library layers"),
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

"""House rules of the source tree that no linter here checks (docs/DEVELOPING.md, "House rules"): no function over
60 lines, and the package's own modules imported at the top of a module, except where a comment says why."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "socialfusion"
MAX_FUNCTION_LINES = 60
# (module, the function holding the local import): each carries its reason in a comment beside the import
LOCAL_IMPORTS_ALLOWED = {
    ("cli.py", "_main"),  # `--version`: numerics imports torch, which `--help` and the light verbs must not pay for
}


def _functions():
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(SRC).as_posix(), node


def test_no_function_is_longer_than_60_lines():
    long = [
        f"{module}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for module, node in _functions()
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == [], "split these into named steps"


def test_the_packages_own_modules_are_imported_at_the_top():
    local = set()
    for module, node in _functions():
        for inner in ast.walk(node):
            own = isinstance(inner, ast.ImportFrom) and (
                inner.level > 0 or (inner.module or "").startswith("socialfusion")
            )
            if own:
                local.add((module, node.name))
    assert local - LOCAL_IMPORTS_ALLOWED == set(), "import these at the top of the module (or say why not, here)"
    assert LOCAL_IMPORTS_ALLOWED - local == set(), "these are imported at the top now: drop them from the list"

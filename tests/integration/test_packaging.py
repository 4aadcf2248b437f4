"""What `pip install socialfusion` gets: a wheel built from this tree carries every data file the package reads at
run time (the presets and architecture files, the page, the report templates), not only its modules. The editable
install the tests run from reads them from the source tree, so only a built wheel shows a file left out."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "socialfusion"


def test_the_wheel_ships_every_data_file_of_the_package(tmp_path):
    # a clean copy: setuptools would otherwise reuse the checkout's build/ and *.egg-info, which list old files
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*pip_wheel, str(tree)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("socialfusion-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    data = {
        f"socialfusion/{p.relative_to(PACKAGE).as_posix()}"
        for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    assert "socialfusion/configs/default.yaml" in data
    assert sorted(data - shipped) == []

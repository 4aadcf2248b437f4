"""benchmarks/detect.py cannot rot: its smoke mode runs end to end, its matching counts what it should, and its
labelled set (benchmarks/detect_eval) is well formed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from socialfusion import detect as D
from tests.conftest import benchmark_script

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "detect.py"


def _bench():
    return benchmark_script("detect")


def test_matching_counts_hits_misses_and_ignored():
    bench = _bench()
    truth = [[0, 0, 10, 10], [20, 20, 30, 30]]
    dets = [
        {"xyxy": [0, 0, 10, 11], "score": 0.9},  # hit
        {"xyxy": [1, 0, 10, 10], "score": 0.8},  # same box again: the label is taken, so a false positive
        {"xyxy": [50, 50, 60, 60], "score": 0.7},  # inside an ignore region: neither
        {"xyxy": [80, 80, 90, 90], "score": 0.6},  # false positive
    ]
    m = bench.match(dets, truth, ignore=[[45, 45, 65, 65]], thr=0.5)
    assert (m["tp"], m["fp"], m["fn"]) == (1, 2, 1)


def test_labelled_set_is_well_formed():
    """Every image loads at its labelled size, every box lies inside it with a positive area and a known kind
    (`any` only for ignore regions, each with its reason), every image names its licence and source, each image is
    in exactly one split, both splits hold labelled faces, hands and persons, and every JPEG kept in the repo is
    labelled and credited."""
    bench = _bench()
    spec = json.loads(bench.BOXES.read_text())
    credits = (bench.BOXES.parent / "images" / "CREDITS.md").read_text()
    files = set()
    for entry in spec["images"]:
        name = entry["name"]
        assert ("file" in entry) != ("loader" in entry), name  # exactly one way to read it
        assert entry.get("licence", "").strip(), name
        assert entry["split"] in bench.SPLITS, name
        if "file" in entry:
            files.add(Path(entry["file"]).name)
            src = entry["source"]
            assert src["registry"] in ("PyPI", "npm") and src["package"] in credits and src["version"] in credits, name
            assert "MIT" in entry["licence"] or "CC0" in entry["licence"] or "public domain" in entry["licence"], name
        image = bench.image_of(entry)
        assert list(image.size) == entry["size"], name
        w, h = image.size
        for box in entry["boxes"]:
            assert box["kind"] in D.KINDS, (name, box)
        for box in entry.get("ignore", []):
            assert box["kind"] in (*D.KINDS, "any") and box["why"].strip(), (name, box)
        for box in entry["boxes"] + entry.get("ignore", []):
            x0, y0, x1, y1 = box["xyxy"]
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (name, box)
    kept = {p.name for p in (bench.BOXES.parent / "images").glob("*.jpg")}
    assert kept == files, kept ^ files
    for split in bench.SPLITS:
        entries = [e for e in spec["images"] if e["split"] == split]
        for kind in ("face", "hand", "person"):
            assert sum(b["kind"] == kind for e in entries for b in e["boxes"]) >= 10, (split, kind)
    assert sum((bench.BOXES.parent / "images" / f).stat().st_size for f in files) < 3_000_000


@pytest.mark.skipif(not D.available(), reason=f"detection packages not installed: {D.EXTRA_HINT}")
def test_smoke_run_writes_scores_and_times(tmp_path):
    out = tmp_path / "detect.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| face |" in proc.stdout and "| astronaut |" in proc.stdout
    result = json.loads(out.read_text())
    assert [r["name"] for r in result["images"]] == ["astronaut", "camera"]
    assert result["totals"]["face"]["tp"] == 2  # both labelled faces found, as the unit tests also check
    for row in result["images"]:
        assert all(len(v) == 1 and v[0] > 0 for v in row["times_s"].values())

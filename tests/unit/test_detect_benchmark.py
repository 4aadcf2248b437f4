"""benchmarks/detect.py cannot rot: its smoke mode runs end to end, and its matching counts what it should."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from socialfusion import detect as D

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "detect.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_detect", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_labels_file_is_consistent():
    spec = json.loads((ROOT / "benchmarks" / "detect_eval" / "boxes.json").read_text())
    names = [e["name"] for e in spec["images"]]
    assert len(names) == len(set(names))
    for entry in spec["images"]:
        w, h = entry["size"]
        for box in entry["boxes"] + entry.get("ignore", []):
            x0, y0, x1, y1 = box["xyxy"]
            assert box["kind"] in D.KINDS and 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (entry["name"], box)


@pytest.mark.skipif(not D.available(), reason=f"detection packages not installed: {D.EXTRA_HINT}")
def test_smoke_run_writes_scores_and_times(tmp_path):
    out = tmp_path / "detect.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--json", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| face |" in proc.stdout and "| astronaut |" in proc.stdout
    result = json.loads(out.read_text())
    assert [r["name"] for r in result["images"]] == ["astronaut", "camera"]
    assert result["totals"]["face"]["tp"] == 2  # both labelled faces found, as the unit tests also check
    for row in result["images"]:
        assert all(len(v) == 1 and v[0] > 0 for v in row["times_s"].values())

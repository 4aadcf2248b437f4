"""benchmarks/threads.py and benchmarks/video.py cannot rot: their smoke modes run end to end (tiny preset)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from socialfusion import detect as D

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True, env=ENV, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_threads_benchmark_smoke(tmp_path):
    out = tmp_path / "threads.json"
    proc = _run("threads.py", "--smoke", "--json", str(out))
    assert "| 1 | PASSIVE |" in proc.stdout
    result = json.loads(out.read_text())
    assert [(r["threads"], r["omp_wait_policy"]) for r in result["rows"]] == [(1, "PASSIVE")]
    assert all(len(r["predict_s"]) == 2 and min(r["predict_s"]) > 0 for r in result["rows"])


@pytest.mark.skipif(not D.available(), reason=f"detection packages not installed: {D.EXTRA_HINT}")
def test_video_benchmark_smoke(tmp_path):
    pytest.importorskip("av")
    out = tmp_path / "video.json"
    _run("video.py", "--smoke", "--json", str(out))
    result = json.loads(out.read_text())
    assert result["throughput"]["summary"]["frames"] == 10 and result["throughput"]["summary"]["frames_per_s"] > 0
    assert result["stages"]["decode"]["frames"] == 10 and "memory" not in result

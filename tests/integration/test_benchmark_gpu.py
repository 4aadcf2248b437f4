"""`benchmarks/gpu.py` (`make benchmark-gpu`) runs end to end on a CPU at the tiny preset: the peak matmul, the
training step from pixels and from features through the library's `train_step`, and prediction at batch 4, each
with finite, positive times and rates; the JSON and the markdown block are written to --out."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GPU = ROOT / "benchmarks" / "gpu.py"


def test_benchmark_gpu_runs_on_cpu_at_the_tiny_preset(tmp_path):
    out = tmp_path / "gpu-tiny.json"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE")
    cmd = [
        sys.executable,
        str(GPU),
        "--preset",
        "tiny",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--batch-size",
        "2",
        "--predict-batch-size",
        "4",
        "--warmup",
        "1",
        "--steps",
        "2",
        "--matmul-n",
        "256",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert (r["device"], r["precision"], r["preset"]) == ("cpu", "fp32", "tiny")
    assert r["peak"]["flops_per_s"] > 0 and r["peak"]["dtype"] == "float32"
    assert [t["input"] for t in r["train"]] == ["pixels", "features"]
    for t in r["train"]:
        assert t["batch_size"] == 2 and t["n"] == 2 and t["min_s"] <= t["median_s"] <= t["max_s"]
        for key in ("median_s", "tokens_per_s", "samples_per_s", "model_flops_per_step", "mfu", "last_loss"):
            assert isinstance(t[key], float) and math.isfinite(t[key]) and t[key] > 0, (key, t)
        assert t["llm_positions_per_step"] >= 2 * 16  # at least the 16 visual tokens of each sample
        assert "peak_memory_gb" not in t  # CUDA memory statistics only on CUDA
    assert r["train"][0]["model_flops_per_step"] >= r["train"][1]["model_flops_per_step"]  # pixels also run the encoder
    assert r["predict"]["batch_size"] == 4 and r["predict"]["images_per_s"] > 0
    assert all("not applicable" in v for v in r["targets"].values())
    md = out.with_suffix(".md").read_text()
    assert "| train step from pixels | 2 |" in md and "images/s" in md
    assert "| train step from pixels |" in proc.stdout


def test_the_gpu_benchmark_picks_its_device_through_runtime():
    source = GPU.read_text()
    assert ".cuda(" not in source and "resolve_device(" in source and "resolve_precision(" in source

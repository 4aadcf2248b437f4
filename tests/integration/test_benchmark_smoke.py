"""The benchmark harness cannot rot: `benchmarks/run.py --smoke` runs every worker kind of the full benchmark at the
tiny preset (SocialFusion's training step through `train_step`, the LLaVA+PEFT reference, the matmul peak,
score_classes, generate + parse, predict), and every kind must come back with a finite time."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "benchmarks" / "run.py"
KINDS = [
    "classify:generate",
    "classify:score",
    "matmul",
    "predict",
    "train:llava",
    "train:sf-features",
    "train:sf-pixels",
]


@pytest.mark.slow
def test_benchmark_smoke_runs_every_worker_kind(tmp_path):
    out = tmp_path / "bench"
    results_md = ROOT / "benchmarks" / "RESULTS.md"
    md_before = results_md.stat().st_mtime_ns if results_md.exists() else None
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    logs = (
        "".join(p.read_text()[-3000:] for p in sorted((out / "logs").glob("*.log"))) if (out / "logs").is_dir() else ""
    )
    assert proc.returncode == 0, (
        f"rc {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}\nworker logs:\n{logs}"
    )

    report = json.loads((out / "smoke.json").read_text())
    assert report["mode"] == "smoke"
    measured = report["kinds"]
    # every kind this test knows, and every kind any run of the harness has (a new one needs a smoke run too)
    for kind in sorted(set(KINDS) | set(report["kinds_of_every_run"])):
        times = measured.get(kind)
        assert times, f"no time for worker kind {kind}: {sorted(measured)}"
        for unit, seconds in times.items():
            assert isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0, (kind, unit, seconds)
    # the training rows carry a finite loss and FLOP count, so the steps really ran
    train = next(g for g in report["groups"] if g["name"] == "train-tiny")
    for key, res in train["results"].items():
        if not key.startswith("matmul"):
            assert math.isfinite(res["extra_last"]["loss"]), (key, res["extra_last"])
    assert all(
        math.isfinite(r["flops_per_step"]) and r["flops_per_step"] > 0
        for r in report["analysis"]["train"]["tiny"]["rows"].values()
    )
    assert (out / "smoke.md").read_text().strip()
    # the smoke run never writes over the real results
    assert (results_md.stat().st_mtime_ns if results_md.exists() else None) == md_before
    assert not (ROOT / "benchmarks" / "results" / "smoke.json").exists()


def test_cache_read_benchmark_smoke(tmp_path):
    """`run.py --cache-read --smoke`: every (dtype, checksum) row of the feature-cache read benchmark comes back
    with finite, positive rates, and the smoke run writes only to --out."""
    _run_smoke("--cache-read", tmp_path, timeout=300)
    report = json.loads((tmp_path / "cache-read-smoke.json").read_text())
    assert {(r["dtype"], r["checksum"]) for r in report["rows"]} == {
        (d, c) for d in ("fp32", "bf16") for c in ("every read", "once per run")
    }
    for r in report["rows"]:
        assert len(r["entries_per_s"]) == r["repeats"] >= 2
        assert all(math.isfinite(v) and v > 0 for v in r["entries_per_s"] + r["mb_per_s"]), r
    bf16 = next(r for r in report["rows"] if r["dtype"] == "bf16")
    fp32 = next(r for r in report["rows"] if r["dtype"] == "fp32")
    assert bf16["mb_per_entry"] == fp32["mb_per_entry"] / 2
    assert "| bf16 |" in (tmp_path / "cache-read-smoke.md").read_text()


@pytest.mark.slow
def test_pipeline_benchmark_smoke(tmp_path):
    """`run.py --pipeline --smoke`: every configuration of the input-pipeline benchmark (from memory; from JPEG files
    with one worker, with and without reduced decoding; in-process decoding) trains with a finite loss and comes
    back with a finite rate and ratio, the target rows are there, and the smoke run writes only to --out."""
    _run_smoke("--pipeline", tmp_path, timeout=600)
    report = json.loads((tmp_path / "pipeline-smoke.json").read_text())
    assert set(report["results"]) == {"memory", "hd-w1", "vga-w1", "hd-w1-full", "hd-w0"}
    for name, units in report["results"].items():
        assert units and all(
            math.isfinite(u["samples_per_s"]) and u["samples_per_s"] > 0 and math.isfinite(u["last_loss"])
            for u in units
        ), name
        assert math.isfinite(report["summary"][name]["ratio_to_memory"]["median"])
    assert all(
        math.isfinite(v[0]) and 0 < v[1] <= v[0] <= v[2] for v in report["decode_ms"].values()
    )  # CPU ms: median, min, max
    text = (tmp_path / "pipeline-smoke.md").read_text()
    assert "hd-w1: from files with one worker / from memory" in text and "vga-w1" in text


def _run_smoke(mode: str, out, timeout: int) -> None:
    """`run.py <mode> --smoke --out OUT` succeeds and leaves RESULTS.md (the recorded figures) untouched."""
    results_md = ROOT / "benchmarks" / "RESULTS.md"
    md_before = results_md.stat().st_mtime_ns if results_md.exists() else None
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, str(RUN), mode, "--smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (results_md.stat().st_mtime_ns if results_md.exists() else None) == md_before


def _smoke(tmp_path, script: str):
    """Run benchmarks/SCRIPT --smoke --json OUT offline; (the finished process, the JSON it wrote)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


def test_lr_encoder_selection_smoke(tmp_path):
    """benchmarks/lr_encoder.py (the VLM-style baseline's encoder learning rate, chosen on val) still runs."""
    proc, result = _smoke(tmp_path, "lr_encoder.py")
    assert result["smoke"] and result["chosen"] in result["candidates"] == [1e-5, 1e-4]
    assert [(r["lr_encoder"], r["task"]) for r in result["rows"]] == [(1e-5, "expression"), (1e-4, "expression")]
    assert all(0.0 <= r["value"] <= 1.0 and r["n"] > 0 for r in result["rows"])
    assert "Chosen: lr_encoder =" in proc.stdout


def test_learning_curves_smoke(tmp_path):
    """benchmarks/learning_curves.py (the selection metric against step and seconds per variant) still runs."""
    proc, result = _smoke(tmp_path, "learning_curves.py")
    assert result["smoke"] and "native_bf16" in result and result["cpu"]
    assert [(r["task"], r["variant"]) for r in result["records"]] == [("expression", "base"), ("expression", "lr")]
    for r in result["records"]:
        assert [p["step"] for p in r["curve"]] == [1, 2] and all(
            0.0 <= p["value"] <= 1.0 and p["seconds"] > 0 for p in r["curve"]
        )
    assert "| expression | base | 1 |" in proc.stdout


@pytest.mark.precision
def test_batching_benchmark_smoke_measures_both_precisions_and_records_the_cpu(tmp_path, one_torch_thread):
    """benchmarks/batching.py --smoke (the measurements behind the batching promise): every grouping in both
    precisions stays within `numerics.TOLERANCES` here, and the result records the CPU's bf16 facts."""
    from tests.conftest import benchmark_script

    batching = benchmark_script("batching")
    threads = torch.get_num_threads()
    try:
        assert batching.main(["--smoke", "--json", str(tmp_path / "batching.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads((tmp_path / "batching.json").read_text())
    from socialfusion.numerics import TOLERANCES, precision_facts

    assert report["machine"]["cpu_native_bf16"] == precision_facts()["cpu_native_bf16"]
    assert report["machine"]["cpu_auto_precision"] in ("fp32", "bf16")
    [row] = report["rows"]
    for precision in ("fp32", "bf16"):
        for grouping in ("tasks", "images"):
            measured = row[precision][grouping]
            assert measured["labels"] > 0
            assert measured["max_probability_diff"] <= TOLERANCES[precision].probability, (
                precision,
                grouping,
                measured,
            )
            assert measured["max_heatmap_cell_diff"] <= TOLERANCES[precision].heatmap, (precision, grouping, measured)
    assert row["precision"]["max_probability_diff"] > 0, "bf16 and fp32 computed the same numbers: bf16 did not run"
    assert "native bf16" in (tmp_path / "batching.md").read_text()

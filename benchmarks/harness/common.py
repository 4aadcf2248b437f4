"""Constants shared by the harness's modules."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parents[1]  # benchmarks/
ROOT = HERE.parent
RESULTS_DIR = HERE / "results"
TRAIN_TASK = "expression"
BATCH = 8
ALL_LORA = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

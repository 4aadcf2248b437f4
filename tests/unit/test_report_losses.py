"""The report's loss curves read log.jsonl as training writes it (report.training_losses / loss_curves)."""

import json

import pytest

from socialfusion.report import loss_curves, training_losses


def write_log(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_losses_go_to_the_task_their_step_drew_against_the_fraction_of_the_run(tmp_path):
    log = write_log(
        tmp_path / "log.jsonl",
        [
            {"step": 10, "loss": 2.0, "tasks": ["lam"]},
            {"step": 20, "loss": 1.5, "tasks": ["gaze"]},
            {"step": 20, "eval": {"lam": {"map": 0.7}}, "mean_primary": 0.7},  # an evaluation: no training loss
            {"step": 30, "loss": 1.0, "tasks": ["lam", "gaze"]},  # accumulation mixed two tasks: belongs to neither
            {"step": 40, "loss": None, "tasks": ["lam"]},  # a non-finite loss written as null
            {"step": 40, "loss": 0.5, "tasks": ["lam"]},
            {"skips": {"total": 0}},
        ],
    )
    assert training_losses(log) == {"lam": [(0.25, 2.0), (1.0, 0.5)], "gaze": [(0.5, 1.5)]}


def test_one_panel_per_task_with_single_and_joint_curves(tmp_path):
    single = {
        t: write_log(tmp_path / f"{t}.jsonl", [{"step": s, "loss": 1.0 / s, "tasks": [t]} for s in (1, 2, 3)])
        for t in ("lam", "gaze")
    }
    joint = write_log(
        tmp_path / "joint.jsonl", [{"step": s, "loss": 0.5, "tasks": ["lam" if s % 2 else "gaze"]} for s in range(1, 7)]
    )
    path = loss_curves(single, joint, tmp_path / "curves.png")
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 2 * im.height  # two panels side by side
    assert training_losses(joint)["gaze"] == [pytest.approx((s / 6, 0.5)) for s in (2, 4, 6)]

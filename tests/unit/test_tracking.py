"""log.jsonl and TensorBoard scalars from one record (train/tracking.py)."""

import json
import math

import pytest

from socialfusion.train.tracking import RunLog, scalars


def test_a_training_record_names_its_task_and_a_mixed_step_is_joint():
    assert scalars({"step": 3, "loss": 0.5, "tasks": ["gaze"], "lr": 1e-3, "samples_per_s": 7.0}) == {
        "loss/gaze": 0.5,
        "lr": 1e-3,
        "samples_per_s": 7.0,
    }
    assert set(scalars({"step": 3, "loss": 0.5, "tasks": ["gaze", "lam"]})) == {"loss/joint"}


def test_an_evaluation_gives_every_finite_scalar_and_its_interval():
    record = {
        "step": 10,
        "mean_primary": 0.6,
        "eval": {
            "lam": {"mAP": 0.7, "accuracy": 0.8, "n": 100, "per_class": [0.1, 0.2], "ci": {"mAP": [0.6, 0.8]}},
            "relation": None,  # unlabelled split: nothing to log
            "gaze": {"auc": float("nan")},
        },
    }
    assert scalars(record) == {
        "val/lam/mAP": 0.7,
        "val/lam/accuracy": 0.8,
        "val/lam/n": 100.0,
        "val/lam/mAP_lo": 0.6,
        "val/lam/mAP_hi": 0.8,
        "val/mean_primary": 0.6,
    }


def test_log_lines_are_strict_json_and_events_are_written(tmp_path):
    log = RunLog(tmp_path, "tensorboard")
    log.write({"step": 1, "loss": 0.25, "tasks": ["lam"], "lr": 0.1})
    log.write({"step": 2, "eval": {"lam": {"mAP": math.nan}}, "mean_primary": -math.inf})
    log.write({"skips": {"total": 0}})
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert rows[1] == {"step": 2, "eval": {"lam": {"mAP": None}}, "mean_primary": None}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert set(board.Tags()["scalars"]) == {"loss/lam", "lr"}
    assert board.Scalars("loss/lam")[0].value == pytest.approx(0.25)


def test_none_writes_only_the_log_and_an_unknown_target_is_refused(tmp_path):
    RunLog(tmp_path, "none").close()
    assert (tmp_path / "log.jsonl").exists() and not (tmp_path / "tensorboard").exists()
    with pytest.raises(ValueError, match="report_to"):
        RunLog(tmp_path, "wandb")

"""The result types (core/results.py): each reads and writes its JSON file unchanged, a key a file lacks reads as
its default, and a file that is not a result says which file it is."""

import json

import pytest

from socialfusion.core.results import (
    EvalResults,
    Fit,
    GradconfResult,
    ProbeResult,
    ResultError,
    TaskMetrics,
    TransferResult,
)
from socialfusion.strict_json import dumps

METRICS = {"map": 0.8, "accuracy": 0.75, "n": 12, "ci": {"map": [0.6, 0.9], "accuracy": [0.5, 0.9]}}
RUN = {
    "dir": "/runs/joint",
    "checkpoint": "/runs/joint/checkpoints/best",
    "steps": 10,
    "cap": 10,
    "seed": 0,
    "metrics": {"lam": METRICS},
    "fit": {"steps": 10, "cap": 10, "stop_reason": "cap: 10 steps", "best_step": 10, "curve": [{"step": 10}]},
    "seconds": 1.5,
}
ROW = {
    "metric": "map",
    "single": 0.7,
    "single_ci": [0.5, 0.9],
    "joint": 0.8,
    "joint_ci": [0.6, 0.9],
    "delta": 0.1,
    "delta_ci": [-0.1, 0.3],
    "relative": 0.14,
    "relative_ci": [-0.1, 0.4],
    "transfer": "within noise",
    "n": 12,
    "interval": "paired bootstrap over report-split samples",
}
FAMILY = {
    "overrides": ["model.trainable.encoder=full"],
    "joint_variant_of": "socialfusion",
    "steps": {"single": 2, "joint": 10},
    "seeds": [0],
    "tasks": {"lam": ROW},
    "single_metrics": {"lam": METRICS},
    "joint_metrics": {"lam": None},
    "mean_relative": 0.14,
    "mean_relative_ci": None,
    "n_positive": 0,
    "n_negative": 0,
    "n_within_noise": 1,
}
TRANSFER = {
    "config": "tiny",
    "budget": "plateau",
    "split": "report",
    "splits": {"lam": {"train": "train", "selection": "holdout", "report": "val"}},
    "tasks": ["lam"],
    "seeds": 1,
    "interval": "paired percentile bootstrap over the report split's samples, 95 %",
    "bootstrap": {"level": 0.95, "resamples": 1000, "seed": 0},
    "families": {"vlm_style": FAMILY},
    "runs": {"vlm_style": {"joint": RUN}},
    "seconds": 3.0,
    "figures": ["/out/transfer.png"],
    "captions": {"transfer": "Transfer."},
    "markdown": "| a |\n",
}
PROBE = {
    "config": "tiny",
    "pools": ["box"],
    "encoders": {"enc": {"spec": None, "identity": "x", "num_layers": 4, "grid": [2, 2], "hidden_size": 8}},
    "results": [
        {"encoder": "enc", "layer": -1, "task": "lam", "pool": "box", "metric": "map", "value": 0.6, "C": 1.0},
    ],
    "n_samples": {"lam/train": 10},
    "skips": {},
    "intervals": None,
    "chance": {"lam": 0.5},
    "figures": [],
    "captions": {},
    "markdown": "",
    "seconds": 0.5,
}
GRADCONF = {
    "tasks": ["lam", "gaze"],
    "batches": 2,
    "overall": {"cosine": [[1.0, 0.1], [0.1, 1.0]]},
    "pairs": [{"a": "lam", "b": "gaze", "cosine": 0.1, "ci": {"cosine": [0.0, 0.2]}}],
    "seconds": 0.1,
    "markdown": "x",
}
EVAL = {
    "split": "val",
    "metrics": {"lam": METRICS, "gaze": None},
    "intervals": None,
    "skips": {},
    "manifest": {},
    "config": {"name": "tiny"},
    "versions": {},
    "files": {"lam": "/out/predictions_lam.jsonl"},
}
CASES = [(TransferResult, TRANSFER), (ProbeResult, PROBE), (GradconfResult, GRADCONF), (EvalResults, EVAL)]


@pytest.mark.parametrize(("kind", "data"), CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_round_trip_through_json_keeps_the_bytes(tmp_path, kind, data):
    path = tmp_path / kind.FILE
    path.write_text(dumps(data, indent=2))
    result = kind.load(path)
    assert result.to_dict() == data
    assert list(result.to_dict()) == list(data)  # the key order too
    result.save(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == path.read_text()
    assert kind.from_json(data) == result and kind.from_json(result) is result


def test_the_nested_parts_are_typed():
    t = TransferResult.from_json(TRANSFER)
    fam = t.families["vlm_style"]
    assert fam.row("lam").relative_ci == [-0.1, 0.4] and fam.row("lam").transfer == "within noise"
    assert (fam.n_positive, fam.n_negative, fam.n_within_noise) == (0, 0, 1)
    assert fam.steps.joint == 10 and fam.joint_variant_of == "socialfusion"
    fit = t.run("vlm_style", "joint").fit
    assert isinstance(fit, Fit) and (fit.steps, fit.best_step, fit.stop_reason) == (10, 10, "cap: 10 steps")
    assert fit.curve == [{"step": 10}]
    metrics = t.run("vlm_style", "joint").metrics["lam"]
    assert isinstance(metrics, TaskMetrics) and metrics.n == 12 and metrics.interval("map") == [0.6, 0.9]
    assert fam.joint_metrics["lam"] is None
    assert ProbeResult.from_json(PROBE).results[0].extra == {"C": 1.0}
    assert GradconfResult.from_json(GRADCONF).pairs[0].ci == {"cosine": [0.0, 0.2]}


def test_a_missing_optional_key_reads_as_its_default():
    family = {k: v for k, v in FAMILY.items() if k not in ("n_positive", "joint_variant_of", "steps")}
    data = {**TRANSFER, "families": {"vlm_style": family}}
    for key in ("interval", "markdown", "figures", "captions"):
        data.pop(key)
    t = TransferResult.from_json(data)
    fam = t.families["vlm_style"]
    assert fam.n_positive == 0 and fam.joint_variant_of is None and fam.steps is None
    assert t.interval == "95 %" and t.markdown == "" and t.figures == [] and t.captions == {}
    assert t.family("absent").n_positive == 0 and t.family("absent").seeds == []
    assert t.split_roles("absent").selection == "?"
    assert fam.row("absent").relative is None and fam.row("absent").transfer is None
    assert TaskMetrics({}).value("map", 0.0) == 0.0 and TaskMetrics({}).interval("map") is None
    # what the file lacked stays out when it is written again
    assert "joint_variant_of" not in fam.to_dict() and "interval" not in t.to_dict()


def test_a_new_record_writes_its_keys_in_the_files_order():
    fam = TransferResult.from_json(TRANSFER).families["vlm_style"]
    assert list(type(fam)(**{k: getattr(fam, k) for k in FAMILY}).to_dict()) == list(FAMILY)
    without = type(fam)(overrides=[])
    assert "joint_variant_of" not in without.to_dict()  # written only for a variant


def test_no_nan_is_ever_written():
    text = ProbeResult.from_json({**PROBE, "seconds": float("nan")}).to_json()
    assert '"seconds": null' in text and "NaN" not in text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "not a readable transfer.json"),
        ("[1, 2]", "expected a JSON object"),
        (
            json.dumps({**TRANSFER, "runs": {"vlm_style": {"joint": {"steps": 1}}}}),
            "runs.vlm_style.joint: missing key 'dir'",
        ),
        (json.dumps({**TRANSFER, "families": {"vlm_style": {**FAMILY, "tasks": {"lam": {"single": 1}}}}}), "'metric'"),
        (json.dumps({**TRANSFER, "families": []}), "families: expected a JSON object"),
    ],
)
def test_a_malformed_file_is_an_error_naming_the_file(tmp_path, text, words):
    path = tmp_path / "transfer.json"
    path.write_text(text)
    with pytest.raises(ResultError) as e:
        TransferResult.load(path)
    assert str(path) in str(e.value) and words in str(e.value)


def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ResultError, match="probe.json"):
        ProbeResult.load(tmp_path / "probe.json")
    with pytest.raises(ResultError, match="no run 'joint' of family 'socialfusion'"):
        TransferResult.from_json(TRANSFER).run("socialfusion", "joint")

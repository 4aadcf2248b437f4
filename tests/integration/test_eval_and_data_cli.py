"""The eval verb on a trained tiny checkpoint (metrics, predictions, the LAM challenge submission) and the data
verbs' round trip on the synthetic benchmark."""

import json

import pytest

from socialfusion.commands import main_eval, main_train
from socialfusion.data.commands import main as data_main
from tests.conftest import synth_overrides
from tests.official_fixtures import write_lam

DATASETS = {
    "ego4d_lam": ("ego4d_lam", ["train", "val"]),
    "affectnet": ("affectnet", ["train", "val"]),
    "hagrid_v2": ("hagrid", ["train", "val", "test"]),
    "pisc": ("pisc", ["train", "val", "test"]),
    "gazefollow": ("gazefollow_extended", ["train", "test"]),
}


@pytest.fixture(scope="module")
def tiny_ckpt(synth_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    cache = tmp_path_factory.mktemp("cache")
    assert (
        main_train(["tiny", *synth_overrides(synth_root, cache), "train.steps=2", "--out", str(run), "--no-progress"])
        == 0
    )
    return run / "checkpoints" / "last", cache


def test_eval_writes_official_metrics_and_per_sample_predictions(tiny_ckpt, synth_root, tmp_path):
    ckpt, cache = tiny_ckpt
    out = tmp_path / "eval"
    # the report split (test_split: AffectNet val, GazeFollow test); the selection split of expression is a small
    # holdout
    assert (
        main_eval(
            ["--ckpt", str(ckpt), "--out", str(out), "--tasks", "expression,gaze", "--limit", "10", "--split", "test"]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert set(results["metrics"]) == {"expression", "gaze"}
    assert results["metrics"]["expression"]["n"] == 10 and 0.0 <= results["metrics"]["expression"]["accuracy"] <= 1.0
    assert {"auc", "avg_l2", "min_l2"} <= set(results["metrics"]["gaze"])
    assert results["versions"]["torch"] and results["manifest"]["expression"]["n"] == 10
    rows = [json.loads(line) for line in (out / "predictions_expression.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and all(abs(sum(r["probs"]) - 1) < 1e-4 for r in rows)
    assert "| expression | 10 |" in (out / "results.md").read_text()
    # every metric with its 95 % bootstrap interval over the 10 samples
    expr = results["metrics"]["expression"]
    assert (
        set(expr["ci"]) == {"accuracy", "macro_f1"}
        and expr["ci"]["accuracy"][0] <= expr["accuracy"] <= expr["ci"]["accuracy"][1]
    )
    assert set(results["metrics"]["gaze"]["ci"]) == {"auc", "avg_l2", "min_l2"}
    assert results["intervals"] == {
        "level": 0.95,
        "method": "percentile bootstrap over samples",
        "resamples": 1000,
        "seed": 0,
    }
    assert f"accuracy {expr['accuracy']:.4f} [{expr['ci']['accuracy'][0]:.4f}, " in (out / "results.md").read_text()


def test_unlabelled_lam_challenge_split_gives_a_submission_file(tiny_ckpt, tmp_path):
    ckpt, cache = tiny_ckpt
    lam_root = write_lam(tmp_path / "lam")
    out = tmp_path / "eval"
    args = [
        "--ckpt",
        str(ckpt),
        "--out",
        str(out),
        "--split",
        "test",
        "--tasks",
        "lam",
        "--data",
        f"data.tasks.0.root={lam_root}",
        "data.tasks.0.test_split=test",
        f"train.cache_dir={cache}",
    ]
    main_eval(args)
    submission = json.loads((out / "lam_submission.json").read_text())
    assert submission["challenge"] == "ego4d_looking_at_me"
    assert {(r["track_id"], r["unique_id"]) for r in submission["results"]} == {("trk-z", "u001"), ("trk-z", "u002")}
    assert all(r["label"] == 1 and 0.0 <= r["score"] <= 1.0 for r in submission["results"])


def test_synth_prepare_validate_round_trip_with_zero_bad_records(synth_root, tmp_path, capsys):
    for name, (folder, splits) in DATASETS.items():
        for split in splits:
            out = tmp_path / f"{name}_{split}.jsonl"
            assert (
                data_main(["prepare", name, "--root", str(synth_root / folder), "--split", split, "--out", str(out)])
                == 0
            )
            assert out.stat().st_size > 0
            assert data_main(["validate", str(out), "--max-bad-fraction", "0"]) == 0, f"{name}/{split}"

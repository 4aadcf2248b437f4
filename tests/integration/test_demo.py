"""The main job end to end (`socialfusion demo`), on the tiny preset so that it runs in the test budget.

The default preset's figures come from real runs recorded in the README; this checks that every stage runs and
that the report holds what the issue asks for.
"""

import json

from socialfusion.demo import main as demo_main

TASKS = ["lam", "expression", "gesture", "relation", "gaze"]


def test_demo_runs_every_stage_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = demo_main(
        [
            "--out",
            str(out),
            "--config",
            "tiny",
            "--quick",
            "--n",
            "24",
            "--steps",
            "2",
            "--no-progress",
            f"train.cache_dir={tmp_path / 'cache'}",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    for stage in ("synthetic benchmark", "transfer", "gradient conflict", "linear probes", "report"):
        assert f"== {stage}" in printed

    summary = json.loads((out / "summary.json").read_text())
    assert [m["task"] for m in summary["metrics"]] == TASKS
    for m in summary["metrics"]:
        assert 0.0 <= m["value"] <= 1.0 and 0.0 < m["chance"] < 1.0 and m["n"] > 0
        assert m["above_chance"] == (m["value"] > m["chance"])
    assert summary["all_above_chance"] == all(m["above_chance"] for m in summary["metrics"])
    assert set(summary["timings"]) >= {
        "synthetic benchmark",
        "transfer: single-task and joint training + evaluation",
        "gradient conflict",
        "linear probes",
    }

    transfer = json.loads((out / "transfer" / "transfer.json").read_text())
    runs = transfer["runs"]["socialfusion"]
    assert set(runs) == {f"single-{t}" for t in TASKS} | {"joint"}
    assert runs["joint"]["steps"] == 5 * runs["single-lam"]["steps"] == 10  # equal steps per task

    html = (out / "report.html").read_text()
    for section in ("Per-task metrics", "Transfer", "Linear probes", "Gradient conflict", "Timings", "Config"):
        assert section in html
    for figure in (
        "confusion_expression",
        "confusion_gesture",
        "gaze_examples",
        "transfer",
        "probe",
        "gradconf",
        "loss_curves",
    ):
        assert f"<h3>{figure}" in html
    assert html.count('<img src="data:image/png;base64,') >= 6
    assert (out / "report.md").read_text().count("|") > 20  # its tables


def test_demo_options_are_the_study_options_at_the_demo_scale():
    from socialfusion.analysis.transfer import VLM_STYLE
    from socialfusion.demo import DEMO_LR_ENCODER, SCALES, parse_args

    _, plan = parse_args([])
    assert (
        plan.seeds == 1
        and plan.baselines == {}
        and plan.gradconf_batches == SCALES["full"]["plan"]["gradconf_batches"] == 16
    )
    _, quick = parse_args(["--quick", "--seeds", "3"])
    assert quick.seeds == 3 and quick.gradconf_batches == SCALES["quick"]["plan"]["gradconf_batches"]
    _, with_baseline = parse_args(["--with-baseline", "--variant", "mixed=data.sampler=round_robin,train.grad_accum=5"])
    assert with_baseline.baselines == {"vlm_style": [*VLM_STYLE, f"train.lr_encoder={DEMO_LR_ENCODER:g}"]}
    assert with_baseline.variants == {"mixed": ["data.sampler=round_robin", "train.grad_accum=5"]}

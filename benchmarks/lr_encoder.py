#!/usr/bin/env python
"""Choose the VLM-style baseline's encoder learning rate on the validation split, before its transfer is measured.

The VLM-style family is SocialFusion with its visual encoder trained (`model.trainable.encoder=full`, no feature
cache), as VLM recipes train their vision tower: with a learning rate of its own far below the connector's
(`train.lr_encoder`). This script trains one single-task model per (candidate, task) on the demo's synthetic
benchmark, scores it on val with the official metric and picks the candidate with the best mean primary metric.
The transfer result is not looked at: it is measured afterwards with the chosen value (`demo --with-baseline`).

    .venv/bin/python benchmarks/lr_encoder.py --data runs/seeds3/data --out runs/lr_encoder \\
        --tasks expression --candidates 2e-6,2e-5,2e-4 --json benchmarks/results/lr_encoder.json
    .venv/bin/python benchmarks/lr_encoder.py --smoke     # tiny preset, 1 step, two candidates (tested)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from harness.stats import cpu_model, table_head

from socialfusion.numerics import precision_facts


def select(config, out: Path, tasks: list[str], candidates: list[float], progress: bool = False) -> dict:
    """Train and evaluate one single-task VLM-style model per (candidate, task); the best candidate by mean val
    metric."""
    from socialfusion.analysis.transfer import VLM_STYLE
    from socialfusion.config import apply_overrides, select_tasks
    from socialfusion.eval.evaluate import evaluate_model
    from socialfusion.models.checkpoint import load_model
    from socialfusion.tasks import tasks_from_config
    from socialfusion.train.loop import train

    task_defs = tasks_from_config(config)
    rows = []
    for lr in candidates:
        for task in tasks:
            cfg = apply_overrides(select_tasks(config, [task]), [*VLM_STYLE, f"train.lr_encoder={lr}"])
            run = out / f"lr-{lr:g}" / task
            t0 = time.perf_counter()
            train(cfg, run, resume=True, progress=progress)
            model, _ = load_model(run / "checkpoints" / "last")
            metrics = evaluate_model(model, cfg, run / "eval", split="val", progress=progress)["metrics"][task]
            metric = task_defs[task].primary_metric
            rows.append(
                {
                    "lr_encoder": lr,
                    "task": task,
                    "metric": metric,
                    "value": metrics[metric],
                    "ci": (metrics.get("ci") or {}).get(metric),
                    "n": metrics.get("n"),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            )
    means = {lr: sum(r["value"] for r in rows if r["lr_encoder"] == lr) / len(tasks) for lr in candidates}
    best = max(candidates, key=lambda lr: means[lr])
    return {
        "tasks": tasks,
        "candidates": candidates,
        "rows": rows,
        "mean_by_candidate": {f"{lr:g}": v for lr, v in means.items()},
        "chosen": best,
        "connector_lr": config.train.lr_connector or config.train.lr,
        "steps": config.train.steps,
        "cpu": cpu_model(),
        "precision": precision_facts(),
    }


def markdown(result: dict) -> str:
    from socialfusion.core.intervals import fmt_ci

    lines = table_head("lr_encoder", "task", "metric", "val [95 % interval]", "n", "seconds")
    for r in result["rows"]:
        lines.append(
            f"| {r['lr_encoder']:g} | {r['task']} | {r['metric']} | "
            f"{fmt_ci(r['value'], r['ci'])} | {r['n']} | {r['seconds']} |"
        )
    lines.append("")
    lines.append(
        f"Chosen: lr_encoder = {result['chosen']:g} (best mean val metric; connector lr {result['connector_lr']:g}; "
        f"{result['steps']} steps per model; CPU: {result['cpu']})."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="the demo's synthetic benchmark folder (made by `socialfusion demo` under OUT/data)")
    p.add_argument("--out", help="folder for the training runs")
    p.add_argument("--config", default="default", help="preset (default: default)")
    p.add_argument("--steps", type=int, default=90, help="steps per single-task model (the demo's: 90)")
    p.add_argument("--tasks", default="expression", help="comma-separated tasks to choose on")
    p.add_argument("--candidates", default="2e-6,2e-5,2e-4", help="comma-separated encoder learning rates")
    p.add_argument("--json", help="write the result here too")
    p.add_argument("--smoke", action="store_true", help="tiny preset, one step, two candidates: does it still run?")
    args = p.parse_args(argv)

    from socialfusion.demo import demo_config

    if args.smoke:
        from socialfusion.data.synth import generate

        tmp = Path(tempfile.mkdtemp(prefix="lr-encoder-smoke-"))
        generate(tmp / "data", n=8, seed=0, image_size=64, datasets=["affectnet"])
        data, out, preset, steps, candidates = tmp / "data", tmp / "runs", "tiny", 1, [1e-5, 1e-4]
        tasks = ["expression"]
    else:
        if not args.data or not args.out:
            p.error("--data and --out are required (or --smoke)")
        data, out, preset, steps = Path(args.data), Path(args.out), args.config, args.steps
        from socialfusion.config import split_list

        candidates = split_list(args.candidates, float)
        tasks = split_list(args.tasks)
    from socialfusion.config import select_tasks

    fixed = {"steps": steps, "eval_every": 0, "patience": 0}  # each candidate trains a fixed number of steps
    config = select_tasks(demo_config(preset, data, fixed, ["train.warmup_steps=1"] if args.smoke else []), tasks)
    result = select(config, out, tasks, candidates)
    result["smoke"] = args.smoke
    text = markdown(result)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

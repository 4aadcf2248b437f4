"""Learning curves of single-task models: the selection metric against step and against seconds, per variant and
seed, on the synthetic benchmark (docs/DESIGN-CHANGES.md item 24 records what they decided).

    python benchmarks/learning_curves.py --data runs/demo/data --out runs/curves --tasks expression,gesture \\
        --steps 300 --seeds 3 --variant base= --variant l4=model.llm.num_layers=4 \\
        --json benchmarks/results/learning-curves.json
    python benchmarks/learning_curves.py --smoke     # tiny preset, two variants, a few steps: does it still run?

Every run trains with the plateau protocol's evaluations (train.eval_every) but no early stopping, so each curve
covers the whole cap; a finished run under --out is read back instead of retrained. Each record keeps the CPU model
and its precision facts (`numerics.precision_facts`: native bf16 or not, what `auto` resolves to).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from harness.stats import table_head


def curve(run_dir: Path) -> list[dict]:
    """[{step, value, seconds}] of every evaluation in a run's log.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    return [
        {"step": r["step"], "value": r["mean_primary"], "seconds": r.get("seconds")}
        for r in rows
        if "mean_primary" in r
    ]


def run_one(preset: str, data: Path, task: str, overrides: list[str], seed: int, run_dir: Path) -> list[dict]:
    from socialfusion.config import load_config, select_tasks
    from socialfusion.data.synth import task_dirs
    from socialfusion.train.loop import train

    if (run_dir / "fit.json").exists() and json.loads((run_dir / "fit.json").read_text())["stop_reason"].startswith(
        "cap"
    ):
        return curve(run_dir)
    roots = [f"data.tasks.{t}.root={data / d}" for t, d in task_dirs().items()]
    config = load_config(
        preset,
        roots
        + [
            f"model.seed={seed}",
            f"train.seed={seed}",
            "train.early_stop_patience=0",
            "train.report_to=none",
            *overrides,
        ],
    )
    train(select_tasks(config, [task]), run_dir, resume=True, progress=False)
    return curve(run_dir)


def summarise(records: list[dict]) -> str:
    """Per task and variant: the mean over seeds of the selection metric at each evaluated step."""
    lines = table_head("task", "variant", "seeds", "metric at step (mean over seeds)")
    groups: dict[tuple, list] = {}
    for r in records:
        groups.setdefault((r["task"], r["variant"]), []).append(r["curve"])
    for (task, variant), curves in groups.items():
        steps = [p["step"] for p in curves[0]]
        means = [
            sum(c[i]["value"] for c in curves) / len(curves)
            for i in range(len(steps))
            if all(len(c) > i for c in curves)
        ]
        lines.append(
            f"| {task} | {variant} | {len(curves)} | " + ", ".join(f"{s}: {m:.2f}" for s, m in zip(steps, means)) + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="the synthetic benchmark (socialfusion data synth --out DIR --n 400)")
    p.add_argument("--out", help="run folders")
    p.add_argument("--config", default="default")
    p.add_argument("--tasks", default="expression,gesture")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDE[,OVERRIDE...]")
    p.add_argument("--json", help="write the records here too")
    p.add_argument("--smoke", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        from socialfusion.data.synth import generate

        tmp = Path(tempfile.mkdtemp(prefix="curves-smoke-"))
        generate(tmp / "data", n=24, seed=0, image_size=64, datasets=["affectnet"])
        data, out, preset, tasks, steps, every = tmp / "data", tmp / "runs", "tiny", ["expression"], 2, 1
        variants = {
            "base": [f"train.cache_dir={tmp / 'cache'}"],
            "lr": [f"train.cache_dir={tmp / 'cache'}", "train.lr=2e-3"],
        }
    else:
        if not args.data or not args.out:
            p.error("--data and --out are required (or --smoke)")
        from socialfusion.analysis.transfer import normalise_baselines

        data, out, preset, steps, every = Path(args.data), Path(args.out), args.config, args.steps, args.eval_every
        from socialfusion.config import split_list

        tasks = split_list(args.tasks)
        variants = normalise_baselines(args.variant or ["base=train.warmup_steps=10"], "--variant")
    from socialfusion.numerics import precision_facts

    records = []
    for task in tasks:
        for name, overrides in variants.items():
            for seed in range(args.seeds):
                run = out / f"{task}-{name}-seed{seed}"
                points = run_one(
                    preset, data, task, [f"train.steps={steps}", f"train.eval_every={every}", *overrides], seed, run
                )
                records.append({"task": task, "variant": name, "overrides": overrides, "seed": seed, "curve": points})
    facts = precision_facts()
    result = {
        "cpu": facts["cpu"],
        "native_bf16": facts["cpu_native_bf16"],
        "precision": facts,
        "config": preset,
        "steps": steps,
        "eval_every": every,
        "smoke": args.smoke,
        "records": records,
    }
    print(summarise(records))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

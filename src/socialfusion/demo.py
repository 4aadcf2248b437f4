"""`socialfusion demo`: the main job, offline on a CPU with the embedded default.

`socialfusion study default` (study.py) on the synthetic benchmark: synthetic social scenes in the five official
layouts -> feature cache -> joint five-task model and the single-task models (transfer) -> official metrics ->
gradient conflict and linear probes -> runs/demo/report.html. Every option of `study` works here too (--seeds,
--baseline, --variant, ...); a second run with the same options reuses the finished stages.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .analysis.transfer import VLM_STYLE
from .config import load_config, split_list
from .data.synth import generate, task_dirs
from .errors import add_console_options
from .study import StudyPlan, add_plan_options, check_plan, plan_from_args, run_study

SCALES = {
    # n: synthetic training samples per task (a 15 % holdout of lam's clips, expression's and gaze's images selects,
    # docs/DATASETS.md "Splits"); steps: the cap of each single-task model (the joint model's is steps x 5, the sum
    # of the single-task caps); eval_every / patience: the plateau rule (an evaluation on the selection split every
    # eval_every steps, a stop after `patience` evaluations without a new best; the joint model evaluates every
    # eval_every x 5 steps). A patience of 6 evaluations (150 steps, half the cap): with 3, a noisy 60-image
    # selection split stopped the 2-layer expression model at step 150 on a peak from step 75 (0.38 on the report
    # split where a full run reaches 0.76; DESIGN-CHANGES 25). The full scale is sized for the 15-minute budget on
    # 2 cores (docs/DEMO.md).
    "quick": {
        "n": 32,
        "steps": 10,
        "eval_every": 5,
        "patience": 1,
        "plan": {"probe_layers": [-1], "probe_samples": 32, "gradconf_batches": 2, "probe_gaze_steps": 30},
    },
    "full": {
        "n": 400,
        "steps": 300,
        "eval_every": 25,
        "patience": 6,
        "plan": {"probe_layers": [-1, -6], "probe_samples": 100, "gradconf_batches": 16, "probe_gaze_steps": 100},
    },
}


# the VLM-style family's encoder learning rate, chosen on val between 2e-6 and 2e-5 on expression (single-task,
# 90 steps: accuracy 0.51 vs 0.72; benchmarks/lr_encoder.py, benchmarks/RESULTS.md "VLM-style baseline")
DEMO_LR_ENCODER = 2e-5


def demo_plan(scale: str) -> StudyPlan:
    return StudyPlan(budget="plateau", probe_pools=["box", "pair"], **SCALES[scale]["plan"])


def demo_config(preset: str, data_dir: Path, scale: dict, overrides: list[str]):
    """The preset on the synthetic benchmark at `scale` (its step cap and plateau rule), then the user's overrides."""
    dirs = task_dirs()
    roots = [f"data.tasks.{i}.root={data_dir / d}" for i, d in enumerate(dirs.values())]
    protocol = [
        f"train.steps={scale['steps']}",
        f"train.eval_every={scale['eval_every']}",
        f"train.early_stop_patience={scale['patience']}",
    ]
    config = load_config(preset, roots + protocol + list(overrides))
    if [td.task for td in config.data.tasks] != list(dirs):
        raise ValueError(f"the demo expects the five tasks in the order {list(dirs)}")
    return config


def ensure_data(data_dir: Path, n: int, seed: int) -> dict:
    """Generate the synthetic benchmark once per (n, seed)."""
    stamp = data_dir / "demo_stamp.json"
    want = {"n": n, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()).get("params") == want:
        return json.loads(stamp.read_text())["summary"]
    summary = generate(data_dir, n=n, seed=seed)
    stamp.write_text(json.dumps({"params": want, "summary": summary}, default=str))
    return summary


def parse_args(argv: list[str] | None = None):
    """The demo's options -> (args, StudyPlan): the study's options at the demo's scale."""
    p = add_console_options(argparse.ArgumentParser(prog="socialfusion demo", description=__doc__))
    p.add_argument("--out", default="runs/demo", help="output folder: data, runs, report.html (default runs/demo)")
    p.add_argument("--config", default="default", help="preset or YAML (default: the embedded default)")
    p.add_argument("--quick", action="store_true", help="a smaller run (under 3 minutes)")
    p.add_argument("--n", type=int, help="synthetic training samples per task")
    p.add_argument("--steps", type=int, help="the step cap of each single-task model (the joint model's: x 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic benchmark (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--with-baseline",
        action="store_true",
        help=f"also the VLM-style family (encoder trained at train.lr_encoder={DEMO_LR_ENCODER:g}, "
        "chosen on val) through the same protocol; slow (docs/DEMO.md)",
    )
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value, anywhere on the line")
    add_plan_options(p, demo_plan("full"))  # the study's options (--seeds, --baseline, --variant, ...)
    args = p.parse_intermixed_args(argv)
    plan = plan_from_args(args, demo_plan("quick" if args.quick else "full"))
    if args.with_baseline:
        plan.baselines.setdefault("vlm_style", [*VLM_STYLE, f"train.lr_encoder={DEMO_LR_ENCODER:g}"])
    return args, plan


def main(argv: list[str] | None = None) -> int:
    args, plan = parse_args(argv)
    scale = SCALES["quick" if args.quick else "full"]
    n = args.n or scale["n"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("== synthetic benchmark", flush=True)
    t0 = time.perf_counter()
    data_summary = ensure_data(out / "data", n, args.seed)
    timings = {"synthetic benchmark": round(time.perf_counter() - t0, 1)}
    print(f"   synthetic benchmark: {timings['synthetic benchmark']} s", flush=True)
    config = demo_config(args.config, out / "data", {**scale, "steps": args.steps or scale["steps"]}, args.overrides)
    check_plan(config, plan)
    res = run_study(
        config,
        out,
        plan,
        progress=not args.no_progress,
        data_summary=data_summary,
        timings=timings,
        data_key={"synthetic": {"n": n, "seed": args.seed}},
        stages=split_list(args.stages) or [],
    )
    if res.get("report"):
        print(res["report"]["summary_text"])
        print(f"report: {out / 'report.html'}  (total {res['timings']['total']} s)")
    return 0

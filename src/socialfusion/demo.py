"""`socialfusion demo`: the main job, offline on a CPU with the embedded default.

Synthetic social scenes in the five official layouts -> feature cache -> joint five-task model and the
single-task models (transfer) -> official metrics -> linear probes and gradient conflict -> runs/demo/report.html.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DATASET_DIRS = {"lam": "ego4d_lam", "expression": "affectnet", "gesture": "hagrid", "relation": "pisc", "gaze": "gazefollow_extended"}
SCALES = {
    # n: synthetic training samples per task; steps: optimisation steps of each single-task model (the joint
    # model gets steps x 5: the same number of its own batches per task, "equal-steps-per-task"). The full scale
    # is sized for the 15-minute budget on 2 cores: at n=160 the single-task models memorised their training set
    # (expression val at chance while its train loss fell); at n=400 each training sample is drawn about twice.
    "quick": {"n": 32, "steps": 10, "probe_layers": [-1], "probe_samples": 32, "gradconf_batches": 2, "probe_gaze_steps": 30},
    "full": {"n": 400, "steps": 90, "probe_layers": [-1, -6], "probe_samples": 100, "gradconf_batches": 16, "probe_gaze_steps": 100},
}


def demo_config(preset: str, data_dir: Path, steps: int, overrides: list[str]):
    from .config import load_config

    roots = [f"data.tasks.{i}.root={data_dir / DATASET_DIRS[t]}" for i, t in enumerate(DATASET_DIRS)]
    config = load_config(preset, roots + [f"train.steps={steps}"] + list(overrides))
    if [td.task for td in config.data.tasks] != list(DATASET_DIRS):
        raise ValueError(f"the demo expects the five tasks in the order {list(DATASET_DIRS)}")
    return config


def ensure_data(data_dir: Path, n: int, seed: int) -> dict:
    """Generate the synthetic benchmark once per (n, seed)."""
    from .data.synth import generate

    stamp = data_dir / "demo_stamp.json"
    want = {"n": n, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()).get("params") == want:
        return json.loads(stamp.read_text())["summary"]
    summary = generate(data_dir, n=n, seed=seed)
    stamp.write_text(json.dumps({"params": want, "summary": summary}, default=str))
    return summary


def main(argv: list[str] | None = None) -> int:
    from .errors import add_console_options

    p = add_console_options(argparse.ArgumentParser(prog="socialfusion demo", description=__doc__))
    p.add_argument("--out", default="runs/demo", help="output folder: data, runs, report.html (default runs/demo)")
    p.add_argument("--config", default="default", help="preset or YAML (default: the embedded default)")
    p.add_argument("--quick", action="store_true", help="a smaller run (under 3 minutes)")
    p.add_argument("--n", type=int, help="synthetic training samples per task")
    p.add_argument("--steps", type=int, help="training steps per model")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic benchmark (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value, anywhere on the line")
    args = p.parse_intermixed_args(argv)

    from .analysis.gradconf import run_gradconf
    from .analysis.probe import run_probe
    from .analysis.transfer import run_transfer
    from .models.checkpoint import load_model
    from .report import write_report

    scale = dict(SCALES["quick" if args.quick else "full"])
    n = args.n or scale["n"]
    steps = args.steps or scale["steps"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    timings: dict[str, float] = {}

    def timed(name):
        class _T:
            def __enter__(self):
                self.t = time.perf_counter()
                print(f"== {name}", flush=True)

            def __exit__(self, *exc):
                timings[name] = round(time.perf_counter() - self.t, 1)
                print(f"   {name}: {timings[name]} s", flush=True)

        return _T()

    with timed("synthetic benchmark"):
        data_summary = ensure_data(out / "data", n, args.seed)
    config = demo_config(args.config, out / "data", steps, args.overrides)
    with timed("transfer: single-task and joint training + evaluation"):
        transfer = run_transfer(config, out / "transfer", budget="equal-steps-per-task", baselines={}, progress=progress)
    joint_ckpt = Path(transfer["runs"]["socialfusion"]["joint"]["checkpoint"])
    model, _ = load_model(joint_ckpt)
    with timed("gradient conflict"):
        gradconf = run_gradconf(model, config, out / "gradconf", batches=scale["gradconf_batches"], progress=progress)
    with timed("linear probes"):
        probe = run_probe(config, out / "probe", encoders=None, layers=scale["probe_layers"], pools=["box", "pair"], progress=progress, max_samples=scale["probe_samples"], gaze_steps=scale["probe_gaze_steps"])
    with timed("report"):
        report = write_report(out, config=config, model=model, transfer=transfer, probe=probe, gradconf=gradconf, data_summary=data_summary, timings=timings)
    timings["total"] = round(sum(v for k, v in timings.items() if k != "total"), 1)
    print(report["summary_text"])
    print(f"report: {out / 'report.html'}  (total {timings['total']} s)")
    return 0

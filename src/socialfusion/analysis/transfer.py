"""`socialfusion transfer`: single-task vs joint multi-task training (the paper's positive/negative transfer).

For every model family (the configured model, plus any `--baseline NAME=override,...`, e.g. the VLM-style
baseline with a trainable encoder) it trains one single-task model per configured task and one joint model with a
comparable budget, evaluates each on the validation split with the official metrics (`evaluate_model`), and
writes transfer.json, transfer.md and transfer.png (Figure-1 style: per task, the relative change of the primary
metric joint vs single, green positive / red negative; one bar per family).

Budgets: `equal-total-steps` (default): every run, single or joint, gets train.steps optimiser steps.
`equal-steps-per-task`: each single-task run gets train.steps, the joint run train.steps x number of tasks (so it
sees each task about as often as its single-task model did, under a uniform sampler).

Runs live in OUT/<family>/single-<task>/ and OUT/<family>/joint/ (each a normal training run directory with its
checkpoints and eval/results.json); the last checkpoint of each run is evaluated (same budget for all).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

from ..config import apply_overrides, select_tasks
from . import fmt, write_json

BUDGETS = ("equal-total-steps", "equal-steps-per-task")
MAIN_FAMILY = "socialfusion"


# ------------------------------------------------------------------------------------------- pure helpers
def parse_baseline(text: str) -> tuple[str, list[str]]:
    """'NAME=key.a=v,key.b=w' -> ('NAME', ['key.a=v', 'key.b=w']); commas inside values (lists) are kept."""
    if "=" not in text:
        raise ValueError(f"--baseline {text!r} must look like NAME=key.sub=value[,key.sub=value...]")
    name, rest = text.split("=", 1)
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ValueError(f"--baseline name {name!r}: use letters, digits, '_', '-', '.'")
    overrides = [o.strip() for o in re.split(r",(?=\s*[A-Za-z_][\w.\-]*=)", rest) if o.strip()]
    if not overrides or any("=" not in o for o in overrides):
        raise ValueError(f"--baseline {text!r}: expected key.sub=value overrides after the name")
    return name, overrides


def normalise_baselines(baselines) -> dict[str, list[str]]:
    """None, a mapping name -> overrides, or a list of 'NAME=override,...' strings -> {name: [overrides]}."""
    if not baselines:
        return {}
    if isinstance(baselines, dict):
        out = {str(k): ([v] if isinstance(v, str) else list(v)) for k, v in baselines.items()}
    else:
        out = {}
        for text in baselines:
            name, overrides = parse_baseline(text)
            if name in out:
                raise ValueError(f"--baseline {name!r} given twice")
            out[name] = overrides
    if MAIN_FAMILY in out:
        raise ValueError(f"{MAIN_FAMILY!r} names the configured model; pick another baseline name")
    return out


def budget_steps(steps: int, n_tasks: int, budget: str) -> dict[str, int]:
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}")
    return {"single": steps, "joint": steps * n_tasks if budget == "equal-steps-per-task" else steps}


def transfer_row(metric: str, single: dict | None, joint: dict | None) -> dict:
    """Primary-metric comparison of one task (all primary metrics are higher-is-better)."""
    s = None if not single else single.get(metric)
    j = None if not joint else joint.get(metric)
    ok = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
    delta = j - s if ok(s) and ok(j) else None
    rel = delta / abs(s) if delta is not None and s != 0 else None
    sign = None if delta is None else "positive" if delta > 0 else "negative" if delta < 0 else "none"
    return {"metric": metric, "single": s, "joint": j, "delta": delta, "relative": rel, "transfer": sign}


# ------------------------------------------------------------------------------------------- runs
def _train_and_evaluate(config, run_dir: Path, progress: bool, device: str, resume: bool) -> dict:
    from ..config import dump_yaml
    from ..eval.evaluate import evaluate_model
    from ..models.checkpoint import load_model
    from ..runtime import resolve_device
    from ..train.loop import train

    results_path = run_dir / "eval" / "results.json"
    cfg_path = run_dir / "config.yaml"
    if resume and results_path.exists() and cfg_path.exists() and cfg_path.read_text() == dump_yaml(config):
        return json.loads(results_path.read_text())["metrics"]
    train(config, run_dir, resume=resume, progress=progress, device=device)
    model, _ = load_model(run_dir / "checkpoints" / "last")
    dev = resolve_device(device)
    model.to(dev)
    results = evaluate_model(model, config, run_dir / "eval", split="val", device=dev, progress=progress)
    return results["metrics"]


def run_family(config, out_dir: Path, budget: str, progress: bool = True, device: str = "auto", resume: bool = False) -> dict:
    """Single-task runs for every configured task and one joint run of one model family."""
    from ..tasks import tasks_from_config

    tasks = [td.task for td in config.data.tasks]
    steps = budget_steps(config.train.steps, len(tasks), budget)
    task_defs = tasks_from_config(config)
    plan = [(f"single-{t}", apply_overrides(select_tasks(config, [t]), [f"train.steps={steps['single']}"])) for t in tasks]
    plan.append(("joint", apply_overrides(config, [f"train.steps={steps['joint']}"])))
    runs = {}
    for name, cfg in plan:
        run_dir = out_dir / name
        t0 = time.perf_counter()
        metrics = _train_and_evaluate(cfg, run_dir, progress, device, resume)
        runs[name] = {"dir": str(run_dir), "checkpoint": str(run_dir / "checkpoints" / "last"), "steps": cfg.train.steps,
                      "metrics": metrics, "seconds": time.perf_counter() - t0}
    single = {t: runs[f"single-{t}"]["metrics"].get(t) for t in tasks}
    joint = {t: runs["joint"]["metrics"].get(t) for t in tasks}
    rows = {t: transfer_row(task_defs[t].primary_metric, single[t], joint[t]) for t in tasks}
    rels = [r["relative"] for r in rows.values() if r["relative"] is not None]
    return {
        "steps": steps,
        "tasks": rows,
        "single_metrics": single,
        "joint_metrics": joint,
        "mean_relative": sum(rels) / len(rels) if rels else None,
        "n_positive": sum(r["transfer"] == "positive" for r in rows.values()),
        "n_negative": sum(r["transfer"] == "negative" for r in rows.values()),
        "runs": runs,
    }


def run_transfer(config, out_dir, budget: str = "equal-total-steps", baselines=None, progress: bool = True, device: str = "auto", resume: bool = False) -> dict:
    """Train and evaluate every family's single-task and joint models; write transfer.json/.md/.png; return the result.

    `baselines`: None, {name: [overrides]} or ['NAME=override,override', ...]; each is applied to `config` to make
    a second model family (e.g. {'vlm_style': ['model.trainable.encoder=full', 'train.feature_cache=off']}).
    With `resume`, runs whose directory already holds the same config and an evaluation are reused.
    """
    from .plots import transfer_bars

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget_steps(config.train.steps, 1, budget)  # validate early
    families = {MAIN_FAMILY: (config, [])}
    for name, overrides in normalise_baselines(baselines).items():
        families[name] = (apply_overrides(config, overrides), overrides)
    tasks = [td.task for td in config.data.tasks]
    t0 = time.perf_counter()
    result = {"config": config.name, "budget": budget, "split": "val", "tasks": tasks, "families": {}, "runs": {}}
    for name, (cfg, overrides) in families.items():
        if progress:
            print(f"[transfer] family {name}: {len(tasks)} single-task runs + 1 joint run", file=sys.stderr)
        fam = run_family(cfg, out_dir / name, budget, progress, device, resume)
        result["runs"][name] = fam.pop("runs")
        result["families"][name] = {"overrides": overrides, **fam}
    result["seconds"] = time.perf_counter() - t0
    transfer_bars(tasks, {n: {t: f["tasks"][t]["relative"] for t in tasks} for n, f in result["families"].items()}, out_dir / "transfer.png",
                  title=f"Transfer (joint vs single-task, {budget}, {result['split']} split)")
    result["figures"] = [str(out_dir / "transfer.png")]
    result["markdown"] = main_table(result)
    write_json(result, out_dir / "transfer.json")
    (out_dir / "transfer.md").write_text(markdown(result))
    return result


def main_table(result: dict) -> str:
    """The per-task transfer table alone (markdown), for embedding in reports."""
    lines = ["| family | task | metric | single-task | multi-task | Δ abs | Δ rel | transfer |", "|---|---|---|---|---|---|---|---|"]
    for name, fam in result["families"].items():
        for task, r in fam["tasks"].items():
            rel = "-" if r["relative"] is None else f"{100 * r['relative']:+.1f}%"
            mark = {"positive": "positive ✅", "negative": "negative ❌", "none": "none"}.get(r["transfer"], "n/a")
            delta = "-" if r["delta"] is None else f"{r['delta']:+.4f}"
            lines.append(f"| {name} | {task} | {r['metric']} | {fmt(r['single'])} | {fmt(r['joint'])} | {delta} | {rel} | {mark} |")
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    lines = [
        "# Transfer: joint multi-task vs single-task training",
        "",
        f"Config `{result['config']}`, budget `{result['budget']}`, metrics on the {result['split']} split (official protocols). "
        "Δ = multi-task − single-task on each task's primary metric (higher is better); relative Δ = Δ / |single-task|.",
        "",
        main_table(result).rstrip("\n"),
    ]
    lines += ["", "| family | steps (single / joint) | positive | negative | mean relative Δ | overrides |", "|---|---|---|---|---|---|"]
    for name, fam in result["families"].items():
        mean = "-" if fam["mean_relative"] is None else f"{100 * fam['mean_relative']:+.1f}%"
        ov = ", ".join(f"`{o}`" for o in fam["overrides"]) or "(the configured model)"
        lines.append(f"| {name} | {fam['steps']['single']} / {fam['steps']['joint']} | {fam['n_positive']} | {fam['n_negative']} | {mean} | {ov} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="socialfusion transfer", description="Single-task vs joint training: the transfer table and figure.")
    p.add_argument("config", help="preset name (tiny, default, paper) or YAML file")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.add_argument("--out", required=True)
    p.add_argument("--budget", default="equal-total-steps", choices=BUDGETS)
    p.add_argument("--baseline", nargs="+", action="extend", default=[], metavar="NAME=OVERRIDE[,OVERRIDE...]",
                   help="another model family through the same protocol, e.g. vlm_style=model.trainable.encoder=full,train.feature_cache=off")
    p.add_argument("--tasks", help="comma-separated subset of the config's tasks")
    p.add_argument("--resume", action="store_true", help="reuse finished runs under --out (same config) and resume interrupted ones")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    from ..config import ConfigError
    from ..config import load_config

    try:
        config = load_config(args.config, args.overrides)
        if args.tasks:
            config = select_tasks(config, args.tasks.split(","))
        baselines = normalise_baselines(args.baseline)
        for overrides in baselines.values():
            apply_overrides(config, overrides)  # fail before any training
    except (ConfigError, ValueError) as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    run_transfer(config, args.out, budget=args.budget, baselines=baselines, progress=not args.no_progress, device=args.device, resume=args.resume)
    print((Path(args.out) / "transfer.md").read_text())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

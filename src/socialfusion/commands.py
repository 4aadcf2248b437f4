"""The model verbs: train, eval, plan, cache-features, merge-lora (each `main_<verb>(argv)`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="preset name (tiny, default, paper) or YAML file")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")


def main_train(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="socialfusion train", description="Train SocialFusion on one or several tasks.")
    _config_args(p)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last if it exists")
    p.add_argument("--tasks", help="comma-separated subset of the config's tasks (single-task training)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    from .config import ConfigError, load_config, select_tasks

    try:
        config = load_config(args.config, args.overrides)
        if args.tasks:
            config = select_tasks(config, args.tasks.split(","))
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    from .train.loop import train

    summary = train(config, args.out, resume=args.resume, progress=not args.no_progress, device=args.device)
    print(json.dumps({k: v for k, v in summary.items() if k != "last_eval"}, default=float))
    return 0


def main_eval(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="socialfusion eval", description="Evaluate a checkpoint with the official metrics.")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split", default="val", choices=["val", "test"], help="which configured split")
    p.add_argument("--tasks", help="comma-separated subset")
    p.add_argument("--data", nargs="*", default=[], help="data overrides, e.g. data.tasks.0.root=/path")
    p.add_argument("--limit", type=int, help="at most N samples per task")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    from .eval.evaluate import evaluate_checkpoint

    results = evaluate_checkpoint(args.ckpt, args.out, split=args.split, tasks=args.tasks.split(",") if args.tasks else None, overrides=args.data, limit=args.limit, device=args.device)
    print((Path(args.out) / "results.md").read_text())
    return 0 if results else 1


def main_plan(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="socialfusion plan", description="Parameters, tokens, memory and FLOPs of a config, on the meta device.")
    _config_args(p)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    from .config import load_config
    from .plan import estimate, format_plan

    plan = estimate(load_config(args.config, args.overrides), batch_size=args.batch_size)
    print(json.dumps(plan, indent=2) if args.json else format_plan(plan))
    return 0


def main_cache_features(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="socialfusion cache-features", description="Compute the frozen encoder's features for every configured split.")
    _config_args(p)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    from .config import load_config
    from .data.pipeline import build_task_datasets
    from .data.skips import SkipReport
    from .features.cache import FeatureCache
    from .features.inputs import default_cache_dir
    from .tasks import tasks_from_config
    from .models.encoder import VisionEncoder
    from .runtime import resolve_device

    config = load_config(args.config, args.overrides)
    encoder = VisionEncoder(config.model.encoder).to(resolve_device(args.device)).eval()
    cache = FeatureCache(default_cache_dir(config), encoder)
    report = SkipReport(config.data.on_bad_sample)
    tasks = tasks_from_config(config)
    for which in ("train", "val", "test"):
        for ds in build_task_datasets(config, tasks, which, cache.input_fn(), report).values():
            cache.warm(ds.samples, report, desc=f"{ds.task.name}/{which}")
    print(json.dumps({"cache_dir": str(cache.dir), **cache.stats, "skipped": report.total}))
    if report.total:
        print(report.summary())
    return 0


def main_merge_lora(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="socialfusion merge-lora", description="Merge the LoRA adapter into the LLM and save it as a standalone HF model.")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from .models.checkpoint import load_model
    from .models.merge import merge_lora

    model, _ = load_model(args.ckpt)
    path = merge_lora(model, args.out)
    print(f"merged LLM written to {path}")
    return 0


def main(argv: list[str]) -> int:  # pragma: no cover - the CLI dispatches to main_<verb>
    raise SystemExit("use `socialfusion train|eval|plan|cache-features|merge-lora`")

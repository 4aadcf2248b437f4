"""The model verbs: train, eval, plan, cache-features, merge-lora (each `main_<verb>(argv)`).

One grammar for every verb that takes a config: `key.sub=value` overrides anywhere on the line (argparse's
intermixed parsing). Everything a user can get wrong (config keys, task names, data roots, checkpoint paths) is
checked before a model is built, and raised as a `UserError` for the dispatcher (`socialfusion.cli`) to print.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from .config import ConfigError, apply_overrides, load_config, split_list
from .data.pipeline import build_task_datasets, narrow_to_tasks
from .data.skips import SkipReport
from .errors import add_console_options
from .eval.evaluate import evaluate_checkpoint
from .features.cache import FeatureCache
from .features.inputs import default_cache_dir
from .models.checkpoint import load_model, read_checkpoint_config
from .models.encoder import VisionEncoder
from .models.merge import merge_lora
from .plan import estimate, format_plan
from .runtime import resolve_device
from .tasks import tasks_from_config
from .train.distributed import finish_process
from .train.loop import train

OVERRIDES_HELP = (
    "config overrides key.sub=value, anywhere on the line (tasks by index or name: data.tasks.expression.root=/data)"
)


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return add_console_options(argparse.ArgumentParser(prog=f"socialfusion {prog}", description=description))


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="preset name (tiny, default, paper) or YAML file")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)


def _device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (the best available)")


def _progress_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bars (e.g. for log files)")


def _limit_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-samples", type=int, metavar="N", help="at most N samples per task (and split)")
    p.add_argument("--limit", type=int, dest="max_samples", help=argparse.SUPPRESS)  # its former name


def _tasks_arg(p: argparse.ArgumentParser, what: str = "the config's tasks") -> None:
    p.add_argument("--tasks", help=f"comma-separated subset of {what}, e.g. lam,gaze")


def _load(args, data: bool = True):
    """The config of `args.config` with `args.overrides` and `--tasks` applied and, for a verb that reads `data`,
    the kept tasks' data roots checked (ConfigError / DataError on any mistake)."""
    if "=" in args.config and not Path(args.config).exists():
        raise ConfigError(
            f"the first argument is the config (a preset or YAML file), got the override {args.config!r}",
            hint="put the preset first, e.g. `socialfusion train default key.sub=value ...`",
        )
    return narrow_to_tasks(
        load_config(args.config, args.overrides), split_list(getattr(args, "tasks", None)), check_roots=data
    )


def main_train(argv: list[str]) -> int:
    p = _parser("train", "Train SocialFusion on one or several tasks.")
    _config_args(p)
    p.add_argument("--out", required=True, help="run directory (config, log, checkpoints/last and checkpoints/best)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoints/last if it exists")
    _tasks_arg(p, "the config's tasks (single-task training)")
    p.add_argument(
        "--report-to",
        choices=["tensorboard", "none"],
        help="besides log.jsonl: TensorBoard event files in <out>/tensorboard (the config's train.report_to)",
    )
    _device_arg(p)
    _progress_arg(p)
    args = p.parse_intermixed_args(argv)
    if args.report_to:
        args.overrides.append(f"train.report_to={args.report_to}")
    config = _load(args)
    summary = train(config, args.out, resume=args.resume, progress=not args.no_progress, device=args.device)
    print(train_summary(summary))
    return finish_process(0)  # under torchrun: leaves the process group and ends the process cleanly


def train_summary(summary: dict) -> str:
    """The three lines a training run ends with: its checkpoint, its best evaluation, its log (absolute paths)."""
    out = Path(os.path.abspath(summary["out_dir"]))
    lines = [f"checkpoint: {out / 'checkpoints' / 'last'} (step {summary['step']})"]
    best = summary.get("best")
    if best is None:
        lines.append("best: none (no evaluation ran; set train.eval_every to evaluate during training)")
    else:
        lines.append(f"best: mean primary metric {best:.4f} on val, {out / 'checkpoints' / 'best'}")
    skipped = (summary.get("skips") or {}).get("total", 0)
    board = f"; TensorBoard: tensorboard --logdir {out / 'tensorboard'}" if (out / "tensorboard").is_dir() else ""
    lines.append(
        f"report: {out / 'log.jsonl'} (loss, evaluations{f', {skipped} skipped records' if skipped else ''}){board}; "
        f"evaluate with `socialfusion eval --ckpt {out / 'checkpoints' / 'last'} --out {out / 'eval'}`"
    )
    return "\n".join(lines)


def main_eval(argv: list[str]) -> int:
    p = _parser("eval", "Evaluate a checkpoint with the official metrics.")
    p.add_argument("--ckpt", required=True, help="checkpoint directory, e.g. RUN/checkpoints/last")
    p.add_argument("--out", required=True, help="output folder (results.json, results.md, per-sample predictions)")
    p.add_argument("--split", default="val", choices=["val", "test"], help="which configured split")
    _tasks_arg(p, "the checkpoint's tasks")
    p.add_argument("overrides", nargs="*", help=OVERRIDES_HELP + ", applied to the checkpoint's config")
    p.add_argument("--data", nargs="*", default=[], help=argparse.SUPPRESS)  # its former spelling of the overrides
    _limit_arg(p)
    _device_arg(p)
    _progress_arg(p)
    args = p.parse_intermixed_args(argv)
    overrides = [*args.overrides, *args.data]
    config, _ = read_checkpoint_config(args.ckpt)  # the checks below run before the model is built
    tasks = split_list(args.tasks)
    narrow_to_tasks(apply_overrides(config, overrides), tasks)
    results = evaluate_checkpoint(
        args.ckpt,
        args.out,
        split=args.split,
        tasks=tasks,
        overrides=overrides,
        limit=args.max_samples,
        device=args.device,
    )
    print((Path(args.out) / "results.md").read_text())
    return 0 if results else 1


def main_plan(argv: list[str]) -> int:
    p = _parser("plan", "Parameters, tokens, memory and FLOPs of a config, on the meta device.")
    _config_args(p)
    p.add_argument("--batch-size", type=int, help="per-device batch size (default: the config's train.batch_size)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_intermixed_args(argv)
    plan = estimate(_load(args, data=False), batch_size=args.batch_size)
    print(json.dumps(plan, indent=2, allow_nan=False) if args.json else format_plan(plan))
    return 0


def main_cache_features(argv: list[str]) -> int:
    p = _parser("cache-features", "Compute the frozen encoder's features for every configured split.")
    _config_args(p)
    _tasks_arg(p)
    _device_arg(p)
    _progress_arg(p)
    args = p.parse_intermixed_args(argv)
    config = _load(args)
    if config.model.type != "socialfusion":
        raise ConfigError(
            f"cache-features caches SocialFusion's frozen encoder; {config.name} is a {config.model.type} model"
        )
    encoder = VisionEncoder(config.model.encoder).to(resolve_device(args.device)).eval()
    cache = FeatureCache(default_cache_dir(config), encoder)
    report = SkipReport(config.data.on_bad_sample)
    tasks = tasks_from_config(config)
    for which in ("train", "val", "test"):
        for ds in build_task_datasets(config, tasks, which, cache.input_fn(), report).values():
            cache.warm(ds.samples, report, desc=f"{ds.task.name}/{which}", progress=not args.no_progress)
    print(json.dumps({"cache_dir": str(cache.dir), **cache.stats, "skipped": report.total}, allow_nan=False))
    if report.total:
        print(report.summary())
    return 0


def main_merge_lora(argv: list[str]) -> int:
    p = _parser("merge-lora", "Merge the LoRA adapter into the LLM and save it as a standalone HF model.")
    p.add_argument("--ckpt", required=True, help="checkpoint directory, e.g. RUN/checkpoints/last")
    p.add_argument("--out", required=True, help="output folder for the merged Hugging Face model")
    args = p.parse_args(argv)
    model, _ = load_model(args.ckpt)
    path = merge_lora(model, args.out)
    print(f"merged LLM written to {path}")
    return 0


def main(argv: list[str]) -> int:  # pragma: no cover - the CLI dispatches to main_<verb>
    raise SystemExit("use `socialfusion train|eval|plan|cache-features|merge-lora`")

"""`socialfusion eval`: a checkpoint on a configured split -> results.json, results.md, per-sample JSONL."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from ..config import apply_overrides
from ..core.intervals import RESAMPLES, SEED, add_intervals, interval_info
from ..core.results import EvalResults
from ..data.pipeline import batch_loader, build_task_datasets, manifest
from ..data.skips import SkipReport
from ..features.inputs import sample_inputs
from ..models.checkpoint import load_model
from ..runtime import device_for_rank, init_distributed, resolve_device, versions
from .runner import gather_predictions, markdown_table, predict, score, write_predictions


def _limited(config, limit):
    """A copy, so that the caller's config (often the training run's) keeps its own sample limits."""
    config = copy.deepcopy(config)
    if limit:
        for td in config.data.tasks:
            td.max_eval_samples = limit
    return config


def _split_predictions(model, ds, train_cfg, device, rank, world, progress, loader) -> dict:
    """Each rank predicts its shard of the split; gathered so that every rank scores the whole split."""
    return gather_predictions(
        predict(model, ds, train_cfg.eval_batch_size, device, train_cfg.precision, rank, world, progress, loader=loader)
    )


def _write_task_files(name: str, task, pred: dict, metrics, out_dir: Path) -> dict[str, str]:
    """Per-sample JSONL, plus the submission file of a task whose split has no labels to score (metrics None)."""
    files = {name: str(write_predictions(task, pred, out_dir))}
    submission = task.submission(pred["samples"], pred["predictions"]) if metrics is None else None
    if submission is not None:
        path = out_dir / f"{name}_submission.json"
        path.write_text(json.dumps(submission))
        files[f"{name}_submission"] = str(path)
    return files


def _write_results(out_dir: Path, results: dict, report: SkipReport, resamples: int, ci_seed: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    EvalResults.from_dict(results, "results.json").save(out_dir / "results.json")
    note = (
        f"\nIntervals: 95 % percentile bootstrap over the {results['split']} "
        f"samples ({resamples} resamples, seed {ci_seed}).\n"
        if resamples > 0
        else ""
    )
    (out_dir / "results.md").write_text(
        markdown_table(results["metrics"]) + note + ("\n" + report.summary() + "\n" if report.total else "")
    )


def evaluate_model(
    model,
    config,
    out_dir,
    split="val",
    tasks=None,
    limit=None,
    device=None,
    rank=0,
    world=1,
    progress=True,
    resamples: int = RESAMPLES,
    ci_seed: int = SEED,
    keep_resamplers: bool = False,
) -> dict:
    """Predict every configured task's `split`, score it with the official metrics, each with a 95 % percentile
    bootstrap interval over the split's samples (`metrics[task]["ci"]`, `resamples` resamples, 0: none), and
    write results.json / results.md / per-sample JSONL. With `keep_resamplers` the returned dict (not the files)
    also holds {"resamplers": {task: (sample ids, statistic)}} for paired comparisons with another model."""
    out_dir = Path(out_dir)
    device = device or model.device
    config = _limited(config, limit)
    report = SkipReport(config.data.on_bad_sample)
    cache, input_fn = sample_inputs(model, config)
    datasets = build_task_datasets(config, model.tasks, split, input_fn, report, task_names=tasks)
    metrics, files, resamplers = {}, {}, {}
    loader = batch_loader(datasets, config.train, device, in_process=cache is not None)  # workers decode the pixels
    for name, ds in datasets.items():
        pred = _split_predictions(model, ds, config.train, device, rank, world, progress, loader)
        metrics[name] = score(ds.task, pred)
        if rank == 0 and metrics[name] is not None and pred["samples"] and (resamples > 0 or keep_resamplers):
            statistic = ds.task.resampler(pred["samples"], pred["predictions"])
            if resamples > 0:
                add_intervals(metrics[name], statistic, len(pred["samples"]), resamples, ci_seed)
            if keep_resamplers:
                resamplers[name] = (list(pred["ids"]), statistic)
        if rank == 0:
            files.update(_write_task_files(name, ds.task, pred, metrics[name], out_dir))
    loader.close()
    results = {
        "split": split,
        "metrics": metrics,
        "intervals": interval_info(resamples, ci_seed) if resamples > 0 else None,
        "skips": report.to_dict(),
        "manifest": manifest({k: v.samples for k, v in datasets.items()}),
        "config": config.to_dict(),
        "versions": versions(),
        "files": files,
    }
    if rank == 0:
        _write_results(out_dir, results, report, resamples, ci_seed)
    if keep_resamplers:
        results["resamplers"] = resamplers
    return results


def evaluate_checkpoint(ckpt, out_dir, split="val", tasks=None, overrides=(), limit=None, device="auto") -> dict:
    rank, world = init_distributed()
    dev = resolve_device(device) if world == 1 else device_for_rank(device)
    model, config = load_model(ckpt)
    model.to(dev)
    if overrides:
        config = apply_overrides(config, overrides)
    return evaluate_model(model, config, out_dir, split, tasks, limit, dev, rank, world)

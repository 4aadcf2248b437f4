"""`socialfusion eval`: a checkpoint on a configured split -> results.json, results.md, per-sample JSONL."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from ..config import apply_overrides
from ..data.pipeline import build_task_datasets, manifest
from ..data.skips import SkipReport
from ..features.inputs import sample_inputs
from ..models.checkpoint import load_model
from ..runtime import device_for_rank, init_distributed, resolve_device, versions
from .runner import gather_predictions, markdown_table, predict, score, write_predictions


def evaluate_model(model, config, out_dir, split="val", tasks=None, limit=None, device=None, rank=0, world=1, progress=True) -> dict:
    out_dir = Path(out_dir)
    device = device or model.device
    config = copy.deepcopy(config)
    if limit:
        for td in config.data.tasks:
            td.max_eval_samples = limit
    report = SkipReport(config.data.on_bad_sample)
    _, input_fn = sample_inputs(model, config)
    datasets = build_task_datasets(config, model.tasks, split, input_fn, report, task_names=tasks)
    metrics, files = {}, {}
    for name, ds in datasets.items():
        pred = gather_predictions(predict(model, ds, config.train.eval_batch_size, device, config.train.precision, rank, world, progress))
        metrics[name] = score(ds.task, pred)
        if rank == 0:
            files[name] = str(write_predictions(ds.task, pred, out_dir))
            submission = ds.task.submission(pred["samples"], pred["predictions"]) if metrics[name] is None else None
            if submission is not None:
                path = out_dir / f"{name}_submission.json"
                path.write_text(json.dumps(submission))
                files[f"{name}_submission"] = str(path)
    results = {
        "split": split,
        "metrics": metrics,
        "skips": report.to_dict(),
        "manifest": manifest({k: v.samples for k, v in datasets.items()}),
        "config": config.to_dict(),
        "versions": versions(),
        "files": files,
    }
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=float))
        (out_dir / "results.md").write_text(markdown_table(metrics) + ("\n" + report.summary() + "\n" if report.total else ""))
    return results


def evaluate_checkpoint(ckpt, out_dir, split="val", tasks=None, overrides=(), limit=None, device="auto") -> dict:
    rank, world = init_distributed()
    dev = resolve_device(device) if world == 1 else device_for_rank(device)
    model, config = load_model(ckpt)
    model.to(dev)
    if overrides:
        config = apply_overrides(config, overrides)
    return evaluate_model(model, config, out_dir, split, tasks, limit, dev, rank, world)

"""`socialfusion train`: single-task and joint multi-task training with exact resume.

The run directory holds config.yaml, versions.json (+ git revision), manifest.json, log.jsonl, checkpoints/last
(trainable weights, PEFT adapter, training state) and checkpoints/best (by the mean primary validation metric).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config import Config, dump_yaml
from ..data.pipeline import build_task_datasets, collate, manifest, pixel_input
from ..data.skips import SkipReport
from ..eval.runner import gather_predictions, predict, score
from ..models.checkpoint import load_trainable, read_checkpoint_config, save_checkpoint, tasks_from_config
from ..models.factory import build_model
from ..models.trainability import format_parameter_table, parameter_table
from ..runtime import autocast, git_revision, resolve_device, versions
from . import distributed as dist_utils
from .optim import build_optimizer, build_scheduler
from .sampler import MultiTaskSampler


class TrainingError(RuntimeError):
    pass


def default_cache_dir(config: Config) -> Path:
    import os

    if config.train.cache_dir:
        return Path(config.train.cache_dir)
    base = os.environ.get("SOCIALFUSION_CACHE") or Path.home() / ".cache" / "socialfusion"
    return Path(base) / "features"


def input_function(model, config: Config, device):
    """Features from the cache when the encoder is frozen (and the cache is on), pixels otherwise."""
    if config.model.type == "socialfusion" and config.model.trainable.encoder == "frozen" and config.train.feature_cache == "auto":
        from ..features.cache import FeatureCache

        return FeatureCache(default_cache_dir(config), model.encoder)
    return None


def fit_input_norm(model, train_sets: dict, config: Config, device, images_per_task: int = 256) -> int:
    """Measure the connector's input statistics (`connector.input_norm: standardize`) on up to `images_per_task`
    training samples of each task, drawn with the run's seed, so every process of a distributed run measures the
    same numbers. Returns the number of feature tokens measured (0 when the connector does not standardise)."""
    from ..models.connector import Standardize

    norm = getattr(getattr(model, "connector", None), "norm", None)
    if not isinstance(norm, Standardize):
        return 0
    g = torch.Generator().manual_seed(config.train.seed)

    def features():
        for ds in train_sets.values():
            chosen = torch.randperm(len(ds), generator=g)[:images_per_task].tolist()
            for start in range(0, len(chosen), config.train.eval_batch_size):
                batch = collate([ds[i] for i in chosen[start : start + config.train.eval_batch_size]], ds.task, sigma=config.model.gaze.sigma)
                if batch is not None:
                    yield batch["features"] if "features" in batch else model.encode(batch["pixel_values"].to(device))

    return norm.fit(features())


def evaluate_all(model, datasets, config: Config, device, rank: int, world: int, progress: bool = True) -> dict:
    metrics = {}
    for name, ds in datasets.items():
        pred = gather_predictions(predict(model, ds, config.train.eval_batch_size, device, config.train.precision, rank, world, progress))
        metrics[name] = score(ds.task, pred)
    return metrics


def mean_primary(metrics: dict, tasks: dict) -> float:
    values = [m[tasks[name].primary_metric] for name, m in metrics.items() if m and tasks[name].primary_metric in m]
    return float(sum(values) / len(values)) if values else float("nan")


def _training_state(step, optimizer, scheduler, best, bad_evals) -> dict:
    return {
        "step": torch.tensor(step),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "best": torch.tensor(best, dtype=torch.float64),
        "bad_evals": torch.tensor(bad_evals),
        "torch_rng": torch.get_rng_state(),
    }


def train(config: Config, out_dir: str | Path, resume: bool = False, progress: bool = True, device: str = "auto", stop_after: int | None = None, return_model: bool = False) -> dict:
    """Train; returns a summary (with the trained model under "model" when `return_model`).

    `stop_after` ends this call after that many steps, as if the process had been stopped there.
    """
    out_dir = Path(out_dir)
    rank, world = dist_utils.init()
    dev = resolve_device(device) if world == 1 else dist_utils.device_for_rank(device)
    last = out_dir / "checkpoints" / "last"
    if resume and (last / "COMPLETE").exists():
        saved, _ = read_checkpoint_config(last)
        if saved.model != config.model:
            raise TrainingError(f"{last}: the checkpoint's model config differs from this run's; resume with the same config")
    tasks = tasks_from_config(config)
    model = build_model(config.model, tasks=tasks).to(dev)
    if rank == 0:
        print(format_parameter_table(model.parameter_table() if hasattr(model, "parameter_table") else parameter_table(model)))
    report = SkipReport(policy=config.data.on_bad_sample)
    cache = input_function(model, config, dev)
    input_fn = cache.input_fn() if cache is not None else pixel_input(model.encoder)
    train_sets = build_task_datasets(config, tasks, "train", input_fn, report)
    val_sets = build_task_datasets(config, tasks, "val", input_fn, report) if config.train.eval_every else {}
    if cache is not None:
        for ds in list(train_sets.values()) + list(val_sets.values()):
            if rank == 0 or world == 1:
                cache.warm(ds.samples, report, desc=f"caching features ({ds.task.name})", progress=progress)
        dist_utils.barrier()
    sizes = {k: len(v) for k, v in train_sets.items()}
    weights = {td.task: td.loss_weight for td in config.data.tasks}
    sampler = MultiTaskSampler(sizes, config.train.batch_size, config.data.sampler, config.data.temperature, config.train.seed)
    optimizer = build_optimizer(model, config.train)
    scheduler = build_scheduler(optimizer, config.train)
    step, best, bad_evals = 0, -math.inf, 0
    if resume and (last / "COMPLETE").exists():
        load_trainable(model, last)
        state = torch.load(last / "training_state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, best, bad_evals = int(state["step"]), float(state["best"]), int(state["bad_evals"])
        torch.set_rng_state(state["torch_rng"])
        if rank == 0:
            print(f"resumed from {last} at step {step}")
    else:
        measured = fit_input_norm(model, train_sets, config, dev)
        if measured and rank == 0:
            print(f"connector input statistics measured on {measured} feature tokens")
        torch.manual_seed(config.train.seed)
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(dump_yaml(config))
        (out_dir / "versions.json").write_text(json.dumps({**versions(), "git": git_revision()}, indent=2))
        splits = {f"{k}/train": v.samples for k, v in train_sets.items()} | {f"{k}/val": v.samples for k, v in val_sets.items()}
        (out_dir / "manifest.json").write_text(json.dumps(manifest(splits), indent=2))
    log = open(out_dir / "log.jsonl", "a") if rank == 0 else None

    def save(path_name: str, extra: dict | None = None):
        if rank == 0:
            save_checkpoint(model, config, out_dir / "checkpoints" / path_name, extra=extra, training_state=_training_state(step, optimizer, scheduler, best, bad_evals))
        dist_utils.barrier()

    cfg = config.train
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not progress or rank != 0, dynamic_ncols=True)
    t0, seen, summary = time.perf_counter(), 0, {}
    model.train()
    try:
        while step < end:
            optimizer.zero_grad(set_to_none=True)
            step_loss, step_tokens, step_tasks = 0.0, 0, []
            for micro in range(cfg.grad_accum):
                task, idx = sampler.batch(step * cfg.grad_accum + micro, rank, world)
                ds = train_sets[task]
                batch = collate([ds[i] for i in idx], ds.task, sigma=config.model.gaze.sigma)
                if batch is None:
                    continue
                with autocast(dev, cfg.precision):
                    out = model(batch)
                loss = out["loss"] * weights[task] / cfg.grad_accum
                if not torch.isfinite(loss):
                    raise TrainingError(f"step {step}: loss is {loss.item()} on task {task!r}; stopped. The last good checkpoint is {last}")
                loss.backward()
                step_loss += loss.item()
                step_tokens += int(out["n_supervised"])
                step_tasks.append(task)
                seen += len(batch["ids"]) * world
            dist_utils.all_reduce_grads(model)
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            rate = seen / max(1e-9, time.perf_counter() - t0)
            bar.set_postfix(loss=f"{step_loss:.4f}", task=",".join(step_tasks), sps=f"{rate:.1f}")
            bar.update(1)
            if log and (step % cfg.log_every == 0 or step == end):
                log.write(json.dumps({"step": step, "loss": step_loss, "tasks": step_tasks, "n_supervised": step_tokens, "lr": scheduler.get_last_lr()[0], "samples_per_s": rate}) + "\n")
                log.flush()
            if cfg.eval_every and val_sets and (step % cfg.eval_every == 0 or step == cfg.steps):
                metrics = evaluate_all(model, val_sets, config, dev, rank, world, progress=False)
                value = mean_primary(metrics, tasks)
                model.train()
                if log:
                    log.write(json.dumps({"step": step, "eval": metrics, "mean_primary": value}, default=float) + "\n")
                    log.flush()
                summary["last_eval"] = metrics
                if value > best:
                    best, bad_evals = value, 0
                    save("best", extra={"step": step, "val_metrics": metrics, "mean_primary": value})
                else:
                    bad_evals += 1
                if cfg.early_stop_patience and bad_evals >= cfg.early_stop_patience:
                    if rank == 0:
                        print(f"early stop at step {step}: no improvement in {bad_evals} evaluations")
                    save("last")
                    break
            if (cfg.save_every and step % cfg.save_every == 0) or step == end:
                save("last")
    except BaseException:
        if log:
            log.close()
        raise
    finally:
        bar.close()
    if log:
        log.write(json.dumps({"skips": report.to_dict(), **({"cache": cache.stats} if cache else {})}) + "\n")
        log.close()
    if rank == 0 and report.total:
        print(report.summary())
    if return_model:
        summary["model"] = model
    summary.update(step=step, best=best, skips=report.to_dict(), out_dir=str(out_dir), samples_per_s=seen / max(1e-9, time.perf_counter() - t0))
    return summary

"""`socialfusion train`: single-task and joint multi-task training with exact resume.

The run directory holds config.yaml, versions.json (+ git revision), manifest.json, log.jsonl, checkpoints/last
(trainable weights, training state) and checkpoints/best (by the mean primary validation metric). One step is
`step.train_step`; this module draws its batches, logs, evaluates and checkpoints around it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config import Config, ConfigError, absolute_paths, dump_yaml
from ..data.pipeline import BatchLoader, batch_loader, build_task_datasets, manifest
from ..data.skips import SkipReport
from ..eval.metrics import mean_primary
from ..eval.runner import gather_predictions, predict, score
from ..features.inputs import distinct_images, sample_inputs
from ..models.checkpoint import load_trainable, read_checkpoint_config, save_checkpoint
from ..models.factory import build_model
from ..models.trainability import format_parameter_table
from ..runtime import git_revision, resolve_device, versions
from ..tasks import tasks_from_config
from . import distributed as dist_utils
from .optim import build_optimizer, build_scheduler
from .sampler import MultiTaskSampler
from .step import NonFiniteLoss, train_step
from .tracking import RunLog


class TrainingError(RuntimeError):
    pass


def fit_input_norm(model, loader: BatchLoader, config: Config, device, images_per_task: int = 256) -> int:
    """Let the model measure its input statistics (`TaskModel.fit_statistics`) on up to `images_per_task` training
    samples of each task (the datasets of `loader`, which builds the batches), drawn with the run's seed, so every
    process of a distributed run measures the same numbers. Returns the number of feature tokens measured (0 when
    the model has nothing to fit)."""
    g = torch.Generator().manual_seed(config.train.seed)
    size = config.train.eval_batch_size
    plan = []
    for name, ds in loader.datasets.items():
        chosen = torch.randperm(len(ds), generator=g)[:images_per_task].tolist()
        plan += [(name, chosen[start : start + size]) for start in range(0, len(chosen), size)]

    return model.fit_statistics(batch for batch in loader.batches(plan) if batch is not None)


def evaluate_all(model, datasets, config: Config, device, rank: int, world: int, progress: bool = True, loader: BatchLoader | None = None) -> dict:
    """The official metrics of every dataset; `loader` (holding `datasets`) builds the batches."""
    metrics = {}
    for name, ds in datasets.items():
        pred = gather_predictions(predict(model, ds, config.train.eval_batch_size, device, config.train.precision, rank, world, progress, loader=loader))
        metrics[name] = score(ds.task, pred)
    return metrics


def _training_state(step, optimizer_state: dict, scheduler, best, bad_evals) -> dict:
    return {
        "step": torch.tensor(step),
        "optimizer": optimizer_state,
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
    config = absolute_paths(config)  # the saved config (run folder, checkpoints) must work from any directory
    rank, world = dist_utils.init()
    dev = resolve_device(device) if world == 1 else dist_utils.device_for_rank(device)
    last = out_dir / "checkpoints" / "last"
    resuming = resume and (last / "COMPLETE").exists()
    if resuming:
        saved, _ = read_checkpoint_config(last)
        if saved.model != config.model:
            raise TrainingError(f"{last}: the checkpoint's model config differs from this run's; resume with the same config")
    tasks = tasks_from_config(config)
    model = build_model(config.model, tasks=tasks).to(dev)
    if rank == 0:
        print(format_parameter_table(model.parameter_table()))
    report = SkipReport(policy=config.data.on_bad_sample)
    # the samples first (their input function is set below): the cache decision counts their images instead of
    # reading every annotation file a second time
    train_sets = build_task_datasets(config, tasks, "train", None, report)
    val_sets = build_task_datasets(config, tasks, "val", None, report) if config.train.eval_every else {}
    images = {"train": distinct_images(train_sets.values()), "val": distinct_images(val_sets.values())}
    cache, input_fn = sample_inputs(model, config, training=True, announce=rank == 0, images=images)
    for ds in list(train_sets.values()) + list(val_sets.values()):
        ds.image_to_input = input_fn
    if cache is not None:
        for ds in list(train_sets.values()) + list(val_sets.values()):
            if rank == 0 or world == 1:
                cache.warm(ds.samples, report, desc=f"caching features ({ds.task.name})", progress=progress)
        dist_utils.barrier()
    # batches are built by DataLoader workers (train.num_workers) that persist for the run; cached features load in
    # this process (`batch_loader`)
    train_loader = batch_loader(train_sets, config.train, dev, in_process=cache is not None)
    val_loader = batch_loader(val_sets, config.train, dev, in_process=cache is not None) if val_sets else None
    weights = {td.task: td.loss_weight for td in config.data.tasks}
    sampler = MultiTaskSampler({k: len(v) for k, v in train_sets.items()}, config.train.batch_size, config.data.sampler, config.data.temperature, config.train.seed)
    if config.train.gradient_surgery != "none" and world > 1 and dist_utils.strategy(config) == "fsdp":
        raise ConfigError("train.gradient_surgery needs whole gradients: use train.distributed=ddp (FSDP keeps shards)")
    train_module, model = dist_utils.wrap(model, config, dev)  # DDP or FSDP across processes; `model` stays plain
    optimizer = build_optimizer(model, config.train)
    scheduler = build_scheduler(optimizer, config.train)
    step, best, bad_evals = 0, -math.inf, 0
    if resuming:
        step, best, bad_evals = _restore(model, optimizer, scheduler, last)
        if rank == 0:
            print(f"resumed from {last} at step {step}")
    else:
        measured = fit_input_norm(model, train_loader, config, dev)
        if measured and rank == 0:
            print(f"connector input statistics measured on {measured} feature tokens")
        torch.manual_seed(config.train.seed)
    run_manifest = _write_run_files(out_dir, config, train_sets, val_sets) if rank == 0 else {}
    # the model card's reference for each task: the primary metric of a model that ignores the image
    chance = {name: ds.task.chance(ds.samples) for name, ds in val_sets.items()}
    log = RunLog(out_dir, config.train.report_to) if rank == 0 else None

    def save(path_name: str, extra: dict | None = None):
        tensors, optimizer_state = dist_utils.trained_state(model), dist_utils.optimizer_state(model, optimizer)  # FSDP: every rank gathers
        if rank == 0:
            card = {"manifest": run_manifest, "step": step, "validation": summary.get("last_eval"), "validation_step": summary.get("last_eval_step"), "chance": chance}
            save_checkpoint(model, config, out_dir / "checkpoints" / path_name, extra=extra, training_state=_training_state(step, optimizer_state, scheduler, best, bad_evals), card=card, tensors=tensors)
        dist_utils.barrier()

    def write(record: dict):
        if log:
            log.write(record)

    cfg = config.train
    end = cfg.steps if stop_after is None else min(cfg.steps, step + stop_after)
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=not progress or rank != 0, dynamic_ncols=True)
    t0, seen, summary = time.perf_counter(), 0, {}
    model.train()
    # the micro-batches of steps step .. end - 1 as the sampler draws them (a resumed run starts at its step)
    batches = train_loader.batches(sampler.micro_batches(step, end, cfg.grad_accum, rank, world))
    try:
        while step < end:
            micro_batches = [next(batches) for _ in range(cfg.grad_accum)]
            try:
                # the surgery's projection order depends only on (seed, step), so a resumed run repeats it
                order = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step) if cfg.gradient_surgery != "none" else None
                result = train_step(train_module, micro_batches, optimizer, scheduler, weights, dev, cfg.precision, cfg.grad_clip, cfg.grad_accum,
                                    cfg.gradient_surgery, order)
            except NonFiniteLoss as err:
                raise TrainingError(f"step {step}: {err}; stopped. The last good checkpoint is {last}") from None
            step += 1
            seen += result.samples * world
            rate = seen / max(1e-9, time.perf_counter() - t0)
            bar.set_postfix(loss=f"{result.loss:.4f}", task=",".join(result.tasks), sps=f"{rate:.1f}")
            bar.update(1)
            if step % cfg.log_every == 0 or step == end:
                write({"step": step, "loss": result.loss, "tasks": result.tasks, "n_supervised": result.n_supervised, "lr": scheduler.get_last_lr()[0], "samples_per_s": rate})
            if cfg.eval_every and val_sets and (step % cfg.eval_every == 0 or step == cfg.steps):
                with dist_utils.unsharded(model):  # FSDP: gathered, so ranks may run different batch counts
                    metrics = evaluate_all(model, val_sets, config, dev, rank, world, progress=False, loader=val_loader)
                value = mean_primary(metrics, tasks)
                model.train()
                write({"step": step, "eval": metrics, "mean_primary": value})
                summary["last_eval"], summary["last_eval_step"] = metrics, step
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
    finally:
        bar.close()
        batches.close()
        for loader in (train_loader, val_loader):
            if loader is not None:
                loader.close()
        if log:
            log.write({"skips": report.to_dict(), **({"cache": cache.stats} if cache else {})})
            log.close()
    if rank == 0 and report.total:
        print(report.summary())
    if return_model:
        summary["model"] = model
    # best is None when no evaluation ran (-inf is not JSON)
    summary.update(step=step, best=best if math.isfinite(best) else None, skips=report.to_dict(), out_dir=str(out_dir), samples_per_s=seen / max(1e-9, time.perf_counter() - t0))
    return summary


def _restore(model, optimizer, scheduler, last: Path) -> tuple[int, float, int]:
    """Weights, optimizer, schedule and RNG from a checkpoint; returns (step, best, bad_evals)."""
    load_trainable(model, last)
    state = torch.load(last / "training_state.pt", weights_only=True)
    dist_utils.load_optimizer_state(model, optimizer, state["optimizer"], str(last / "training_state.pt"))
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), float(state["best"]), int(state["bad_evals"])


def _write_run_files(out_dir: Path, config: Config, train_sets: dict, val_sets: dict) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(dump_yaml(config))
    (out_dir / "versions.json").write_text(json.dumps({**versions(), "git": git_revision()}, indent=2))
    splits = {f"{k}/train": v.samples for k, v in train_sets.items()} | {f"{k}/val": v.samples for k, v in val_sets.items()}
    run_manifest = manifest(splits)
    (out_dir / "manifest.json").write_text(json.dumps(run_manifest, indent=2))
    return run_manifest

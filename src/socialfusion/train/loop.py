"""`socialfusion train`: single-task and joint multi-task training with exact resume.

The run directory holds config.yaml, versions.json (+ git revision), manifest.json, log.jsonl, checkpoints/last
(trainable weights, training state), checkpoints/best (by the mean primary metric on the selection split,
`val_split`) and fit.json (the selection curve, the best step and why training stopped). With
`train.early_stop_patience` P a run stops once P evaluations in a row have not improved on the best (a plateau),
else at `train.steps` (the cap); a stopped run stays stopped when resumed. One step is `step.train_step`; this
module draws its batches, logs, evaluates and checkpoints around it.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..config import Config, ConfigError, absolute_paths, dump_yaml
from ..core.metrics import mean_primary
from ..data.pipeline import BatchLoader, batch_loader, build_task_datasets, manifest
from ..data.skips import SkipReport
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


def evaluate_all(
    model,
    datasets,
    config: Config,
    device,
    rank: int,
    world: int,
    progress: bool = True,
    loader: BatchLoader | None = None,
) -> dict:
    """The official metrics of every dataset; `loader` (holding `datasets`) builds the batches."""
    metrics = {}
    for name, ds in datasets.items():
        pred = gather_predictions(
            predict(
                model,
                ds,
                config.train.eval_batch_size,
                device,
                config.train.precision,
                rank,
                world,
                progress,
                loader=loader,
            )
        )
        metrics[name] = score(ds.task, pred)
    return metrics


@dataclass
class Selection:
    """The early-stopping state: the best mean primary metric on the selection split, its step, the evaluations
    since it last improved, and whether the run has stopped on a plateau. Saved with every checkpoint, so a
    resumed run stops where the uninterrupted one would."""

    best: float = -math.inf
    best_step: int = 0
    bad_evals: int = 0
    plateaued: bool = False

    def update(self, step: int, value: float, patience: int) -> bool:
        """Record an evaluation; True when it is the new best."""
        improved = value > self.best
        if improved:
            self.best, self.best_step, self.bad_evals = value, step, 0
        else:
            self.bad_evals += 1
        self.plateaued = bool(patience) and self.bad_evals >= patience
        return improved

    def to_tensors(self) -> dict:
        return {
            "best": torch.tensor(self.best, dtype=torch.float64),
            "best_step": torch.tensor(self.best_step),
            "bad_evals": torch.tensor(self.bad_evals),
            "plateaued": torch.tensor(self.plateaued),
        }

    @classmethod
    def from_tensors(cls, state: dict) -> Selection:
        # checkpoints written before best_step/plateaued existed resume as "not stopped, best step unknown"
        return cls(
            float(state["best"]),
            int(state.get("best_step", torch.tensor(0))),
            int(state["bad_evals"]),
            bool(state.get("plateaued", torch.tensor(False))),
        )


def _training_state(step, optimizer_state: dict, scheduler, selection: Selection) -> dict:
    return {
        "step": torch.tensor(step),
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(),
        **selection.to_tensors(),
        "torch_rng": torch.get_rng_state(),
    }


@dataclass
class _Data:
    """The run's datasets, the loaders that build their batches (DataLoader workers that persist for the run;
    cached features load in this process), the feature cache, the skipped samples, the loss weights and the task
    sampler."""

    train_sets: dict
    val_sets: dict
    train_loader: BatchLoader
    val_loader: BatchLoader | None
    cache: object | None
    report: SkipReport
    weights: dict
    sampler: MultiTaskSampler


@dataclass
class _Run:
    """What the steps of one `train` call share (setup builds it; fit, evaluate and save move it on): the process
    and device, the plain model and the module the step trains through, the optimizer, the data, where training
    stands (step, early-stopping state, selection curve, the latest evaluation) and what it writes."""

    config: Config
    out_dir: Path
    rank: int
    world: int
    dev: torch.device
    last: Path  # checkpoints/last
    resuming: bool
    tasks: list
    model: torch.nn.Module
    train_module: torch.nn.Module  # DDP or FSDP across processes; `model` stays plain
    optimizer: torch.optim.Optimizer
    scheduler: object
    data: _Data
    step: int
    selection: Selection
    run_manifest: dict
    chance: dict  # the model card's reference for each task: the primary metric of a model that ignores the image
    log: RunLog | None  # rank 0 only
    summary: dict = field(default_factory=dict)
    curve: list = field(default_factory=list)
    seen: int = 0
    t0: float = 0.0

    def write(self, record: dict) -> None:
        if self.log:
            self.log.write(record)


def train(
    config: Config,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    device: str = "auto",
    stop_after: int | None = None,
    return_model: bool = False,
) -> dict:
    """Train; returns a summary (with the trained model under "model" when `return_model`).

    `stop_after` ends this call after that many steps, as if the process had been stopped there. The steps:
    `_setup` (model, data, optimizer, resumed state, run files), `_fit` (the training steps, each evaluation by
    `_evaluate`, the checkpoints by `_save`), `_finish` (fit.json and the summary).
    """
    run = _setup(config, Path(out_dir), resume, device, progress)
    cfg = run.config.train
    if run.selection.plateaued:
        end = run.step  # a run stopped on a plateau stays stopped
    else:
        end = cfg.steps if stop_after is None else min(cfg.steps, run.step + stop_after)
    _fit(run, end, progress)
    return _finish(run, stop_after, return_model)


def _setup(config: Config, out_dir: Path, resume: bool, device: str, progress: bool) -> _Run:
    """The processes and device, the model, the data, the optimizer and schedule, then the state: restored from
    checkpoints/last when resuming, else fresh (input statistics measured, seeded); the run files and the log."""
    config = absolute_paths(config)  # the saved config (run folder, checkpoints) must work from any directory
    rank, world = dist_utils.init()
    dev = resolve_device(device) if world == 1 else dist_utils.device_for_rank(device)
    last = out_dir / "checkpoints" / "last"
    resuming = resume and (last / "COMPLETE").exists()
    if resuming:
        saved, _ = read_checkpoint_config(last)
        if saved.model != config.model:
            raise TrainingError(
                f"{last}: the checkpoint's model config differs from this run's; resume with the same config"
            )
    tasks = tasks_from_config(config)
    model = build_model(config.model, tasks=tasks).to(dev)
    if rank == 0:
        print(format_parameter_table(model.parameter_table()))
    if config.train.gradient_surgery != "none" and world > 1 and dist_utils.strategy(config) == "fsdp":
        # a fact of this launch (several processes), so not a config check; raised before any data is read
        raise ConfigError("train.gradient_surgery needs whole gradients: use train.distributed=ddp (FSDP keeps shards)")
    data = _load_data(config, tasks, model, dev, rank, world, progress)
    train_module, model = dist_utils.wrap(model, config, dev)  # DDP or FSDP across processes; `model` stays plain
    optimizer = build_optimizer(model, config.train)
    scheduler = build_scheduler(optimizer, config.train)
    step, selection = 0, Selection()
    if resuming:
        step, selection = _restore(model, optimizer, scheduler, last)
        if rank == 0:
            print(f"resumed from {last} at step {step}")
    else:
        measured = fit_input_norm(model, data.train_loader, config, dev)
        if measured and rank == 0:
            print(f"connector input statistics measured on {measured} feature tokens")
        torch.manual_seed(config.train.seed)
    run_manifest = _write_run_files(out_dir, config, data.train_sets, data.val_sets) if rank == 0 else {}
    chance = {name: ds.task.chance(ds.samples) for name, ds in data.val_sets.items()}
    log = RunLog(out_dir, config.train.report_to) if rank == 0 else None
    return _Run(
        config=config,
        out_dir=out_dir,
        rank=rank,
        world=world,
        dev=dev,
        last=last,
        resuming=resuming,
        tasks=tasks,
        model=model,
        train_module=train_module,
        optimizer=optimizer,
        scheduler=scheduler,
        data=data,
        step=step,
        selection=selection,
        run_manifest=run_manifest,
        chance=chance,
        log=log,
    )


def _load_data(config: Config, tasks, model, dev, rank: int, world: int, progress: bool) -> _Data:
    """The train (and, when the run evaluates, val) datasets with the model's input function, the feature cache
    warmed (by rank 0), their loaders, the loss weights and the task sampler."""
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
    sampler = MultiTaskSampler(
        {k: len(v) for k, v in train_sets.items()},
        config.train.batch_size,
        config.data.sampler,
        config.data.temperature,
        config.train.seed,
    )
    return _Data(train_sets, val_sets, train_loader, val_loader, cache, report, weights, sampler)


def _fit(run: _Run, end: int, progress: bool) -> None:
    """The training steps from `run.step` to `end`: log records, evaluations (which may stop the run on a
    plateau) and checkpoints/last every `save_every` steps and at `end`. The loaders and the log are closed
    however it ends (an interruption, an error)."""
    cfg = run.config.train
    bar = tqdm(
        total=cfg.steps, initial=run.step, desc="train", disable=not progress or run.rank != 0, dynamic_ncols=True
    )
    run.t0 = time.perf_counter()
    run.curve = _selection_curve(run.out_dir / "log.jsonl", upto=run.step) if run.resuming else []
    run.model.train()
    # the micro-batches of steps step .. end - 1 as the sampler draws them (a resumed run starts at its step)
    plan = run.data.sampler.micro_batches(run.step, end, cfg.grad_accum, run.rank, run.world)
    batches = run.data.train_loader.batches(plan)
    try:
        while run.step < end:
            result = _step(run, [next(batches) for _ in range(cfg.grad_accum)])
            run.seen += result.samples * run.world
            rate = run.seen / max(1e-9, time.perf_counter() - run.t0)
            bar.set_postfix(loss=f"{result.loss:.4f}", task=",".join(result.tasks), sps=f"{rate:.1f}")
            bar.update(1)
            if run.step % cfg.log_every == 0 or run.step == end:
                run.write(
                    {
                        "step": run.step,
                        "loss": result.loss,
                        "tasks": result.tasks,
                        "n_supervised": result.n_supervised,
                        "lr": run.scheduler.get_last_lr()[0],
                        "samples_per_s": rate,
                    }
                )
            if cfg.eval_every and run.data.val_sets and (run.step % cfg.eval_every == 0 or run.step == cfg.steps):
                if _evaluate(run):
                    break
            if (cfg.save_every and run.step % cfg.save_every == 0) or run.step == end:
                _save(run, "last")
    finally:
        _close(run, bar, batches)


def _close(run: _Run, bar, batches) -> None:
    """The end of `_fit` however it came (the end, a plateau, an interruption, an error): the progress bar, the
    batches, the loaders and the log, whose last record counts the skipped samples (and the cache's use)."""
    bar.close()
    batches.close()
    for loader in (run.data.train_loader, run.data.val_loader):
        if loader is not None:
            loader.close()
    if run.log:
        cache = run.data.cache
        run.log.write({"skips": run.data.report.to_dict(), **({"cache": cache.stats} if cache else {})})
        run.log.close()


def _step(run: _Run, micro_batches: list):
    """One training step (`step.train_step`) on `micro_batches`; advances `run.step`. A non-finite loss stops the
    run with a TrainingError naming the last good checkpoint."""
    cfg = run.config.train
    try:
        # the surgery's projection order depends only on (seed, step), so a resumed run repeats it
        order = (
            torch.Generator().manual_seed(cfg.seed * 1_000_003 + run.step) if cfg.gradient_surgery != "none" else None
        )
        result = train_step(
            run.train_module,
            micro_batches,
            run.optimizer,
            run.scheduler,
            run.data.weights,
            run.dev,
            cfg.precision,
            cfg.grad_clip,
            cfg.grad_accum,
            cfg.gradient_surgery,
            order,
        )
    except NonFiniteLoss as err:
        raise TrainingError(f"step {run.step}: {err}; stopped. The last good checkpoint is {run.last}") from None
    run.step += 1
    return result


def _evaluate(run: _Run) -> bool:
    """Evaluate on the selection split, log it, update the early-stopping state and save checkpoints/best when it
    improved; on a plateau also checkpoints/last. True when the run stops here."""
    d = run.data
    with dist_utils.unsharded(run.model):  # FSDP: gathered, so ranks may run different batch counts
        metrics = evaluate_all(
            run.model, d.val_sets, run.config, run.dev, run.rank, run.world, progress=False, loader=d.val_loader
        )
    value = mean_primary(metrics, run.tasks)
    run.model.train()
    # seconds since this call started (a resumed run restarts the clock): learning curves against time
    run.write({"step": run.step, "eval": metrics, "mean_primary": value, "seconds": time.perf_counter() - run.t0})
    run.curve.append([run.step, value])
    run.summary["last_eval"], run.summary["last_eval_step"] = metrics, run.step
    selection = run.selection
    if selection.update(run.step, value, run.config.train.early_stop_patience):
        _save(run, "best", extra={"step": run.step, "val_metrics": metrics, "mean_primary": value})
    if not selection.plateaued:
        return False
    if run.rank == 0:
        print(
            f"early stop at step {run.step}: no improvement in {selection.bad_evals} evaluations "
            f"(best {selection.best:.4f} at step {selection.best_step})"
        )
    _save(run, "last")
    return True


def _save(run: _Run, path_name: str, extra: dict | None = None) -> None:
    """checkpoints/`path_name` (last or best): weights, training state and model card, written by rank 0; every
    rank gathers (FSDP) and meets at the barrier."""
    model = run.model
    tensors, optimizer_state = (
        dist_utils.trained_state(model),
        dist_utils.optimizer_state(model, run.optimizer),
    )  # FSDP: every rank gathers
    if run.rank == 0:
        card = {
            "manifest": run.run_manifest,
            "step": run.step,
            "validation": run.summary.get("last_eval"),
            "validation_step": run.summary.get("last_eval_step"),
            "chance": run.chance,
        }
        save_checkpoint(
            model,
            run.config,
            run.out_dir / "checkpoints" / path_name,
            extra=extra,
            training_state=_training_state(run.step, optimizer_state, run.scheduler, run.selection),
            card=card,
            tensors=tensors,
        )
    dist_utils.barrier()


def _finish(run: _Run, stop_after: int | None, return_model: bool) -> dict:
    """fit.json (rank 0) and the summary `train` returns."""
    report = run.data.report
    if run.rank == 0 and report.total:
        print(report.summary())
    if return_model:
        run.summary["model"] = run.model
    fit = _fit_record(run.config, run.step, run.selection, run.curve, stop_after)
    if run.rank == 0:
        (run.out_dir / "fit.json").write_text(json.dumps(fit, indent=2))
    run.summary.update(
        step=run.step,
        best=fit["best_value"],
        fit=fit,
        skips=report.to_dict(),
        out_dir=str(run.out_dir),
        samples_per_s=run.seen / max(1e-9, time.perf_counter() - run.t0),
    )
    return run.summary


def _fit_record(config: Config, step: int, selection: Selection, curve: list, stop_after: int | None) -> dict:
    """fit.json: how long the run trained, why it stopped and where it was selected."""
    cfg = config.train
    if selection.plateaued:
        reason = f"plateau: no improvement in {selection.bad_evals} evaluations"
    elif step >= cfg.steps:
        reason = "cap: train.steps reached"
    else:
        reason = "interrupted"  # stop_after or an error: a resumed run goes on
    return {
        "steps": step,
        "cap": cfg.steps,
        "stop_reason": reason,
        "plateaued": selection.plateaued,
        "eval_every": cfg.eval_every,
        "patience": cfg.early_stop_patience,
        "selection_split": {td.task: td.val_split for td in config.data.tasks},
        "best_step": selection.best_step if curve else None,
        "best_value": selection.best
        if math.isfinite(selection.best)
        else None,  # None when no evaluation ran (-inf is not JSON)
        "curve": curve,
    }


def _selection_curve(log_path: Path, upto: int) -> list:
    """The [step, mean primary] evaluations in a run's log up to the resumed step (a run killed after an
    evaluation but before its checkpoint repeats that evaluation)."""
    if not log_path.exists():
        return []
    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    return [[r["step"], r["mean_primary"]] for r in rows if "mean_primary" in r and r["step"] <= upto]


def _restore(model, optimizer, scheduler, last: Path) -> tuple[int, Selection]:
    """Weights, optimizer, schedule and RNG from a checkpoint; returns (step, early-stopping state)."""
    load_trainable(model, last)
    state = torch.load(last / "training_state.pt", weights_only=True)
    dist_utils.load_optimizer_state(model, optimizer, state["optimizer"], str(last / "training_state.pt"))
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), Selection.from_tensors(state)


def _write_run_files(out_dir: Path, config: Config, train_sets: dict, val_sets: dict) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(dump_yaml(config))
    (out_dir / "versions.json").write_text(json.dumps({**versions(), "git": git_revision()}, indent=2))
    splits = {f"{k}/train": v.samples for k, v in train_sets.items()} | {
        f"{k}/val": v.samples for k, v in val_sets.items()
    }
    run_manifest = manifest(splits)
    (out_dir / "manifest.json").write_text(json.dumps(run_manifest, indent=2))
    return run_manifest

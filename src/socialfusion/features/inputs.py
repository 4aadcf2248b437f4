"""Where a model's image inputs come from: the feature cache (frozen encoder) or pixels, and what the cache costs.

Training, evaluation, the analyses and the report all choose their input the same way, so the choice lives
here, in the package that owns the feature cache, not in any one of them. A training run decides with
`cache_decision` (reuse and size, `train.feature_cache: auto`); evaluation, the analyses and the report use the
cache whenever the encoder is frozen and `feature_cache` is not `off` (their images are mostly those a training
run cached). `plan` sizes the cache with `split_entries` and `entry_bytes`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import Config, resolve_num_workers
from ..core.schema import DataError
from ..data.pipeline import build_task_datasets, pixel_input
from ..data.skips import SkipReport
from ..runtime import compute_dtype
from ..tasks import tasks_from_config
from .cache import FeatureCache

SPLITS = ("train", "val", "test")


def default_cache_dir(config: Config) -> Path:
    """`train.cache_dir`, else $SOCIALFUSION_CACHE/features, else ~/.cache/socialfusion/features."""
    if config.train.cache_dir:
        return Path(config.train.cache_dir)
    base = os.environ.get("SOCIALFUSION_CACHE") or Path.home() / ".cache" / "socialfusion"
    return Path(base) / "features"


def entry_bytes(encoder, dtype: torch.dtype) -> int:
    """Bytes of one cached image's features: patch tokens x width x dtype size (the safetensors header and the
    image size add ~150 bytes)."""
    return encoder.num_patches * encoder.hidden_size * torch.empty((), dtype=dtype).element_size()


def open_cache(config: Config, encoder):
    """The feature cache of this frozen encoder, its entries in the run's compute dtype on the encoder's device."""
    device = next(encoder.parameters()).device
    return FeatureCache(
        default_cache_dir(config),
        encoder,
        compute_dtype(device, config.train.precision),
        resolve_num_workers(config.train.num_workers),
    )


@dataclass
class SplitEntries:
    task: str
    which: str  # train | val | test
    split: str  # the dataset's split name
    entries: int | None  # distinct images after the cap; None when unknown
    how: str  # how `entries` was obtained, for people


def split_entries(config: Config, which: str, tasks: dict | None = None) -> list[SplitEntries]:
    """Distinct images per configured task in one split after the caps (`max_train_samples`, ...): counted
    through the adapter where the data root exists (annotations only, no image is opened), else the cap as an
    upper bound, else unknown."""
    tasks = tasks if tasks is not None else tasks_from_config(config)
    out = []
    for td in config.data.tasks:
        split = {"train": td.train_split, "val": td.val_split, "test": td.test_split}[which]
        if split is None:
            continue
        cap = td.max_train_samples if which == "train" else td.max_eval_samples
        cap_name = "max_train_samples" if which == "train" else "max_eval_samples"
        if td.root and Path(td.root).is_dir():
            try:
                ds = build_task_datasets(config, tasks, which, None, SkipReport("skip"), task_names=[td.task])[td.task]
            except (DataError, OSError, ValueError) as err:
                out.append(
                    SplitEntries(
                        td.task,
                        which,
                        split,
                        cap,
                        f"{td.root}: unreadable ({err})" + (f"; at most {cap_name}" if cap else ""),
                    )
                )
                continue
            n = distinct_images([ds])
            out.append(SplitEntries(td.task, which, split, n, f"counted in {td.root}"))
        elif cap is not None:
            out.append(SplitEntries(td.task, which, split, cap, f"at most {cap_name} ({td.root} not found)"))
        else:
            out.append(SplitEntries(td.task, which, split, None, f"unknown ({td.root} not found, no {cap_name})"))
    return out


@dataclass
class CacheDecision:
    use: bool
    reason: str

    def line(self) -> str:
        return f"feature cache: {'on' if self.use else 'off (pixels)'}: {self.reason}"


def distinct_images(datasets) -> int:
    """Distinct image files of several datasets' samples (what the cache would hold for them)."""
    return sum(len({(s.root, s.image) for s in ds.samples}) for ds in datasets)


def cache_decision(
    model, config: Config, world: int | None = None, images: dict[str, int] | None = None
) -> CacheDecision:
    """Whether a training run reads cached features or pixels. `auto`: the cache when the run reads each
    training image more than once in all (steps x batch x grad_accum x processes x `feature_cache_runs` /
    distinct training images > 1) and its entries (training images, plus validation images when the run
    evaluates) fit in `feature_cache_max_gb`; otherwise writing an entry costs more than the decoding it saves,
    or the disk it takes. `images` ({"train": n, "val": n} distinct images, from datasets already read) spares
    reading the annotations again; without it they are counted through the adapters (`split_entries`)."""
    t = config.train
    encoder = model.cacheable_encoder
    if encoder is None:
        return CacheDecision(False, "the encoder is trained, so its features change every step")
    if t.feature_cache != "auto":
        return CacheDecision(t.feature_cache == "on", f"train.feature_cache: {t.feature_cache}")
    world = world if world is not None else int(os.environ.get("WORLD_SIZE", "1"))
    dtype = compute_dtype(next(encoder.parameters()).device, t.precision)
    per_entry = entry_bytes(encoder, dtype)
    if images is None:
        train = split_entries(config, "train")
        unknown = [f"{c.task}: {c.how}" for c in train if c.entries is None]
        if unknown:
            return CacheDecision(False, f"the training images cannot be counted ({'; '.join(unknown)})")
        n_train = sum(c.entries for c in train)
    else:
        n_train = images["train"]
    if n_train == 0:
        return CacheDecision(False, "no training images")
    reads = t.steps * t.batch_size * t.grad_accum * world * t.feature_cache_runs
    reuse = reads / n_train
    runs = f" x {t.feature_cache_runs} runs" if t.feature_cache_runs > 1 else ""
    procs = f" x {world} processes" if world > 1 else ""
    why = (
        f"{reuse:.2f} reads per training image ({t.steps} steps x "
        f"{t.batch_size} x {t.grad_accum} accum{procs}{runs} / {n_train} images)"
    )
    n_val = (
        (images["val"] if images is not None else sum(c.entries or 0 for c in split_entries(config, "val")))
        if t.eval_every
        else 0
    )
    entries = n_train + n_val
    size_gb = entries * per_entry / 1e9
    size = (
        f"{entries} entries x {per_entry / 1e6:.3g} MB "
        f"{'bf16' if dtype == torch.bfloat16 else 'fp32'} = {size_gb:.3g} GB"
    )
    if reuse <= 1:
        return CacheDecision(False, f"{why}: each image is read at most once")
    if size_gb > t.feature_cache_max_gb:
        return CacheDecision(False, f"{size} > train.feature_cache_max_gb {t.feature_cache_max_gb:g}")
    return CacheDecision(True, f"{why}; {size} <= train.feature_cache_max_gb {t.feature_cache_max_gb:g}")


def input_function(
    model, config: Config, training: bool = False, announce: bool = False, images: dict[str, int] | None = None
):
    """The feature cache, or None (the model reads pixels). A training run follows `cache_decision` (printed in
    one line when `announce`; `images` as there); other callers use the cache whenever the encoder is frozen and
    the cache is not `off`."""
    encoder = model.cacheable_encoder
    if training:
        decision = cache_decision(model, config, images=images)
        if announce:
            print(decision.line(), flush=True)
        use = decision.use
    else:
        use = encoder is not None and config.train.feature_cache != "off"
    return open_cache(config, encoder) if use else None


def sample_inputs(
    model, config: Config, training: bool = False, announce: bool = False, images: dict[str, int] | None = None
):
    """(cache or None, the function that turns a Sample into the model's input item): cached features where
    `input_function` gives a cache, the model's pixel inputs otherwise."""
    cache = input_function(model, config, training, announce, images)
    return cache, (cache.input_fn() if cache is not None else pixel_input(model.image_input))

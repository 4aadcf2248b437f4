"""From a task's data config to model batches: samples of one split, per-sample items, collation.

Batch keys (all batches hold samples of one task):
  task (str), ids (list[str]), boxes (B, K, 4) normalised xyxy, box_roles (B, K) with -1 as padding,
  pixel_values (B, 3, S, S) or features (B, N, d) [from the feature cache],
  image_sizes (list of (W, H)) when the input function gives them, samples (the `Sample`s),
  and the task's targets (`Task.targets`): labels (B,) for a classification task when labelled; gaze_target
  (B, 64, 64), inout (B,) 1/0/-1 unknown and points (list) for gaze.

`BatchLoader` builds those batches in DataLoader worker processes (`train.num_workers`): the caller gives a plan,
the (task, sample indices) of each batch in order, so which samples a batch holds never depends on the number of
workers; the skips a worker records travel back with its batch and are recorded in the main process's report.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from ..config import TaskDataConfig, TrainConfig, resolve_num_workers, select_tasks
from ..core.images import ImageError, load_image, load_image_reduced
from ..core.schema import DataError, Sample
from ..tasks import adapter_options
from ..tasks.base import Task
from .adapters import read_dataset
from .holdout import HOLDOUT, carve
from .skips import SkipReport
from .synth import DATASET_DIRS, MARKER


def check_root(td: TaskDataConfig) -> None:
    """A DataError saying how to fix a task's missing data root: the `socialfusion data synth` command when the
    root is one of the synthetic benchmark's folders, otherwise the config key to set. Cheap: the commands call
    it before they build a model."""
    key = f"data.tasks.{td.task}.root"
    if td.root is None:
        raise DataError(f"data for task {td.task!r} has no root directory", hint=f"set {key}=/path/to/the/dataset")
    root = Path(td.root)
    if root.exists():
        return
    if root.name in DATASET_DIRS.values():
        hint = f"generate the synthetic benchmark there with: socialfusion data synth --out {root.parent}"
    else:
        hint = f"check {key} (set it with the override {key}=/path/to/the/dataset)"
    raise DataError(f"data root of task {td.task!r} does not exist: {root}", hint=hint)


def narrow_to_tasks(config, tasks: list[str] | None = None, check_roots: bool = True):
    """`config` keeping only `tasks` (all of them when None or empty), with each kept task's data root checked.

    Every verb with `--tasks` calls this before it builds a model, so that `--tasks expression` with only the
    expression dataset at hand never fails on another task's missing root (one rule for every verb)."""
    if tasks:
        config = select_tasks(config, tasks)
    for td in config.data.tasks if check_roots else ():
        check_root(td)
    return config


def load_split(
    td: TaskDataConfig, task: Task, split: str, report: SkipReport, require_labels: bool = False
) -> list[Sample]:
    """Samples of one split through the task's adapter, checked against the task (bad ones counted).

    Training needs labels; evaluation accepts unlabelled samples (they get predictions, not metrics)."""
    check_root(td)
    dataset = td.dataset or task.default_dataset
    carved = HOLDOUT in (td.val_split, td.test_split) and split in (HOLDOUT, td.train_split)
    source = td.train_split if split == HOLDOUT else split
    samples, _ = read_dataset(dataset, td.root, source, report=report, **adapter_options(td, task))
    kept = []
    for s in samples:
        if s.task != task.name:
            report.skip(f"{dataset}:{s.id}", f"sample task {s.task!r} is not {task.name!r}")
            continue
        try:
            task.check(s, require_label=require_labels)
        except DataError as err:
            report.skip(f"{dataset}:{s.id}", str(err).split(": ", 1)[-1])
            continue
        kept.append(s)
    if carved:  # the holdout's groups leave the training split (`data/holdout.py`)
        kept = carve(
            samples,
            kept,
            td.holdout_fraction,
            HOLDOUT if split == HOLDOUT else "train",
            f"{dataset} {td.root} split {source!r}",
        )
    return kept


class SampleDataset(torch.utils.data.Dataset):
    """Items are dicts; an image that fails to load becomes a counted skip (None), dropped by `collate`."""

    def __init__(
        self, samples: list[Sample], task: Task, image_to_input: Callable[[Sample], dict] | None, report: SkipReport
    ):
        # image_to_input None: only the samples are wanted (counting), or it is set once the input is chosen
        self.samples = samples
        self.task = task
        self.image_to_input = image_to_input
        self.report = report

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict | None:
        return self.load(index, self.report)

    def load(self, index: int, report) -> dict | None:
        """The item of sample `index`; an unusable image is recorded in `report` (anything with `skip`)."""
        s = self.samples[index]
        try:
            item = self.image_to_input(s)
        except DataError as err:
            # one reason per kind of problem, so the report groups them; the details go with the record
            kind = getattr(err, "reason", type(err).__name__)  # ImageError carries a short fixed phrase
            report.skip(f"{s.image} (sample {s.id}): {err}", f"unusable image: {kind}")
            return None
        item["sample"] = s
        return item


def collate(items: list[dict | None], task: Task) -> dict | None:
    """Items of one task -> a batch dict (see the module docstring); the task adds its targets. None when every
    item was a skip."""
    items = [it for it in items if it is not None]
    if not items:
        return None
    samples = [it["sample"] for it in items]
    k = max(1, max(len(s.boxes) for s in samples))
    boxes = torch.zeros(len(samples), k, 4)
    roles = torch.full((len(samples), k), -1, dtype=torch.long)
    for i, s in enumerate(samples):
        for j, b in enumerate(s.boxes):
            boxes[i, j] = torch.tensor(b.xyxy)
            roles[i, j] = b.role
    batch: dict = {
        "task": task.name,
        "ids": [s.id for s in samples],
        "boxes": boxes,
        "box_roles": roles,
        "samples": samples,
    }
    for key in ("pixel_values", "features"):
        if key in items[0]:
            batch[key] = torch.stack([it[key] for it in items])
    if all("image_size" in it for it in items):
        batch["image_sizes"] = [tuple(int(v) for v in it["image_size"]) for it in items]
    batch.update(task.targets(samples))
    return batch


class PixelInput:
    """Load, orient and preprocess the image of a sample for the encoder (a model's `image_input`; a VLM baseline
    that draws the boxes on the image, `wants_boxes`, also gets the sample's boxes). The encoder resizes every image
    to its `image_size` square, so a JPEG is decoded at a reduced scale (`images.load_image_reduced`); "image_size"
    is the full image's. A class rather than a closure, so that it pickles where worker processes are spawned."""

    def __init__(self, encoder, reduced: bool = True):
        self.encoder = encoder
        self.reduced = reduced  # False: decode every image in full (what the benchmark compares against)

    def __call__(self, sample: Sample) -> dict:
        side = getattr(self.encoder, "image_size", None)
        if side and self.reduced:
            image, size = load_image_reduced(sample.image_path(), int(side))
        else:
            image = load_image(sample.image_path())
            size = image.size
        boxes = {"boxes": [sample.boxes]} if self.encoder.wants_boxes else {}
        return {"pixel_values": self.encoder.preprocess([image], **boxes)[0], "image_size": size}


def pixel_input(encoder) -> Callable[[Sample], dict]:  # encoder: a model's `image_input`
    return PixelInput(encoder)


# ---------------------------------------------------------------- batches in worker processes


class _SkipLog:
    """Takes a SkipReport's place while a batch is built: keeps each (where, reason) so that the main process can
    record it in the dataset's own report (a worker's copy of that report would be lost with the worker)."""

    def __init__(self):
        self.records: list[tuple[str, str]] = []

    def skip(self, where: str, reason: str) -> None:
        self.records.append((where, reason))


class TaskItems(torch.utils.data.Dataset):
    """Several tasks' datasets as one, addressed by (task name, sample index): one DataLoader serves them all."""

    def __init__(self, datasets: dict[str, SampleDataset]):
        self.datasets = datasets

    def __len__(self) -> int:
        return sum(len(ds) for ds in self.datasets.values())

    def __getitem__(self, key: tuple[str, int]) -> tuple[str, dict | None, list[tuple[str, str]]]:
        task, index = key
        log = _SkipLog()
        return task, self.datasets[task].load(index, log), log.records


class _CollateTask:
    """The DataLoader's collate_fn: one task's items -> {"task", "batch" (or None), "skips"} (run in the worker)."""

    def __init__(self, tasks: dict[str, Task]):
        self.tasks = tasks

    def __call__(self, entries: list) -> dict:
        names = {name for name, _, _ in entries}
        if len(names) != 1:
            raise ValueError(f"a batch holds one task, got {sorted(names)}")
        name = names.pop()
        skips = [record for _, _, records in entries for record in records]
        return {"task": name, "batch": collate([item for _, item, _ in entries], self.tasks[name]), "skips": skips}


class _PlanSampler:
    """The DataLoader's batch sampler: the (task, index) keys of each batch of the plan set for the current pass.
    It lives in the main process, so a new plan reaches persistent workers with the next pass."""

    def __init__(self):
        self.plan: Iterable[tuple[str, list[int]]] = ()

    def __iter__(self) -> Iterator[list[tuple[str, int]]]:
        for task, indices in self.plan:
            if len(indices):
                yield [(task, int(i)) for i in indices]


def _lower_priority(_worker_id: int) -> None:
    """Worker start-up: a lower scheduling priority, so that decoding fills the cores the training step leaves idle
    (its single-threaded stretches) instead of preempting one of its compute threads, which stalls the whole step
    while the other threads wait for it."""
    try:
        os.nice(10)
    except (AttributeError, OSError):  # not on this platform, or not allowed: run at normal priority
        pass


class BatchLoader:
    """Batches of several tasks' datasets, built (decoded, preprocessed, collated) by `workers` DataLoader worker
    processes, or in this process when `workers` is 0; each worker keeps `prefetch_factor` batches ready. Workers
    persist across passes (a training run's evaluations reuse them) until `close`.

    `batches(plan)` yields one batch dict (None where every sample was a skip) per (task, indices) of `plan`, in
    order, after recording the batch's skips in its dataset's report: the counts, the examples and the
    `on_bad_sample: error` policy behave as with in-process loading (under "error" the DataError is raised here,
    before the batch is used). The loader's own generator seeds the workers, so creating it leaves torch's global
    random state (which a resumed run restores) untouched.
    """

    def __init__(
        self,
        datasets: dict[str, SampleDataset],
        workers: int = 0,
        prefetch_factor: int = 2,
        pin_memory: bool = False,
        seed: int = 0,
    ):
        self.datasets = datasets
        self.workers = workers
        self._sampler = _PlanSampler()
        extra = {}
        if workers > 0:
            extra = {
                "num_workers": workers,
                "prefetch_factor": prefetch_factor,
                "persistent_workers": True,
                "worker_init_fn": _lower_priority,
            }
            if sys.platform.startswith("linux"):
                # fork: workers share the parent's datasets and encoder copy-on-write instead of unpickling them
                extra["multiprocessing_context"] = "fork"
        self.loader = torch.utils.data.DataLoader(
            TaskItems(datasets),
            batch_sampler=self._sampler,
            collate_fn=_CollateTask({k: ds.task for k, ds in datasets.items()}),
            pin_memory=pin_memory,
            generator=torch.Generator().manual_seed(seed),
            **extra,
        )

    def batches(self, plan: Iterable[tuple[str, list[int]]]) -> Iterator[dict | None]:
        self._sampler.plan = plan
        for out in self.loader:
            report = self.datasets[out["task"]].report
            for where, reason in out["skips"]:
                report.skip(where, reason)
            yield out["batch"]

    def close(self) -> None:
        """Stop the workers now rather than when the loader is garbage-collected."""
        # torch has no public call for this (2.13): persistent workers stop in the iterator's __del__, which any
        # reference left to it (a `batches` generator not run to its end) postpones; `_shutdown_workers` is what
        # that __del__ calls, guarded in case a torch release renames it
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self.loader._iterator = None

    def __enter__(self) -> BatchLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _ImageFiles(torch.utils.data.Dataset):
    """Image files -> upright 8-bit RGB PIL images (`images.load_image`), or the ImageError of an unusable one."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            return load_image(self.paths[index])
        except ImageError as err:  # the caller decides what a bad file means (predict counts it and goes on)
            return err


def _as_is(item):
    return item


def decoded_images(paths: list[Path], workers: int = 0, prefetch_factor: int = 2) -> Iterator:
    """The decoded image of each path, in order (an ImageError in place of an unusable file), decoded up to
    `workers * prefetch_factor` files ahead by `workers` worker processes (in this process when 0)."""
    extra = {"num_workers": workers, "prefetch_factor": prefetch_factor} if workers > 0 else {}
    if workers > 0 and sys.platform.startswith("linux"):
        extra["multiprocessing_context"] = "fork"
    loader = torch.utils.data.DataLoader(
        _ImageFiles(list(paths)), batch_size=None, collate_fn=_as_is, generator=torch.Generator(), **extra
    )
    yield from loader


def batch_loader(
    datasets: dict[str, SampleDataset], train: TrainConfig, device, in_process: bool = False
) -> BatchLoader:
    """The configured BatchLoader: `train.num_workers` workers (resolved, "auto" included), `train.prefetch_factor`,
    page-locked batches for a CUDA device only. `in_process` (the feature cache's inputs: a cached entry reads
    faster than a worker hands it over, and a miss runs the encoder, which stays in the training process) loads
    in this process."""
    workers = 0 if in_process else resolve_num_workers(train.num_workers)
    pin = torch.device(device).type == "cuda"
    return BatchLoader(datasets, workers, train.prefetch_factor, pin_memory=pin, seed=train.seed)


def is_synthetic(root: str | Path | None) -> bool:
    """Whether a dataset root was written by `data.synth.generate` (its README marker, in the root or the folder
    holding the five dataset roots); the model card says so."""
    if not root:
        return False
    for folder in (Path(root), Path(root).parent):
        try:
            with open(folder / "README.txt", encoding="utf-8", errors="replace") as fh:
                if fh.read(len(MARKER)) == MARKER:
                    return True
        except OSError:
            continue
    return False


def manifest(samples_by_split: dict[str, list[Sample]]) -> dict:
    """What data a run saw: counts per split, a hash over the sample ids and labels, and whether it is synthetic."""
    out = {}
    for name, samples in samples_by_split.items():
        h = hashlib.sha256()
        for s in samples:
            h.update(json.dumps([s.id, s.image, s.label, s.points], default=str).encode())
        root = samples[0].root if samples else None
        out[name] = {"n": len(samples), "sha256": h.hexdigest()[:16], "root": root, "synthetic": is_synthetic(root)}
    return out


def build_task_datasets(
    config,
    tasks: dict[str, Task],
    which: str,
    input_fn: Callable[[Sample], dict] | None,
    report: SkipReport,
    task_names=None,
) -> dict[str, SampleDataset]:
    """One dataset per configured task for `which` in ("train", "val", "test"), capped as configured.

    A cap keeps a deterministic subset (a seeded shuffle), so a capped run is reproducible.
    """
    out = {}
    for td in config.data.tasks:
        if task_names is not None and td.task not in task_names:
            continue
        split = {"train": td.train_split, "val": td.val_split, "test": td.test_split}[which]
        if split is None:
            continue
        samples = load_split(td, tasks[td.task], split, report, require_labels=which == "train")
        cap = td.max_train_samples if which == "train" else td.max_eval_samples
        if cap is not None and len(samples) > cap:
            keep = np.random.default_rng(config.train.seed).permutation(len(samples))[:cap]
            samples = [samples[i] for i in sorted(keep)]
        out[td.task] = SampleDataset(samples, tasks[td.task], input_fn, report)
    return out

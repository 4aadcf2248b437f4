"""From a task's data config to model batches: samples of one split, per-sample items, collation.

Batch keys (all batches hold samples of one task):
  task (str), ids (list[str]), boxes (B, K, 4) normalised xyxy, box_roles (B, K) with -1 as padding,
  pixel_values (B, 3, S, S) or features (B, N, d) [from the feature cache],
  image_sizes (list of (W, H)) when the input function gives them, samples (the `Sample`s),
  and the task's targets (`Task.targets`): labels (B,) for a classification task when labelled; gaze_target
  (B, 64, 64), inout (B,) 1/0/-1 unknown and points (list) for gaze.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from ..config import TaskDataConfig
from ..tasks.base import Task
from .schema import DataError, Sample
from .skips import SkipReport


def load_split(td: TaskDataConfig, task: Task, split: str, report: SkipReport, require_labels: bool = False) -> list[Sample]:
    """Samples of one split through the task's adapter, checked against the task (bad ones counted).

    Training needs labels; evaluation accepts unlabelled samples (they get predictions, not metrics)."""
    from ..tasks import adapter_options
    from .adapters import read_dataset

    if td.root is None:
        raise DataError(f"data for task {td.task!r} has no root directory")
    dataset = td.dataset or task.default_dataset
    samples, _ = read_dataset(dataset, td.root, split, report=report, **adapter_options(td, task))
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
    return kept


class SampleDataset(torch.utils.data.Dataset):
    """Items are dicts; an image that fails to load becomes a counted skip (None), dropped by `collate`."""

    def __init__(self, samples: list[Sample], task: Task, image_to_input: Callable[[Sample], dict], report: SkipReport):
        self.samples = samples
        self.task = task
        self.image_to_input = image_to_input
        self.report = report

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict | None:
        s = self.samples[index]
        try:
            item = self.image_to_input(s)
        except DataError as err:
            # one reason per kind of problem, so the report groups them; the details go with the record
            kind = getattr(err, "reason", type(err).__name__)  # ImageError carries a short fixed phrase
            self.report.skip(f"{s.image} (sample {s.id}): {err}", f"unusable image: {kind}")
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
    batch: dict = {"task": task.name, "ids": [s.id for s in samples], "boxes": boxes, "box_roles": roles, "samples": samples}
    for key in ("pixel_values", "features"):
        if key in items[0]:
            batch[key] = torch.stack([it[key] for it in items])
    if all("image_size" in it for it in items):
        batch["image_sizes"] = [tuple(int(v) for v in it["image_size"]) for it in items]
    batch.update(task.targets(samples))
    return batch


def pixel_input(encoder) -> Callable[[Sample], dict]:  # encoder: a model's `image_input`
    """Load, orient and preprocess the image of a sample for the encoder (a VLM baseline that draws the boxes on
    the image, `wants_boxes`, also gets the sample's boxes)."""
    from .images import load_image

    def fn(sample: Sample) -> dict:
        image = load_image(sample.image_path())
        boxes = {"boxes": [sample.boxes]} if encoder.wants_boxes else {}
        return {"pixel_values": encoder.preprocess([image], **boxes)[0], "image_size": image.size}

    return fn


def manifest(samples_by_split: dict[str, list[Sample]]) -> dict:
    """What data a run saw: counts per split and a hash over the sample ids and labels."""
    import hashlib
    import json

    out = {}
    for name, samples in samples_by_split.items():
        h = hashlib.sha256()
        for s in samples:
            h.update(json.dumps([s.id, s.image, s.label, s.points], default=str).encode())
        out[name] = {"n": len(samples), "sha256": h.hexdigest()[:16], "root": samples[0].root if samples else None}
    return out


def build_task_datasets(config, tasks: dict[str, Task], which: str, input_fn: Callable[[Sample], dict], report: SkipReport, task_names=None) -> dict[str, SampleDataset]:
    """One dataset per configured task for `which` in ("train", "val", "test"), capped as configured.

    A cap keeps a deterministic subset (a seeded shuffle), so a capped run is reproducible.
    """
    import numpy as np

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

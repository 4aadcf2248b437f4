"""Batched prediction and evaluation with the official metrics, sharded across ranks when distributed."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data.pipeline import BatchLoader, SampleDataset
from ..runtime import autocast


@torch.no_grad()
def predict(
    model,
    dataset: SampleDataset,
    batch_size: int,
    device,
    precision: str = "fp32",
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
    loader: BatchLoader | None = None,
) -> dict:
    """Predictions for this rank's shard (samples rank, rank + world, ...): {"ids", "samples", "predictions"},
    one decoded prediction per sample (`Task.decode`, with the image's "image_size" added).

    `loader` (a `BatchLoader` holding `dataset` under its task's name) builds the batches, in its worker processes
    if it has any; without one they are built in this process."""
    task = dataset.task
    model.eval()
    if loader is None:
        loader = BatchLoader({task.name: dataset})
    elif loader.datasets.get(task.name) is not dataset:
        raise ValueError(f"the loader does not hold this {task.name!r} dataset")
    indices = list(range(rank, len(dataset), world))
    plan = [(task.name, indices[start : start + batch_size]) for start in range(0, len(indices), batch_size)]
    out: dict = {"ids": [], "samples": [], "predictions": []}
    for batch in tqdm(
        loader.batches(plan), total=len(plan), desc=f"eval {task.name}", disable=not progress, leave=False
    ):
        if batch is None:
            continue
        with autocast(device, precision):
            rows = model.predict(batch)[task.name]
        for row, size in zip(rows, batch.get("image_sizes", [None] * len(rows))):
            row["image_size"] = size
        out["predictions"].extend(rows)
        out["ids"].extend(batch["ids"])
        out["samples"].extend(batch["samples"])
    return out


def gather_predictions(pred: dict) -> dict:
    """Concatenate every rank's shard (each sample exactly once: the shards are disjoint by construction)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return pred
    shards = [None] * dist.get_world_size()
    dist.all_gather_object(shards, pred)
    merged = {k: [] for k in pred}
    seen = set()
    for shard in shards:
        for sid in shard["ids"]:
            if sid in seen:
                raise RuntimeError(f"sample {sid} was evaluated twice")
            seen.add(sid)
        for k in merged:
            merged[k].extend(shard[k])
    return merged


def score(task, pred: dict) -> dict | None:
    """The task's official metrics, or None when the split has no labels."""
    return task.evaluate(pred["samples"], pred["predictions"])


def prediction_records(task, pred: dict):
    """Per-sample predictions for inspection (JSONL rows)."""
    for sid, s, p in zip(pred["ids"], pred["samples"], pred["predictions"]):
        yield {"id": sid, "image": s.image, **task.record(s, p), "meta": s.meta}


def write_predictions(task, pred: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"predictions_{task.name}.jsonl"
    with open(path, "w") as f:
        for row in prediction_records(task, pred):
            f.write(json.dumps(row, default=float) + "\n")
    return path


def markdown_table(metrics_by_task: dict[str, dict | None]) -> str:
    lines = ["| task | n | metrics |", "|---|---|---|"]
    for name, m in metrics_by_task.items():
        if m is None:
            lines.append(f"| {name} | - | unlabelled: submission file written |")
            continue
        ci = m.get("ci") or {}
        scalars = ", ".join(
            f"{k} {v:.4f}" + (f" [{ci[k][0]:.4f}, {ci[k][1]:.4f}]" if ci.get(k) else "")
            for k, v in m.items()
            if isinstance(v, float)
        )
        lines.append(f"| {name} | {m.get('n', '-')} | {scalars} |")
    return "\n".join(lines) + "\n"

"""Batched prediction and evaluation with the official metrics, sharded across ranks when distributed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.pipeline import SampleDataset, collate
from ..runtime import autocast


@torch.no_grad()
def predict(model, dataset: SampleDataset, batch_size: int, device, precision: str = "fp32", rank: int = 0, world: int = 1, progress: bool = True) -> dict:
    """Predictions for this rank's shard (samples rank, rank + world, ...), as plain Python/numpy data."""
    task = dataset.task
    model.eval()
    indices = list(range(rank, len(dataset), world))
    out: dict = {"ids": [], "labels": [], "probs": [], "heatmaps": [], "inout": [], "points": [], "image_sizes": [], "samples": []}
    for start in tqdm(range(0, len(indices), batch_size), desc=f"eval {task.name}", disable=not progress, leave=False):
        batch = collate([dataset[i] for i in indices[start : start + batch_size]], task, sigma=model.cfg.gaze.sigma)
        if batch is None:
            continue
        with autocast(device, precision):
            if task.kind == "classification":
                probs = model.score_classes(batch).float().exp().cpu().numpy()
                out["probs"].extend(probs)
                out["labels"].extend([s.label for s in batch["samples"]])
            else:
                res = model.predict_heatmap(batch)
                out["heatmaps"].extend(res["heatmap"].float().cpu().numpy())
                if "inout" in res:
                    out["inout"].extend(res["inout"].float().cpu().numpy().tolist())
                out["points"].extend(batch["points"])
                out["image_sizes"].extend(batch["image_sizes"])
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
        for i, sid in enumerate(shard["ids"]):
            if sid in seen:
                raise RuntimeError(f"sample {sid} was evaluated twice")
            seen.add(sid)
        for k in merged:
            merged[k].extend(shard[k])
    return merged


def score(task, pred: dict) -> dict:
    """The task's official metrics, or None when the split has no labels."""
    if not pred["ids"]:
        return {"n": 0}
    if task.kind == "classification":
        if any(label is None for label in pred["labels"]):
            return None
        return task.evaluate({"labels": pred["labels"], "probs": np.stack(pred["probs"])})
    if any(not p for p in pred["points"]):
        return None
    return task.evaluate({"heatmaps": np.stack(pred["heatmaps"]), "points": pred["points"], "image_sizes": pred["image_sizes"]})


def prediction_records(task, pred: dict):
    """Per-sample predictions for inspection (JSONL rows)."""
    for i, sid in enumerate(pred["ids"]):
        s = pred["samples"][i]
        row = {"id": sid, "image": s.image}
        if task.kind == "classification":
            probs = pred["probs"][i]
            row.update(label=s.label, pred=int(np.argmax(probs)), pred_name=task.classes[int(np.argmax(probs))], probs=[round(float(p), 6) for p in probs])
        else:
            heat = pred["heatmaps"][i]
            r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
            row.update(points=s.points, pred_point=[c / heat.shape[1], r / heat.shape[0]], inout=pred["inout"][i] if pred["inout"] else None)
        row["meta"] = s.meta
        yield row


def lam_submission(pred: dict) -> dict:
    """Ego4D LAM challenge format (as written to EvalAI's guidelines by third-party converters)."""
    results = []
    for sid, s, probs in zip(pred["ids"], pred["samples"], pred["probs"]):
        results.append({"video_id": s.meta.get("video_id"), "unique_id": s.meta.get("unique_id"), "track_id": s.meta.get("track_id"), "label": 1, "score": float(probs[1])})
    return {"version": "1.0", "challenge": "ego4d_looking_at_me", "results": results}


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
        scalars = ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, float))
        lines.append(f"| {name} | {m.get('n', '-')} | {scalars} |")
    return "\n".join(lines) + "\n"

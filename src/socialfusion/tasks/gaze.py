"""GazeFollow gaze target: a 64x64 heatmap over the image, read from the LLM's image positions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.schema import DataError
from . import TASKS
from .base import Task

HEATMAP_SIZE = 64


def gaze_target(points, size: int = HEATMAP_SIZE, sigma: float = 3.0) -> torch.Tensor:
    """Sum of Gaussians (sigma in cells of the size x size grid) at each normalised point, normalised to sum 1.

    Cell centres sit at (i + 0.5) / size, so a point maps to the cell it falls in.
    """
    pts = torch.as_tensor(np.asarray(points, dtype=np.float32).reshape(-1, 2))
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    dx = (centres[None, :] - pts[:, 0:1]) * size  # (P, size) in cells
    dy = (centres[None, :] - pts[:, 1:2]) * size
    g = torch.exp(-(dy[:, :, None] ** 2 + dx[:, None, :] ** 2) / (2 * sigma**2)).sum(0)
    return g / g.sum()


@TASKS.register("gaze")
@dataclass
class Gaze(Task):
    name = "gaze"
    kind = "heatmap"
    default_dataset = "gazefollow"
    primary_metric = "auc"
    prompt_templates = {
        "v1": "<image>\nWhere is the person whose head is in the marked box looking?",
    }
    sigma: float = 3.0

    def check(self, sample, require_label: bool = False):
        if require_label and sample.inout is None:
            raise DataError(f"sample {sample.id}: a training gaze sample needs inout (1 in frame, 0 out of frame)")
        if sample.inout == 1 and not sample.points:
            raise DataError(f"sample {sample.id}: an in-frame gaze sample needs at least one gaze point")

    def target_text(self, sample):
        raise TypeError("gaze has no text answer; its target is a heatmap")

    def evaluate(self, predictions):
        from ..eval.metrics import gazefollow_metrics

        return gazefollow_metrics(predictions["heatmaps"], predictions["points"], predictions["image_sizes"])

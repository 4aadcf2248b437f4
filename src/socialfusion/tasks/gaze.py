"""GazeFollow gaze target: a 64x64 heatmap over the image, read from the LLM's image positions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.intervals import mean_statistic
from ..core.metrics import gazefollow_metrics, gazefollow_per_person
from ..core.schema import DataError
from . import TASKS
from .base import Task
from .figures import gaze_examples_png

HEATMAP_SIZE = 64  # the GazeFollow evaluation grid; the gaze head predicts on it


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


def gaze_loss(head_out: dict, target: torch.Tensor, inout: torch.Tensor, loss: str = "kl") -> dict[str, torch.Tensor]:
    """target (B, 64, 64) normalised heatmaps; inout (B,) 1 in frame, 0 out, -1 unknown.

    The heatmap loss counts only in-frame samples (Chong et al. zero it for out-of-frame heads)."""
    logits = head_out["heatmap_logits"].flatten(1)
    tgt = target.flatten(1).float()
    in_frame = inout == 1
    if loss == "kl":
        logp = F.log_softmax(logits, dim=-1)
        per = (tgt * (torch.log(tgt.clamp_min(1e-12)) - logp)).sum(-1)
    elif loss == "bce":  # Gaze-LLE: per-pixel BCE against the (peak-1) Gaussian
        peak = tgt / tgt.amax(-1, keepdim=True).clamp_min(1e-12)
        per = F.binary_cross_entropy_with_logits(logits, peak, reduction="none").mean(-1)
    else:
        raise ValueError(f"unknown gaze loss {loss!r}")
    n_in = in_frame.sum()
    losses = {"heatmap": (per * in_frame).sum() / n_in.clamp_min(1)}
    known = inout >= 0
    if "inout_logit" in head_out and known.any():
        losses["inout"] = F.binary_cross_entropy_with_logits(head_out["inout_logit"][known], inout[known].float())
    return losses


@TASKS.register("gaze")
@dataclass
class Gaze(Task):
    name = "gaze"
    readout = "heatmap"
    default_dataset = "gazefollow"
    primary_metric = "auc"
    box_kinds = ("head",)
    probe_pools = ("patch",)
    prompt_templates = {
        "v1": "<image>\nWhere is the person whose head is in the marked box looking?",
    }
    sigma: float = 3.0
    loss_type: str = "kl"

    @classmethod
    def options_from_model(cls, model_cfg):
        return {"sigma": model_cfg.gaze.sigma, "loss_type": model_cfg.gaze.loss}

    def check(self, sample, require_label: bool = False):
        super().check(sample, require_label)
        if require_label and sample.inout is None:
            raise DataError(f"sample {sample.id}: a training gaze sample needs inout (1 in frame, 0 out of frame)")
        if sample.inout == 1 and not sample.points:
            raise DataError(f"sample {sample.id}: an in-frame gaze sample needs at least one gaze point")
        if any(not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0) for x, y in sample.points or []):
            raise DataError(f"sample {sample.id}: gaze point outside [0, 1]")

    def targets(self, samples):
        uniform = torch.full((HEATMAP_SIZE, HEATMAP_SIZE), 1 / HEATMAP_SIZE**2)
        return {
            "inout": torch.tensor([-1 if s.inout is None else s.inout for s in samples]),
            "gaze_target": torch.stack(
                [gaze_target(s.points, sigma=self.sigma) if s.points and s.inout != 0 else uniform for s in samples]
            ),
            "points": [list(s.points or []) for s in samples],
        }

    def loss(self, outputs, batch):
        device = outputs["heatmap_logits"].device
        inout = batch["inout"].to(device)
        losses = gaze_loss(outputs, batch["gaze_target"].to(device), inout, self.loss_type)
        return {
            "loss": sum(losses.values()),
            **{f"loss_{k}": v.detach() for k, v in losses.items()},
            "n_supervised": (inout >= 0).sum(),
        }

    def decode(self, raw):
        """raw: {"heatmap": (B, 64, 64) probabilities, "inout": (B,) in-frame probability when the head has one}
        -> {"heatmap", "inout", "point": the argmax as normalised (col / 64, row / 64)}, the GazeFollow
        evaluation convention (no cell-centre offset)."""
        heat = raw["heatmap"].float().cpu().numpy()
        inout = raw["inout"].float().cpu().numpy() if "inout" in raw else None
        rows = []
        for j, h in enumerate(heat):
            r, c = np.unravel_index(int(np.argmax(h)), h.shape)
            rows.append(
                {
                    "heatmap": h.astype(np.float32),
                    "inout": None if inout is None else float(inout[j]),
                    "point": [float(c) / h.shape[1], float(r) / h.shape[0]],
                }
            )
        return rows

    def evaluate(self, samples, predictions):
        if not samples:
            return {"n": 0}
        # AUC and L2 are defined on in-frame targets (the official test split has only those); a split carved from
        # train also holds out-of-frame persons (inout 0, no points): they are counted, not scored. No point at all:
        # an unlabelled split (None).
        scored = [j for j, s in enumerate(samples) if s.points]
        if not scored:
            return None
        heat = np.stack([predictions[j]["heatmap"] for j in scored])
        metrics = gazefollow_metrics(
            heat, [list(samples[j].points) for j in scored], [predictions[j]["image_size"] for j in scored]
        )
        return {**metrics, "n_out_of_frame": len(samples) - len(scored)} if len(scored) < len(samples) else metrics

    def resampler(self, samples, predictions):
        # the metrics are means over persons: each person's AUC and L2 once, then means per resample
        # an out-of-frame person is NaN (left out of every resample's mean, as `evaluate` leaves it out)
        scored = [j for j, s in enumerate(samples) if s.points]
        heat = np.stack([predictions[j]["heatmap"] for j in scored])
        values = gazefollow_per_person(
            heat, [list(samples[j].points) for j in scored], [predictions[j]["image_size"] for j in scored]
        )
        full = {k: np.full(len(samples), np.nan) for k in values}
        for k, v in values.items():
            full[k][scored] = v
        return mean_statistic(full)

    def chance(self, samples):
        return 0.5  # AUC of a heatmap that ignores the image

    def record(self, sample, prediction):
        return {"points": sample.points, "pred_point": prediction["point"], "inout": prediction["inout"]}

    def present(self, prediction, width, height, boxes):
        xn, yn = prediction["point"]
        head = boxes[0]["xyxy"]
        return {
            "heatmap": prediction["heatmap"],
            "point": [xn * width, yn * height],
            "point_normalized": [xn, yn],
            "inout": prediction["inout"],
            "head_center": [(head[0] + head[2]) / 2, (head[1] + head[3]) / 2],
        }

    def figures(self, metrics, samples, predictions, out_dir):
        if not samples:
            return {}
        k = min(4, len(samples))
        return {"gaze_examples": gaze_examples_png(samples[:k], predictions[:k], Path(out_dir) / "gaze_examples.png")}

    def data_stats(self, samples):
        return {
            "unlabelled": None,
            "inout": dict(Counter(str(s.inout) for s in samples)),
            "points_per_sample": dict(sorted(Counter(len(s.points or []) for s in samples).items())),
        }

    def describe(self):
        return {**super().describe(), "kind": "heatmap", "classes": [], "verbalizers": [], "heatmap_size": HEATMAP_SIZE}

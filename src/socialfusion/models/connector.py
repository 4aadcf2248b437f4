"""The connector from encoder features to the LLM's embedding space, with optional k x k grid pooling."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConnectorConfig
from ..registry import Registry

CONNECTORS: Registry = Registry("connector")


@CONNECTORS.register("mlp2x_gelu")
def _mlp2x_gelu(d_in: int, d_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


@CONNECTORS.register("linear")
def _linear(d_in: int, d_out: int) -> nn.Module:
    return nn.Linear(d_in, d_out)


def pooled_grid(grid: tuple[int, int], pool: int) -> tuple[int, int]:
    return (math.ceil(grid[0] / pool), math.ceil(grid[1] / pool))


class Connector(nn.Module):
    def __init__(self, cfg: ConnectorConfig, d_vision: int, d_llm: int, grid: tuple[int, int]):
        super().__init__()
        self.pool = cfg.pool
        self.in_grid = grid
        self.grid = pooled_grid(grid, cfg.pool)
        self.norm = {
            "none": nn.Identity,
            "layer": lambda: nn.LayerNorm(d_vision, elementwise_affine=False),
            "standardize": lambda: Standardize(d_vision),
        }[cfg.input_norm]()
        self.proj = CONNECTORS.get(cfg.type)(d_vision, d_llm)

    def _as_grid(self, features: torch.Tensor) -> torch.Tensor:
        """(B, h*w, d_v) row-major patch tokens -> (B, d_v, h, w)."""
        return features.transpose(1, 2).reshape(features.shape[0], features.shape[2], *self.in_grid)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, h*w, d_v) -> (B, h'*w', d_llm), row-major like the patch grid."""
        if self.pool > 1:
            features = F.adaptive_avg_pool2d(self._as_grid(features), self.grid).flatten(2).transpose(1, 2)
        return self.proj(self.norm(features))

    def regions(self, features: torch.Tensor, boxes: torch.Tensor, k: int) -> torch.Tensor:
        """Region tokens: (B, h*w, d_v) features, (B, R, 4) normalised xyxy boxes -> (B, R*k*k, d_llm)."""
        return self.proj(self.norm(roi_align(self._as_grid(features), boxes, k)))


class Standardize(nn.Module):
    """x -> (x - mean) / std per channel, with statistics measured on data (`fit`), not learnt by gradient.

    Until `fit` runs it is the identity. The statistics are buffers, saved with the trainable weights
    (`FITTED_BUFFERS`), so a trained model normalises at inference exactly as it did in training.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(dim))
        self.register_buffer("feature_std", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.feature_mean.to(x.dtype)) / self.feature_std.to(x.dtype)

    @torch.no_grad()
    def fit(self, features) -> int:
        """Measure the statistics over every token of an iterable of (..., dim) tensors; returns the token count."""
        total = torch.zeros(2, self.feature_mean.shape[0], dtype=torch.float64)
        n = 0
        for f in features:
            f = f.detach().reshape(-1, f.shape[-1]).to("cpu", torch.float64)  # float64 sums; MPS has no float64
            total += torch.stack([f.sum(0), (f * f).sum(0)])
            n += f.shape[0]
        if n == 0:
            raise ValueError("connector input statistics: no features to measure")
        mean = total[0] / n
        std = (total[1] / n - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)
        return n


# names of buffers that hold statistics measured on data: checkpoints keep them with the trainable weights
FITTED_BUFFERS = ("feature_mean", "feature_std")


def roi_align(grid: torch.Tensor, boxes: torch.Tensor, k: int, samples: int = 2) -> torch.Tensor:
    """RoIAlign (Mask R-CNN) on a patch grid: (B, d, h, w), (B, R, 4) normalised xyxy -> (B, R*k*k, d).

    Each box is split into k x k bins; a bin is the mean of `samples` x `samples` bilinear samples at regularly
    spaced points inside it (the continuous coordinates of `F.grid_sample` with align_corners=False, where the
    grid spans [0, 1] edge to edge). Tokens are ordered box by box, bins row-major.
    """
    b, d = grid.shape[:2]
    r = boxes.shape[1]
    m = k * samples
    t = (torch.arange(m, device=grid.device, dtype=grid.dtype) + 0.5) / m  # sample centres within [0, 1]
    x0, y0, x1, y1 = boxes.to(grid.dtype).clamp(0.0, 1.0).unbind(-1)  # (B, R)
    xs = x0[..., None] + (x1 - x0)[..., None] * t  # (B, R, m)
    ys = y0[..., None] + (y1 - y0)[..., None] * t
    points = torch.stack(torch.broadcast_tensors(xs[:, :, None, :], ys[:, :, :, None]), dim=-1)  # (B, R, m, m, 2)
    sampled = F.grid_sample(
        grid, (points * 2 - 1).reshape(b, r * m, m, 2), mode="bilinear", padding_mode="border", align_corners=False
    )
    bins = F.avg_pool2d(sampled.reshape(b, d, r, m, m).reshape(b, d * r, m, m), samples)  # (B, d*R, k, k)
    return bins.reshape(b, d, r * k * k).transpose(1, 2)

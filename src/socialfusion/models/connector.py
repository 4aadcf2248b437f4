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
        self.norm = nn.LayerNorm(d_vision, elementwise_affine=False) if cfg.input_norm else nn.Identity()
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
    sampled = F.grid_sample(grid, (points * 2 - 1).reshape(b, r * m, m, 2), mode="bilinear", padding_mode="border", align_corners=False)
    bins = F.avg_pool2d(sampled.reshape(b, d, r, m, m).reshape(b, d * r, m, m), samples)  # (B, d*R, k, k)
    return bins.reshape(b, d, r * k * k).transpose(1, 2)

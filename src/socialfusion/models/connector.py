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

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, h*w, d_v) -> (B, h'*w', d_llm), row-major like the patch grid."""
        if self.pool > 1:
            b, _, d = features.shape
            grid = features.transpose(1, 2).reshape(b, d, *self.in_grid)
            grid = F.adaptive_avg_pool2d(grid, self.grid)
            features = grid.flatten(2).transpose(1, 2)
        return self.proj(self.norm(features))

"""The heatmap readout's head: LLM hidden states at the image positions -> h x w logits -> 64 x 64 logits (the
gaze task's grid); its loss is the task's (`tasks/gaze.py`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..tasks.gaze import HEATMAP_SIZE


class GazeHead(nn.Module):
    def __init__(self, d_llm: int, grid: tuple[int, int], inout: bool = True, size: int = HEATMAP_SIZE):
        super().__init__()
        self.grid = grid
        self.size = size
        self.to_logit = nn.Linear(d_llm, 1)
        self.inout = nn.Linear(d_llm, 1) if inout else None

    def forward(self, image_hidden: torch.Tensor, last_hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        """image_hidden (B, h*w, d), last_hidden (B, d) -> log-probabilities over the 64 x 64 grid and in/out logit."""
        b = image_hidden.shape[0]
        logits = self.to_logit(image_hidden).float().view(b, 1, *self.grid)
        logits = F.interpolate(logits, size=(self.size, self.size), mode="bilinear", align_corners=False)
        out = {"heatmap_logits": logits.view(b, self.size, self.size)}
        if self.inout is not None:
            out["inout_logit"] = self.inout(last_hidden).float().squeeze(-1)
        return out


def heatmap_prediction(head_out: dict) -> dict[str, torch.Tensor]:
    """Head output -> {"heatmap": (B, 64, 64) probabilities, "inout": (B,) probability when the head has one}."""
    logits = head_out["heatmap_logits"]
    result = {"heatmap": F.softmax(logits.flatten(1), dim=-1).view_as(logits)}
    if "inout_logit" in head_out:
        result["inout"] = torch.sigmoid(head_out["inout_logit"])
    return result

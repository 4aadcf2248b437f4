"""The heatmap readout's head: LLM hidden states at the image positions -> h x w logits -> 64 x 64 logits (the
gaze task's grid); its loss is the task's (`tasks/gaze.py`).

With `patch_keys` (`model.gaze.patch_keys`), the head also reads the encoder's full patch grid: where the
connector pools 12 x 12 patches into 4 x 4 image tokens, the image positions alone give a heatmap of 16 cells,
too coarse to separate neighbouring objects (a linear probe on the 12 x 12 patches beats the model there;
DESIGN-CHANGES 25). The fine term is a dot product between a query from the prompt's last hidden state, which
has read the question and the person's region tokens, and a key per standardised patch feature; it is added to
the coarse logits upsampled to the patch grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..tasks.gaze import HEATMAP_SIZE


class GazeHead(nn.Module):
    def __init__(
        self,
        d_llm: int,
        grid: tuple[int, int],
        inout: bool = True,
        size: int = HEATMAP_SIZE,
        patch_grid: tuple[int, int] | None = None,
        d_patch: int = 0,
        patch_keys: int = 0,
    ):
        super().__init__()
        self.grid = grid
        self.size = size
        self.to_logit = nn.Linear(d_llm, 1)
        self.inout = nn.Linear(d_llm, 1) if inout else None
        self.patch_grid = patch_grid if patch_keys else None
        if self.patch_grid is not None:
            self.query = nn.Linear(d_llm, patch_keys)
            self.key = nn.Linear(d_patch, patch_keys)

    def forward(
        self, image_hidden: torch.Tensor, last_hidden: torch.Tensor, patches: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """image_hidden (B, h*w, d), last_hidden (B, d), patches (B, H*W, d_v) the standardised patch features
        (needed with `patch_keys`) -> log-probabilities over the 64 x 64 grid and the in/out logit."""
        b = image_hidden.shape[0]
        logits = self.to_logit(image_hidden).float().view(b, 1, *self.grid)
        if self.patch_grid is not None:
            q, k = self.query(last_hidden), self.key(patches.to(last_hidden.dtype))
            fine = torch.einsum("bpd,bd->bp", k, q).float() / math.sqrt(q.shape[-1])
            logits = F.interpolate(logits, size=self.patch_grid, mode="bilinear", align_corners=False) + fine.view(
                b, 1, *self.patch_grid
            )
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

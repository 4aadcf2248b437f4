"""The gaze head: LLM hidden states at the image positions -> h x w logits -> 64 x 64 distribution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEATMAP_SIZE = 64


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
        losses["inout"] = F.binary_cross_entropy_with_logits(
            head_out["inout_logit"][known], inout[known].float()
        )
    return losses

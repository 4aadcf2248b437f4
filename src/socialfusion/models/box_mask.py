"""The bounding-box embedding mask: per role, a binary h x w mask of the cells a box touches, times a learned
role embedding, added to the visual tokens. `model.box.enabled: false` is the ablation without it: the visual
tokens are the connector's output unchanged and the module holds no parameter (so nothing of it is trained or
stored in a checkpoint)."""

from __future__ import annotations

import torch
from torch import nn


def box_cell_mask(boxes: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Binary masks (..., h, w) of the grid cells each normalised xyxy box (..., 4) touches.

    Boxes are clipped to [0, 1]. Cell j spans [j/w, (j+1)/w): a box marks every cell its interior overlaps,
    so a box ending exactly on a cell border does not spill into the next cell; a box smaller than a cell
    (or of zero size) still marks the one cell it lies in.
    """
    h, w = grid
    b = boxes.clamp(0.0, 1.0)
    x_lo = torch.floor(b[..., 0] * w).clamp(max=w - 1)
    y_lo = torch.floor(b[..., 1] * h).clamp(max=h - 1)
    x_hi = torch.maximum(torch.ceil(b[..., 2] * w) - 1, x_lo).clamp(max=w - 1)
    y_hi = torch.maximum(torch.ceil(b[..., 3] * h) - 1, y_lo).clamp(max=h - 1)
    cols = torch.arange(w, device=boxes.device, dtype=boxes.dtype)
    rows = torch.arange(h, device=boxes.device, dtype=boxes.dtype)
    in_x = (cols >= x_lo[..., None]) & (cols <= x_hi[..., None])  # (..., w)
    in_y = (rows >= y_lo[..., None]) & (rows <= y_hi[..., None])  # (..., h)
    return in_y[..., :, None] & in_x[..., None, :]


def role_union_boxes(boxes: torch.Tensor, roles: torch.Tensor, n_roles: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The enclosing box of each role's boxes (B, K, 4), (B, K) -> (B, n_roles, 4) and (B, n_roles) present.

    Roles beyond n_roles count as the last one (as for the embeddings); an absent role gets a zero box.
    """
    role_idx = roles.clamp(max=n_roles - 1)
    member = (role_idx[..., None] == torch.arange(n_roles, device=roles.device)) & (roles[..., None] >= 0)  # (B, K, R)
    big = torch.finfo(boxes.dtype).max
    m = member.transpose(1, 2)[..., None]  # (B, R, K, 1)
    lo = torch.where(m, boxes[:, None, :, :2], big).amin(2)
    hi = torch.where(m, boxes[:, None, :, 2:], -big).amax(2)
    present = member.any(1)
    union = torch.where(
        present[..., None], torch.cat([lo, hi], -1), torch.zeros((), dtype=boxes.dtype, device=boxes.device)
    )
    return union, present


class BoxEmbedding(nn.Module):
    def __init__(self, roles: int, d_llm: int, grid: tuple[int, int], enabled: bool = True):
        super().__init__()
        self.roles = roles
        self.grid = grid
        self.enabled = enabled
        if enabled:
            # zero init: at step 0 the boxes change nothing, training decides how much they matter
            self.embedding = nn.Parameter(torch.zeros(roles, d_llm))
        else:
            # the ablation: no parameter at all, so no trainability plan can make one learn and no checkpoint
            # stores a tensor that never mattered
            self.register_parameter("embedding", None)

    def role_masks(self, boxes: torch.Tensor, roles: torch.Tensor) -> torch.Tensor:
        """boxes (B, K, 4), roles (B, K) with -1 for padding -> (B, R, h*w) float masks (union per role).

        Roles beyond the configured number share the last embedding (roles: 1 = the paper's single embedding).
        """
        cells = box_cell_mask(boxes, self.grid).flatten(-2)  # (B, K, h*w)
        role_idx = roles.clamp(max=self.roles - 1)
        onehot = (role_idx[..., None] == torch.arange(self.roles, device=roles.device)) & (roles[..., None] >= 0)
        masks = torch.einsum("bkr,bkn->brn", onehot.float(), cells.float())
        return (masks > 0).to(self.embedding.dtype if self.embedding is not None else torch.float32)

    def forward(self, tokens: torch.Tensor, boxes: torch.Tensor, roles: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return tokens
        masks = self.role_masks(boxes, roles)  # (B, R, N)
        return tokens + torch.einsum("brn,rd->bnd", masks.to(tokens.dtype), self.embedding.to(tokens.dtype))

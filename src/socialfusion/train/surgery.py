"""Gradient surgery for optimizer steps that hold several tasks: PCGrad (Yu, Kumar, Gupta, Levine, Hausman, Finn,
"Gradient Surgery for Multi-Task Learning", NeurIPS 2020, Algorithm 1).

Each task's gradient g_i is projected, against the other tasks' original gradients g_j taken in a random order,
onto the normal plane of every g_j it conflicts with (g_i . g_j < 0): g_i <- g_i - (g_i . g_j) / |g_j|^2 g_j. The
step uses the sum of the projected gradients. It is the remedy the gradient-conflict analysis (analysis/gradconf.py)
points at: if conflicting directions cause the negative transfer, removing them should reduce it.

Only meaningful when a step holds several tasks (`data.sampler: round_robin` with `train.grad_accum` = number of
tasks); it keeps one flat gradient per task in the step (memory: tasks x trainable parameters).
"""

from __future__ import annotations

import torch

SURGERIES = ("none", "pcgrad")


def pcgrad(grads: list[torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
    """The sum of the tasks' PCGrad-projected gradients (flat tensors of equal length); the order of the projections
    comes from `generator` (a seeded one makes a step reproducible)."""
    projected = [g.clone() for g in grads]
    for i, g_i in enumerate(projected):
        for j in torch.randperm(len(grads), generator=generator).tolist():
            if j == i:
                continue
            g_j = grads[j]
            dot = torch.dot(g_i, g_j)
            norm2 = torch.dot(g_j, g_j)
            if dot < 0 and norm2 > 0:
                g_i.sub_(dot / norm2 * g_j)
    return torch.stack(projected).sum(0)


def flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """The parameters' gradients as one fp32 vector on their device (zeros where a parameter got none): what
    gradient surgery projects, and what the gradient-conflict analysis (`analysis/gradconf.py`) compares."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params])


def set_flat_grad(params: list[torch.nn.Parameter], flat: torch.Tensor) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).to(p.dtype).clone()
        offset += n

"""Multi-process training through torchrun (or `accelerate launch`, which sets the same variables).

Gradients of the trainable parameters are averaged across ranks after backward; we do it by hand rather than
with DDP because a one-task batch leaves the other tasks' heads without gradients (DDP would need
find_unused_parameters and still hang when ranks disagree on which parameters were used).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..runtime import device_for_rank  # noqa: F401  (re-exported: the process setup lives in runtime)
from ..runtime import init_distributed as init  # noqa: F401


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_grads(model: torch.nn.Module) -> None:
    """Average the trainable gradients across ranks in one flat all-reduce."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(dist.get_world_size())
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n

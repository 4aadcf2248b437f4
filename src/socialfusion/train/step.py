"""One training step, the only one: training, gradient conflict and the benchmarks all call these.

`task_backward`: forward one task's batch, weight its loss, check it is finite, backward.
`train_step`:    zero the gradients, `task_backward` each micro-batch (the gradients are averaged across processes
                 during the last one's backward, by DDP or FSDP: `distributed.wrap`), clip, step the optimizer
                 and the schedule. With gradient surgery (`train.gradient_surgery: pcgrad`, train/surgery.py) each
                 task's gradient is kept apart, averaged across processes by hand, and combined by PCGrad.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..runtime import autocast
from . import distributed as dist_utils
from .surgery import flat_grad, pcgrad, set_flat_grad


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class StepResult:
    loss: float = 0.0  # the weighted loss summed over the micro-batches (what the optimizer minimised)
    n_supervised: int = 0
    tasks: list[str] = field(default_factory=list)
    samples: int = 0


def task_backward(
    model, batch: dict, weight: float, device, precision: str, accumulation: int = 1
) -> dict[str, torch.Tensor]:
    """Backward of `model(batch)["loss"] * weight / accumulation`; returns the detached loss and `n_supervised` of
    the model's outputs under "loss" / "n_supervised", and the scaled loss under "scaled". NonFiniteLoss on NaN/inf."""
    with autocast(device, precision):
        out = model(batch)
    loss = out["loss"] * weight / accumulation
    if not torch.isfinite(loss):
        raise NonFiniteLoss(f"loss is {loss.item()} on task {batch['task']!r}")
    loss.backward()
    return {"loss": out["loss"].detach(), "scaled": loss.detach(), "n_supervised": out["n_supervised"]}


def train_step(
    module,
    micro_batches: list[dict | None],
    optimizer,
    scheduler,
    weights: dict[str, float],
    device,
    precision: str,
    grad_clip: float | None,
    accumulation: int,
    surgery: str = "none",
    generator: torch.Generator | None = None,
) -> StepResult:
    """One optimizer step over `micro_batches` (None = a micro-batch whose every sample was a skip). `module`: the
    model, or in a multi-process run the `train_module` of `distributed.wrap`. `surgery` "pcgrad": the tasks'
    gradients are combined by PCGrad (projection order from `generator`)."""
    optimizer.zero_grad(set_to_none=True)
    result = StepResult()
    batches = dist_utils.common_micro_batches(micro_batches, device)
    params = [p for p in module.parameters() if p.requires_grad]
    apart = surgery != "none"
    task_grads: dict[str, torch.Tensor] = {}
    for i, batch in enumerate(batches):
        with dist_utils.sync_gradients(module, sync=i == len(batches) - 1 and not apart):
            out = task_backward(module, batch, weights[batch["task"]], device, precision, accumulation)
        if apart:  # this micro-batch's gradient, added to its task's; the parameters' own are cleared for the next
            g = flat_grad(params)
            task_grads[batch["task"]] = task_grads[batch["task"]] + g if batch["task"] in task_grads else g
            optimizer.zero_grad(set_to_none=True)
        result.loss += out["scaled"].item()
        result.n_supervised += int(out["n_supervised"])
        result.tasks.append(batch["task"])
        result.samples += len(batch["ids"])
    if apart and task_grads:
        set_flat_grad(params, pcgrad([dist_utils.average(g) for g in task_grads.values()], generator))
    if grad_clip:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    scheduler.step()
    return result

"""Multi-process training through torchrun (or `accelerate launch`, which sets the same variables).

`wrap(model, config, device)` returns `(train_module, model)`: the module the training step runs forward and
backward through, and the plain model that everything else uses (evaluation, checkpoints, statistics, the
parameter table). One process: both are the model. Several processes, `train.distributed`:

- `ddp`: PyTorch's DistributedDataParallel. Its bucketed all-reduce overlaps the backward pass, and gradient
  accumulation skips it with `no_sync` on all but the last micro-batch. The sampler draws each step's task from
  (seed, step) only, so every rank runs the same task and leaves the same parameters without gradient (the other
  tasks' heads), which is what DDP needs to stay in step.
- `fsdp`: FSDP2 (`fully_shard`) for the full fine-tuning baselines: each transformer block of the LLM (and of a
  trained encoder) is one shard unit, the rest of the trained model one more; a frozen, cacheable encoder stays
  whole on every rank (it also runs outside the training forward: feature cache, input statistics). Parameters
  are DTensors then, so checkpoints (`trained_state`, `optimizer_state`, `load_optimizer_state`) and evaluation
  (`unsharded`) go through the helpers here, which are plain pass-throughs without FSDP.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from ..config import Config
from ..models.checkpoint import trained_tensors
from ..runtime import (
    device_for_rank,  # noqa: F401  (re-exported: the process setup lives in runtime)
    init_distributed as init,  # noqa: F401
)


class DistributedError(RuntimeError):
    pass


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def finish_process(code: int = 0) -> int:
    """The last call of a multi-process program that succeeded, made by every rank: returns `code` in one process;
    in several, leaves the process group and ends the process with `code` (it does not return).

    Why it ends the process itself: a gloo worker thread releases a finished collective's tensors just after the
    caller has been told the collective is done, and releasing a tensor that Python also references takes the
    GIL. If the interpreter has begun finalizing by then, CPython ends that thread with pthread_exit inside a
    noexcept destructor and libstdc++ aborts the whole process: "terminate called without an active exception",
    SIGABRT, after all the work was done (the backtrace: docs/RELIABILITY.md, "Two-process abort").
    destroy_process_group joins those threads only when nothing else holds the group, and DDP's reducer holds it
    for the rest of the process, so after a DDP run they outlive it. Skipping interpreter finalization (os._exit)
    is what removes the race; the barrier first means no rank closes its end of the store or of the gloo pairs
    while another still uses them. Everything a run writes is closed by then; the streams are flushed here."""
    if not dist.is_initialized():
        return code
    dist.barrier()
    dist.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def average(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` averaged across processes (itself in one process); for gradients kept outside DDP's buckets."""
    if world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor /= world_size()
    return tensor


def strategy(config: Config) -> str:
    """ddp or fsdp, as `train.distributed` asks; "auto": fsdp when an LLM or image encoder is fully fine-tuned
    (the baselines whose weights, gradients and Adam moments outgrow one device at 7B), ddp otherwise."""
    if config.train.distributed != "auto":
        return config.train.distributed
    return "fsdp" if config.model.fine_tunes_fully() else "ddp"


def wrap(model: nn.Module, config: Config, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """(train_module, model): see the module docstring. Call before building the optimizer (FSDP replaces the
    parameters with sharded ones)."""
    if world_size() == 1:
        return model, model
    if strategy(config) == "fsdp":
        _fully_shard(model)
        return model, model
    # find_unused_parameters: a step's task leaves the other tasks' parameters (the gaze head, say) without a
    # gradient, and which ones changes from step to step (even within a step, between accumulated micro-batches),
    # so static_graph, which records one fixed set, would be wrong, and with neither DDP raises at the next step
    # for the gradients it still waits for. Its price is one walk of the autograd graph per synchronised backward.
    # DDP leaves the gradient of a parameter no rank used at None, as one process does, so AdamW skips it in both.
    # broadcast_buffers off: no forward of these models changes a buffer (no batch norm); the fitted input
    # statistics are measured identically on every rank before training.
    ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel(
        model, device_ids=ids, find_unused_parameters=True, broadcast_buffers=False
    )
    return ddp, model


def _blocks(model: nn.Module, skip: nn.Module | None) -> list[nn.Module]:
    """The transformer blocks: items of every `layers`/`layer` ModuleList (Hugging Face's name for a decoder's or
    a vision tower's blocks), outside `skip` and outside blocks already found (FSDP units cannot nest that way)."""
    outside = [f"{n}." for n, m in model.named_modules() if m is skip]
    found = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "layer"):
            if not any(f"{name}.".startswith(prefix) for prefix in outside):
                found.extend(module)
                outside.extend(f"{name}.{i}." for i in range(len(module)))
    return found


def _fully_shard(model: nn.Module) -> None:
    from torch.distributed.fsdp import fully_shard

    frozen_encoder = getattr(model, "cacheable_encoder", None)
    blocks = _blocks(model, frozen_encoder)
    if not blocks:
        raise DistributedError(
            "train.distributed=fsdp: found no transformer blocks (a "
            f"'layers' ModuleList) in {type(model).__name__} to shard"
        )
    for block in blocks:
        fully_shard(block)  # gathered for its forward and again for its backward, freed in between
    # the root unit (connector, embeddings, heads...) stays gathered from forward to backward: it is small
    ignored = set(frozen_encoder.parameters()) if frozen_encoder is not None else None
    fully_shard(model, ignored_params=ignored, reshard_after_forward=False)
    # FSDP decides which unit is the root on the first forward it sees; evaluation and the statistics call the
    # blocks without going through the model's forward, so settle it now (otherwise FSDP refuses a later root).
    # No public call does only this (torch 2.13): `register_fsdp_forward_method` would settle the root too, but
    # it also runs FSDP's pre- and post-forward hooks (the root's all-gather, input handling) around each
    # registered method, which changes what evaluation and the statistics do
    model._get_fsdp_state()._lazy_init()


def _fsdp_units(model: nn.Module) -> list:
    """The model's FSDP units; none in a single process (`wrap` shards only across processes), where the FSDP
    package, slow to import, is never loaded."""
    if world_size() == 1:
        return []
    from torch.distributed.fsdp import FSDPModule

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextlib.contextmanager
def sync_gradients(train_module: nn.Module, sync: bool):
    """Gradient accumulation: the backward inside averages gradients across ranks only when `sync` (the last
    micro-batch); before it each rank only accumulates its own."""
    if isinstance(train_module, nn.parallel.DistributedDataParallel) and not sync:
        with train_module.no_sync():
            yield
        return
    units = _fsdp_units(train_module)
    if units and units[0] is train_module:  # the root unit: the setting reaches every unit under it
        train_module.set_requires_gradient_sync(sync)
    yield


def common_micro_batches(micro_batches: list[dict | None], device: torch.device) -> list[dict]:
    """The micro-batches every rank can run: one whose every sample some rank skipped (None) is dropped on all
    ranks, since DDP and FSDP need each rank to run the same forwards and backwards (their collectives pair up).
    One small all-reduce per step across ranks, on `device` (NCCL reduces only CUDA tensors)."""
    present = [b is not None for b in micro_batches]
    if world_size() > 1:
        flags = torch.tensor(present, dtype=torch.int32, device=device)
        dist.all_reduce(flags, op=dist.ReduceOp.MIN)
        present = flags.bool().tolist()
    return [b for b, keep in zip(micro_batches, present) if keep]


@contextlib.contextmanager
def unsharded(model: nn.Module):
    """Every FSDP unit gathered, for code that calls the model outside its training forward (evaluation,
    prediction): inside, the blocks' forwards gather and free nothing, so ranks may run different numbers of
    forwards (sharded evaluation) without a collective left waiting. Costs one full copy of the parameters per
    rank while it lasts. A no-op without FSDP."""
    units = _fsdp_units(model)
    for unit in units:
        unit.unshard()  # collective: every rank gathers the same units in the same order
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
    try:
        yield model
    finally:
        for unit in units:
            unit.set_reshard_after_forward(unit is not model, recurse=False)  # as _fully_shard set them
            unit.reshard()


def trained_state(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """What a checkpoint stores (`models.checkpoint.trained_tensors`) as full CPU tensors: on rank 0, or in a
    single process, the dict; on other ranks None. Under FSDP every rank must call it (it gathers each sharded
    tensor, one at a time, so no rank holds more than one gathered tensor beyond rank 0's CPU copy)."""
    rank0 = not dist.is_initialized() or dist.get_rank() == 0
    sharded = _sharded(model)
    if sharded:
        from torch.distributed.tensor import DTensor
    out = {}
    for name, tensor in trained_tensors(model).items():
        if sharded and isinstance(tensor, DTensor):
            tensor = tensor.full_tensor()
        if rank0:
            out[name] = tensor.detach().cpu().contiguous()
    return out if rank0 else None


def _sharded(model: nn.Module) -> bool:
    return bool(_fsdp_units(model))


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state for a checkpoint. Under FSDP the full (unsharded) state keyed by parameter name,
    gathered to rank 0's CPU (every rank must call it; other ranks get {}); otherwise `optimizer.state_dict()`."""
    if not _sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict, source: str) -> None:
    """Inverse of `optimizer_state`; each rank keeps its shard of the full state it read. A checkpoint written
    with the other kind of state (an FSDP run resumed without FSDP, or the reverse) is refused, naming `source`."""
    by_name = any(isinstance(p, str) for group in state.get("param_groups", []) for p in group["params"])
    if by_name != _sharded(model):
        written, now = ("fsdp", "ddp or one process") if by_name else ("ddp or one process", "fsdp")
        raise DistributedError(
            f"{source}: optimizer state written by a {written} run, this run uses {now}; "
            "resume with the same train.distributed, on more than one process for fsdp"
        )
    if not by_name:
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    # strict off: AdamW creates a parameter's state at its first gradient, so one no task has used yet (the gaze
    # head of a run that has drawn only answer tasks) has none saved, as `optimizer.load_state_dict` accepts too
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True, strict=False))

"""Checkpoints: a directory with config.json, the trainable weights only (safetensors), the LoRA adapter in
PEFT's own format, and (for training runs) a separate resumable state. Written atomically: a directory is
complete only once its `COMPLETE` marker exists, and it appears under its final name by one rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import Config, config_from_dict
from ..runtime import versions

MODEL_TYPE = "socialfusion"
WEIGHTS = "trainable.safetensors"
MARKER = "COMPLETE"


class CheckpointError(RuntimeError):
    pass


def trainable_state_dict(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(model, config: Config, out_dir: str | Path, extra: dict | None = None, training_state: dict | None = None) -> Path:
    """Write the checkpoint into a temporary sibling, then rename it over `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        meta = {"model_type": MODEL_TYPE, "config": config.to_dict(), "versions": versions(), **(extra or {})}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        save_file(trainable_state_dict(model), str(tmp / WEIGHTS), metadata={"format": "pt"})
        if hasattr(model.llm, "peft_config"):
            model.llm.save_pretrained(str(tmp / "adapter"))
        if training_state is not None:
            torch.save(training_state, tmp / "training_state.pt")
        (tmp / MARKER).write_text("ok\n")
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        _fsync_dir(out_dir.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_checkpoint_config(ckpt: str | Path) -> tuple[Config, dict]:
    ckpt = Path(ckpt)
    if not (ckpt / MARKER).exists():
        raise CheckpointError(f"{ckpt}: not a complete checkpoint (no {MARKER} marker; was the write interrupted?)")
    try:
        meta = json.loads((ckpt / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{ckpt / 'config.json'}: unreadable ({err})") from err
    if meta.get("model_type") != MODEL_TYPE:
        raise CheckpointError(f"{ckpt}: model_type is {meta.get('model_type')!r}, expected {MODEL_TYPE!r}")
    return config_from_dict(meta["config"]), meta


def load_trainable(model, ckpt: str | Path, strict: bool = True) -> dict[str, list[str]]:
    """Load trainable weights; reports missing and unexpected keys (raises on either when strict)."""
    path = Path(ckpt) / WEIGHTS
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read weights ({err})") from err
    expected = {n for n, p in model.named_parameters() if p.requires_grad}
    report = {"missing": sorted(expected - set(state)), "unexpected": sorted(set(state) - expected)}
    if strict and (report["missing"] or report["unexpected"]):
        raise CheckpointError(f"{path}: missing keys {report['missing'][:5]}, unexpected keys {report['unexpected'][:5]}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in state.items():
            if name in params:
                if params[name].shape != tensor.shape:
                    raise CheckpointError(f"{path}: {name} has shape {tuple(tensor.shape)}, model expects {tuple(params[name].shape)}")
                params[name].copy_(tensor)
    return report


def load_model(ckpt: str | Path):
    """Rebuild the model from a checkpoint's config and load its trainable weights."""
    from .factory import build_model

    config, _ = read_checkpoint_config(ckpt)
    model = build_model(config.model, tasks=tasks_from_config(config))
    load_trainable(model, ckpt)
    return model, config


def tasks_from_config(config: Config) -> dict:
    """All five tasks, with the options the config gives its listed tasks (e.g. relation level, 7-class)."""
    from ..tasks import TASK_NAMES, build_task

    options = {td.task: td.task_options for td in config.data.tasks}
    return {name: build_task(name, **options.get(name, {})) for name in TASK_NAMES}

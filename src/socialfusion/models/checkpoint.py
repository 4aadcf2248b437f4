"""Checkpoints: a directory with config.json, the trained tensors only (one safetensors file: every parameter
that learns, LoRA adapters included, and the fitted statistics; each tensor stored once), and (for training runs)
a separate resumable state. `load_model` rebuilds the model from the config and loads them; `merge-lora` merges
the LLM's adapters from that rebuilt model. Written atomically: a directory is
complete only once its `COMPLETE` marker exists, and it appears under its final name by one rename (an atomic
exchange with the previous checkpoint where the OS has one). `checksums.json` holds the sha256 of the weights and
of the training state: safetensors does not checksum tensor bytes, so a flipped byte is caught only by this.
`model_card.json` and `MODEL_CARD.md` (`models.card`) say what the checkpoint learned from and what it is for."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..config import Config, config_from_dict
from ..errors import UserError
from ..hashing import file_sha256
from ..runtime import versions
from ..tasks import tasks_from_config
from . import factory
from .card import build_card, write_card
from .connector import FITTED_BUFFERS

MODEL_TYPE = "socialfusion"
WEIGHTS = "trainable.safetensors"
MARKER = "COMPLETE"
TRAINING_STATE = "training_state.pt"
CHECKSUMS = "checksums.json"
CHECKSUMMED = (WEIGHTS, TRAINING_STATE)


class CheckpointError(UserError, RuntimeError):
    pass


def fitted_buffers(model) -> dict[str, torch.Tensor]:
    """Buffers that hold statistics measured on the training data (`connector.FITTED_BUFFERS`)."""
    return {n: b for n, b in model.named_buffers() if n.rsplit(".", 1)[-1] in FITTED_BUFFERS}


def trained_tensors(model) -> dict[str, torch.Tensor]:
    """What training changes, by name: the parameters that require gradients, and the fitted statistics."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad} | fitted_buffers(model)


def trainable_state_dict(model) -> dict[str, torch.Tensor]:
    return {n: t.detach().cpu().contiguous() for n, t in trained_tensors(model).items()}


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_sha256 = file_sha256


def verify_checksums(ckpt: str | Path, names: tuple[str, ...] = CHECKSUMMED) -> None:
    """Compare the files `names` (those present in checksums.json) with their recorded sha256; CheckpointError
    naming the file on a mismatch. Checkpoints written before checksums existed (no checksums.json) pass."""
    ckpt = Path(ckpt)
    try:
        recorded = json.loads((ckpt / CHECKSUMS).read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{ckpt / CHECKSUMS}: unreadable ({err})") from err
    if not isinstance(recorded, dict):
        raise CheckpointError(f"{ckpt / CHECKSUMS}: expected an object {{file: sha256}}")
    for name in names:
        if name not in recorded:
            continue
        path = ckpt / name
        try:
            actual = _sha256(path)
        except OSError as err:
            raise CheckpointError(f"{path}: cannot read ({err})") from err
        if actual != recorded[name]:
            raise CheckpointError(
                f"{path}: checksum mismatch (sha256 {actual[:16]}..., recorded {str(recorded[name])[:16]}...): "
                "the file is corrupt or was modified; refusing to load it"
            )


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this kernel or filesystem cannot; use two renames
        return False
    raise OSError(err, os.strerror(err), str(b))


def save_checkpoint(
    model,
    config: Config,
    out_dir: str | Path,
    extra: dict | None = None,
    training_state: dict | None = None,
    card: dict | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the checkpoint into a temporary sibling, then rename it over `out_dir`. A failed write (e.g. a full
    disk) raises CheckpointError naming `out_dir`, removes the temporary and leaves `out_dir` as it was.
    `card`: what the model card says about the training run (`models.card.build_card`'s facts); every checkpoint
    gets a card, one written without facts says its data are not recorded. `tensors`: the trained tensors when
    the caller gathered them (`train.distributed.trained_state`, for sharded parameters); default: the model's."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        meta = {"model_type": MODEL_TYPE, "config": config.to_dict(), "versions": versions(), **(extra or {})}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        write_card(build_card(model, config, card), tmp)
        save_file(
            trainable_state_dict(model) if tensors is None else tensors, str(tmp / WEIGHTS), metadata={"format": "pt"}
        )
        if training_state is not None:
            torch.save(training_state, tmp / TRAINING_STATE)
        sums = {name: _sha256(tmp / name) for name in CHECKSUMMED if (tmp / name).is_file()}
        (tmp / CHECKSUMS).write_text(json.dumps(sums, indent=1))
        (tmp / MARKER).write_text("ok\n")
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        old = None
        if out_dir.is_dir() and _exchange(tmp, out_dir):
            old = tmp  # now holds the previous checkpoint; `out_dir` was never missing
        else:
            if out_dir.exists():
                old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
                os.replace(out_dir, old)
            os.replace(tmp, out_dir)
    except (
        Exception
    ) as err:  # a full disk shows up as OSError, SafetensorError or torch's "unexpected pos" RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            free = f"{shutil.disk_usage(out_dir.parent).free} bytes free there"
        except OSError:
            free = "free space unknown"
        raise CheckpointError(
            f"{out_dir}: cannot write the checkpoint ({type(err).__name__}: {err}; {free}); "
            "the previous checkpoint there, if any, is kept"
        ) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(out_dir.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return out_dir


def _not_a_checkpoint(ckpt: Path) -> CheckpointError:
    """Why `ckpt` (no COMPLETE marker) is not a checkpoint, with the path that probably was meant."""
    if not ckpt.exists():
        return CheckpointError(f"checkpoint {ckpt} does not exist")
    if not ckpt.is_dir():
        return CheckpointError(f"{ckpt} is a file; a checkpoint is a directory (e.g. RUN/checkpoints/last)")
    for meant in (ckpt / "checkpoints" / "last", ckpt / "last"):  # a run folder, or its checkpoints folder
        if (meant / MARKER).exists():
            return CheckpointError(f"{ckpt} is not a checkpoint but holds one", hint=f"did you mean {meant}?")
    where = "a checkpoint is a training run's RUN/checkpoints/last or RUN/checkpoints/best"
    written = (
        "config.json",
        CHECKSUMS,
        *CHECKSUMMED,
        "model_card.json",
        "MODEL_CARD.md",
    )  # what save_checkpoint writes
    if any((ckpt / name).exists() for name in written):
        return CheckpointError(
            f"{ckpt}: not a complete checkpoint (no {MARKER} marker; was the write interrupted?)",
            hint="resume the run with --resume, or use another checkpoint (e.g. RUN/checkpoints/best)",
        )
    if not any(ckpt.iterdir()):
        return CheckpointError(f"{ckpt}: not a complete checkpoint (an empty directory)", hint=where)
    return CheckpointError(f"{ckpt} is not a checkpoint (no config.json, no {MARKER} marker)", hint=where)


def read_checkpoint_config(ckpt: str | Path) -> tuple[Config, dict]:
    ckpt = Path(ckpt)
    if not (ckpt / MARKER).exists():
        raise _not_a_checkpoint(ckpt)
    try:
        meta = json.loads((ckpt / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{ckpt / 'config.json'}: unreadable ({err})") from err
    if meta.get("model_type") != MODEL_TYPE:
        raise CheckpointError(f"{ckpt}: model_type is {meta.get('model_type')!r}, expected {MODEL_TYPE!r}")
    verify_checksums(ckpt)  # the whole checkpoint: a resume reads the training state right after this
    return config_from_dict(meta["config"]), meta


def load_trainable(model, ckpt: str | Path, strict: bool = True) -> dict[str, list[str]]:
    """Load trainable weights; reports missing and unexpected keys (raises on either when strict)."""
    path = Path(ckpt) / WEIGHTS
    verify_checksums(ckpt, (WEIGHTS,))
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: cannot read weights ({err})") from err
    targets = trained_tensors(model)
    expected = set(targets)
    report = {"missing": sorted(expected - set(state)), "unexpected": sorted(set(state) - expected)}
    if strict and (report["missing"] or report["unexpected"]):
        raise CheckpointError(
            f"{path}: missing keys {report['missing'][:5]}, unexpected keys {report['unexpected'][:5]}"
        )
    with torch.no_grad():
        for name, tensor in state.items():
            if name in targets:
                if targets[name].shape != tensor.shape:
                    raise CheckpointError(
                        f"{path}: {name} has shape {tuple(tensor.shape)}, model expects {tuple(targets[name].shape)}"
                    )
                if hasattr(targets[name], "device_mesh"):  # a DTensor, sharded by FSDP: this rank keeps its part
                    from torch.distributed.tensor import distribute_tensor

                    tensor = distribute_tensor(
                        tensor.to(targets[name].to_local().device),
                        targets[name].device_mesh,
                        targets[name].placements,
                        src_data_rank=None,
                    )
                targets[name].copy_(tensor)
    return report


def load_model(ckpt: str | Path):
    """Rebuild the model from a checkpoint's config and load its trainable weights."""
    config, _ = read_checkpoint_config(ckpt)
    model = factory.build_model(config.model, tasks=tasks_from_config(config))
    load_trainable(model, ckpt)
    return model, config

"""Device and precision, resolved once; nothing else in the library picks a device."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import warnings

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: a container's or `taskset`'s limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads(cores: int | None = None) -> int:
    """Intra-op threads for inference when none are asked for: half the cores, at least one. On the shared 2-core
    machine this is 1: a 640x480 prediction took about the same time with 1 or 2 threads on a quiet machine and
    several times longer with 2 when other jobs held the cores (benchmarks/threads.py, docs/USAGE.md "Threads")."""
    return max(1, (available_cores() if cores is None else cores) // 2)


def set_threads(threads: int | str | None = "auto") -> int:
    """Set torch's intra-op CPU threads for this process (a process-wide setting) and return the count in effect:
    an int >= 1, "auto" (`default_threads`) or None (leave torch's current setting)."""
    if threads is None:
        return torch.get_num_threads()
    if threads == "auto":
        threads = default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, 'auto' or None, got {threads!r}")
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


THREADS_HELP = (
    "CPU threads for the model and the detectors: a count or auto (half the cores, at least 1; the "
    "default, measured in docs/USAGE.md 'Threads')"
)


def parse_threads(text: str) -> int | str:
    """A --threads value: "auto" or an integer >= 1 (argparse `type=`: a bad value is a one-line usage error)."""
    import argparse

    if text.strip().lower() == "auto":
        return "auto"
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--threads must be a count >= 1 or auto, got {text!r}")
    return int(text)


def init_distributed() -> tuple[int, int]:
    """(rank, world size) of this process; joins the process group when torchrun (or `accelerate launch`) started
    several processes (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def device_for_rank(name: str = "auto") -> torch.device:
    """The device of this process in a multi-process run: cuda:LOCAL_RANK (made current) when CUDA is there."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 / AMX); without them bf16 matmuls fall
    back to slow emulation."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        return False


_warned_slow_bf16 = False


def _warn_slow_bf16_once() -> None:
    global _warned_slow_bf16
    if _warned_slow_bf16:
        return
    _warned_slow_bf16 = True
    warnings.warn(
        "precision bf16 was asked for on a CPU without native bf16 support "
        "(torch.ops.mkldnn._is_mkldnn_bf16_supported() is False): bf16 matmuls are emulated here and run much "
        "slower than fp32 (a training step measured ~23x slower on an AVX2 CPU). Use precision fp32 (or auto) on "
        "this machine.",
        RuntimeWarning,
        stacklevel=3,
    )


def cuda_has_bf16() -> bool:
    """Whether the current CUDA device computes bf16 natively (compute capability 8.0+: Ampere, Hopper...)."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8


def precision_for(device_type: str, precision: str, native_bf16: bool) -> str:
    """The rule, without detection: an explicit 'fp32'/'bf16' is kept; 'auto' is bf16 where the device computes
    bf16 natively (a CUDA GPU or a CPU with native bf16 kernels), fp32 elsewhere (MPS included)."""
    if precision in ("fp32", "bf16"):
        return precision
    if precision != "auto":
        raise ValueError(f"precision must be fp32, bf16 or auto, got {precision!r}")
    return "bf16" if device_type in ("cuda", "cpu") and native_bf16 else "fp32"


def resolve_precision(device: torch.device | str, precision: str) -> str:
    """'bf16' or 'fp32' for this device: the one place `precision: auto` is decided (autocast, the feature cache's
    dtype and the benchmarks all ask here)."""
    device = torch.device(device)
    native = cuda_has_bf16() if device.type == "cuda" else cpu_has_bf16() if device.type == "cpu" else False
    return precision_for(device.type, precision, native)


def compute_dtype(device: torch.device | str, precision: str) -> torch.dtype:
    return torch.bfloat16 if resolve_precision(device, precision) == "bf16" else torch.float32


def autocast(device: torch.device, precision: str):
    """bf16 autocast where `resolve_precision` says bf16, fp32 (no autocast) otherwise. Asking for bf16 on a CPU
    without native bf16 still gets it (results stay valid), with a warning, once, that it is slow."""
    if resolve_precision(device, precision) == "bf16":
        if device.type == "cpu" and not cpu_has_bf16():
            _warn_slow_bf16_once()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("socialfusion", "torch", "transformers", "peft", "accelerate", "safetensors", "numpy", "scikit-learn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "absent"
    return out


def git_revision() -> str | None:
    import subprocess
    from pathlib import Path

    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None

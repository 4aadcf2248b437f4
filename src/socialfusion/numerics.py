"""What each compute precision promises, and what this machine computes bf16 with.

The one place for (1) how far apart two computations of the same answer may be in fp32 and in bf16: the batching
promise of docs/USAGE.md and every precision-dependent test tolerance read `TOLERANCES` (docs/RELIABILITY.md,
"Precision"); and (2) the facts `socialfusion --version` prints and every benchmark result records: whether this
CPU has native bf16 kernels and what `precision: auto` resolves to here (`runtime.resolve_precision` decides it).

Why bf16 needs its own bounds: autocast rounds every matmul's inputs to bf16, 8 significant bits (unit roundoff
2^-8 = 0.0039). Two computations of the same answer that group the work differently (one image or a batch, one task
or several packed on one prefix, a whole batch or its halves on two processes) differ in fp32 only by the order of
their sums (~1e-7 relative), but that tiny difference sometimes puts an activation on the other side of a bf16
rounding boundary: one bf16 step (up to 2^-7 relative) where fp32 would differ by 1e-7, carried on by every
layer after it. The same reasoning bounds fp32 by its own unit roundoff, 2^-24 = 6e-8.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import torch

from . import runtime


@dataclass(frozen=True)
class Tolerance:
    """How far apart two computations of the same quantity by the same model may be in one precision when they
    group the work differently (see the module docstring). Absolute unless marked; the measurements behind each
    are in the comments of TOLERANCES (benchmarks/batching.py, and the tests that use them)."""

    probability: float  # a class probability (lam, expression, gesture, relation) or gaze's in/out probability
    heatmap: float  # one cell of a 64x64 gaze heatmap (the cells sum to 1)
    log_prob: float  # a class log-probability as the model returns it (scoring paths compared inside the model)
    loss: float  # relative: a training loss against the stored fp32 loss sequence of the same steps
    weight_step: float  # a trained weight of a multi-process run against one process, per unit of lr x steps


TOLERANCES = {
    # fp32: sums in another order, ~1e-7 relative per operation. Measured (benchmarks/results/batching.md, the
    # tests): probabilities 1.8e-6 (default preset) and 6e-8 (tiny), heatmap cells 9e-10, class log-probabilities
    # 1e-6, two processes against one 3e-8 (toy, lr 1e-2 x 3 steps). The bounds leave a decade or more and stay
    # far below any change that means something (another box, another prompt: 1e-3 and more).
    "fp32": Tolerance(probability=1e-5, heatmap=1e-5, log_prob=1e-5, loss=1e-4, weight_step=1e-3),
    # bf16: a rounding flipped by the other grouping, carried through the network. Measured: probabilities up to
    # 1.5e-2 on the default preset (32 scenes, 128 answers; bf16 against fp32 differs by as much, 1.8e-2; 2.6e-2
    # in a run before its LLM was cut from 8 layers to 4) and 6.9e-4 on the tiny one, heatmap cells 6.4e-6
    # (1.1e-5 then), class log-probabilities 2.0e-3 (tiny), the 6-step loss sequence 1.9e-4 relative to fp32,
    # two processes against one 9.7e-5 = 3.2e-3 x lr x steps. Each bound is about twice (probability, over the
    # earlier run) to ten times the largest measured; the loss bound is one bf16 rounding (2^-8).
    "bf16": Tolerance(probability=5e-2, heatmap=1e-4, log_prob=2e-2, loss=4e-3, weight_step=3e-2),
}


def tolerance(precision: str) -> Tolerance:
    """The bounds of 'fp32' or 'bf16' (a resolved precision: `runtime.resolve_precision` turns 'auto' into one)."""
    if precision not in TOLERANCES:
        raise ValueError(f"tolerance: precision must be fp32 or bf16 (resolve 'auto' first), got {precision!r}")
    return TOLERANCES[precision]


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), or what `platform` knows elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_bf16_flags() -> list[str]:
    """The CPU's bf16 instruction sets that Linux reports (avx512_bf16, amx_bf16, ...); [] elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return sorted({f for f in flags if "bf16" in f})


def precision_facts() -> dict:
    """What this machine computes in: the CPU, whether oneDNN has native bf16 kernels on it, what `precision: auto`
    resolves to on the CPU, and the same for the current CUDA device when there is one. Recorded by the
    benchmarks next to their figures: a bf16 number means little without knowing whether bf16 was native."""
    # read through the module, not bound here, so that a test's monkeypatch of runtime's probes is seen
    facts = {
        "cpu": cpu_name(),
        "cpu_cores": runtime.available_cores(),
        "cpu_native_bf16": runtime.cpu_has_bf16(),
        "cpu_bf16_flags": cpu_bf16_flags(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_auto_precision": runtime.resolve_precision("cpu", "auto"),
        "cuda": None,
    }
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        facts["cuda"] = {
            "name": torch.cuda.get_device_name(),
            "capability": f"{major}.{minor}",
            "native_bf16": runtime.cuda_has_bf16(),
            "auto_precision": runtime.resolve_precision("cuda", "auto"),
        }
    return facts


def format_precision_facts(facts: dict) -> list[str]:
    """The lines `socialfusion --version` prints after the version."""
    flags = f" ({', '.join(facts['cpu_bf16_flags'])})" if facts["cpu_bf16_flags"] else ""
    native = "yes" + flags if facts["cpu_native_bf16"] else "no (bf16 is emulated: correct, much slower)"
    lines = [
        f"cpu: {facts['cpu']}, {facts['cpu_cores']} cores, {facts['cpu_capability']}; native bf16: {native}; "
        f"precision auto -> {facts['cpu_auto_precision']}"
    ]
    cuda = facts["cuda"]
    if cuda:
        lines.append(
            f"cuda: {cuda['name']} (compute {cuda['capability']}); native bf16: "
            f"{'yes' if cuda['native_bf16'] else 'no'}; precision auto -> {cuda['auto_precision']}"
        )
    else:
        lines.append("cuda: none")
    return lines

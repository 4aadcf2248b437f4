#!/usr/bin/env python
"""`make benchmark-gpu`: the `paper` preset at full size on the accelerator, random weights, no download.

    make benchmark-gpu        # paper preset, resolved device (the GPU), bf16: results/gpu-paper.{json,md}
    .venv/bin/python benchmarks/gpu.py --preset tiny --device cpu --precision fp32 --batch-size 2 \\
        --predict-batch-size 4 --steps 2 --warmup 1   # the CPU check of tests/integration/test_benchmark_gpu.py

The model is built from the preset's architecture JSONs (CLIP ViT-L/14-336 and Qwen2.5-7B-Instruct for `paper`)
with random weights, directly on the device: frozen weights in the compute dtype (bf16 where the device has it,
`runtime.resolve_precision`), trainable ones (LoRA, connector, box embedding, heads) in fp32, as `plan` assumes.
Prompts come from the in-process tokenizer (as in `plan`); the LLM keeps its real vocabulary size. Throughput
does not depend on the weights' values.

Measured:
  peak     the device's matmul throughput in the compute dtype (the best of several timed n x n matmuls)
  train    one optimiser step through `socialfusion.train.step.train_step` (batch `train.batch_size`, 16 for
           `paper`; LoRA r=64; gradient checkpointing as configured), from pixels (the frozen encoder runs each
           step: what `feature_cache: auto` picks when the cache does not fit) and from features (the cache):
           median, min, max seconds over `--steps` after `--warmup`; tokens/s (LLM sequence positions); MFU =
           plan's model FLOPs per step / seconds / measured peak (gradient-checkpointing recomputation is not
           counted, the usual convention); peak memory (torch.cuda.max_memory_allocated) against plan's estimate
  predict  `model.predict` at batch 32 from pixels: images/s

Targets on a GPU (reported, never asserted here): MFU >= 40 % of the measured bf16 peak; peak training memory
within 25 % of `plan`'s estimate.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from harness.stats import table_head

HERE = Path(__file__).resolve().parent
TASK = "expression"
MFU_TARGET = 0.40
MEMORY_TOLERANCE = 0.25


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 10) -> dict:
    """The best FLOP/s of an n x n x n matmul (2 n^3 FLOPs) over `repeats` timed runs, after three warm-ups."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t0)
    return {
        "n": n,
        "dtype": str(dtype).replace("torch.", ""),
        "flops_per_s": 2 * n**3 / min(times),
        "median_flops_per_s": 2 * n**3 / statistics.median(times),
    }


def build(preset: str, device: torch.device, precision: str, batch_size: int | None, overrides: list[str] = ()):
    """(config, model) of the preset with random weights, built on `device`."""
    from socialfusion.config import load_config
    from socialfusion.models.socialfusion import SocialFusionModel
    from socialfusion.models.tiny_tokenizer import build_tiny_tokenizer
    from socialfusion.runtime import compute_dtype
    from socialfusion.tasks import tasks_from_config

    config = load_config(
        preset,
        [*overrides, f"train.precision={precision}"] + ([f"train.batch_size={batch_size}"] if batch_size else []),
    )
    for part in (config.model.encoder, config.model.llm):
        if part.arch is None:
            raise SystemExit(
                f"preset {preset!r}: {part.pretrained!r} has no architecture "
                "JSON (`arch`), so it cannot be built without a download"
            )
        part.pretrained = None
    dtype = compute_dtype(device, precision)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(
        dtype
    )  # frozen weights are created in the compute dtype, on the device, never in fp32 first
    try:
        with torch.device(device):
            tokenizer = None if config.model.llm.tokenizer == "tiny" else build_tiny_tokenizer()
            model = SocialFusionModel(config.model, tasks=tasks_from_config(config), tokenizer=tokenizer)
    finally:
        torch.set_default_dtype(previous)
    model.to(device)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # fp32 master weights for what the optimiser updates
    return config, model


def make_batch(model, b: int, seed: int = 0) -> dict:
    """`b` samples of the task (labels cycling over the classes, one role-0 box each, random pixels) collated by
    the library's `collate`."""
    from socialfusion.core.schema import Box, Sample
    from socialfusion.data.pipeline import collate

    task = model.tasks[TASK]
    g = torch.Generator().manual_seed(seed)
    side = model.encoder.image_size
    items = []
    for i in range(b):
        x, y = (torch.rand(2, generator=g) * 0.5).tolist()
        w, h = (0.2 + torch.rand(2, generator=g) * 0.3).tolist()
        sample = Sample(
            id=str(i), task=TASK, image=f"{i}.jpg", boxes=[Box((x, y, x + w, y + h), 0)], label=i % task.num_classes
        )
        items.append(
            {"sample": sample, "pixel_values": torch.randn(3, side, side, generator=g), "image_size": (640, 480)}
        )
    return collate(items, task)


class _Positions:
    """Counts the LLM's sequence positions per forward (a pre-hook on the decoder)."""

    def __init__(self, model):
        from socialfusion.models.llm import decoder_and_head

        decoder, _ = decoder_and_head(model.llm)
        self.positions = []
        self.handle = decoder.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        embeds = kwargs.get("inputs_embeds")
        if embeds is not None:
            self.positions.append(int(embeds.shape[0] * embeds.shape[1]))

    def remove(self):
        self.handle.remove()


def _timed(fn, device: torch.device, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def _summary(times: list[float]) -> dict:
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "n": len(times),
        "all_s": times,
    }


def bench_train(
    config, model, device, precision: str, use_features: bool, warmup: int, steps: int, plan: dict, peak: float
) -> dict:
    from socialfusion.train.optim import build_optimizer, build_scheduler
    from socialfusion.train.step import train_step

    b = config.train.batch_size
    batch = make_batch(model, b)
    if use_features:
        from socialfusion.runtime import autocast

        with torch.no_grad(), autocast(device, precision):
            batch = model.prepare_inputs(batch)  # what the feature cache serves (in the compute dtype)
    optimizer = build_optimizer(model, config.train)
    scheduler = build_scheduler(optimizer, config.train)
    model.train()
    losses = []

    def step():
        result = train_step(
            model, [batch], optimizer, scheduler, {TASK: 1.0}, device, precision, config.train.grad_clip, 1
        )
        losses.append(result.loss)

    counter = _Positions(model)
    step()  # the first step builds the optimiser state: not timed, not in the memory peak comparison's baseline
    counter.remove()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = _timed(step, device, max(0, warmup - 1), steps)
    s = statistics.median(times)
    flops = (
        plan["training_gflops_per_sample_with_feature_cache" if use_features else "training_gflops_per_sample"]
        * 1e9
        * b
    )
    positions = counter.positions[0] if counter.positions else None
    out = {
        "input": "features" if use_features else "pixels",
        "batch_size": b,
        **_summary(times),
        "llm_positions_per_step": positions,
        "tokens_per_s": positions / s if positions else None,
        "samples_per_s": b / s,
        "model_flops_per_step": flops,
        "achieved_flops_per_s": flops / s,
        "mfu": flops / s / peak,
        "last_loss": losses[-1],
    }
    if device.type == "cuda":
        peak_mem = torch.cuda.max_memory_allocated(device) / 1e9
        est = plan["estimated_training_memory_gb"]
        out.update(peak_memory_gb=peak_mem, plan_memory_gb=est, memory_vs_plan=peak_mem / est)
    optimizer.zero_grad(set_to_none=True)  # the optimiser and its state go with this frame
    return out


def bench_predict(model, device, precision: str, b: int, warmup: int, steps: int) -> dict:
    from socialfusion.runtime import autocast

    batch = make_batch(model, b, seed=1)
    model.eval()

    def run():
        with torch.no_grad(), autocast(device, precision):
            model.predict(batch, [TASK])

    times = _timed(run, device, warmup, steps)
    return {"batch_size": b, **_summary(times), "images_per_s": b / statistics.median(times)}


def render(r: dict) -> str:
    peak = r["peak"]
    lines = [
        f"### `{r['command']}`",
        "",
        f"{r['device_name']} ({r['device']}), precision {r['precision']}, preset `{r['preset']}`; LoRA "
        f"r={r['lora_r']}, gradient checkpointing {r['gradient_checkpointing']}; measured {peak['dtype']} matmul peak "
        f"{peak['flops_per_s'] / 1e12:.4g} TFLOP/s (n={peak['n']}); {r['started']}.",
        "",
        *table_head("measurement", "batch", "median s [min-max]", "tokens/s", "MFU", "peak memory GB (plan)"),
    ]
    for t in r["train"]:
        mem = (
            f"{t['peak_memory_gb']:.1f} ({t['plan_memory_gb']:.1f}, x{t['memory_vs_plan']:.2f})"
            if "peak_memory_gb" in t
            else "n/a (not CUDA)"
        )
        tok = f"{t['tokens_per_s']:,.0f}" if t["tokens_per_s"] else "?"
        lines.append(
            f"| train step from {t['input']} | {t['batch_size']} | {t['median_s']:.3f} "
            f"[{t['min_s']:.3f}-{t['max_s']:.3f}] | {tok} | {100 * t['mfu']:.1f} % | {mem} |"
        )
    p = r["predict"]
    lines.append(
        f"| predict from pixels | {p['batch_size']} | {p['median_s']:.3f} "
        f"[{p['min_s']:.3f}-{p['max_s']:.3f}] | {p['images_per_s']:.1f} images/s | | |"
    )
    lines.append("")
    for name, t in r["targets"].items():
        lines.append(f"- {name}: {t}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("overrides", nargs="*", help="key.sub=value config overrides, e.g. model.llm.lora.r=16")
    ap.add_argument("--device", default="auto", help="runtime.resolve_device: auto = the GPU when there is one")
    ap.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "fp32"],
        help="runtime.resolve_precision (auto: bf16 on a GPU)",
    )
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="training batch (default: the preset's train.batch_size, 16 for paper)",
    )
    ap.add_argument("--predict-batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median over them)")
    ap.add_argument(
        "--matmul-n", type=int, default=None, help="side of the peak matmul (default 8192 on CUDA, 512 elsewhere)"
    )
    ap.add_argument("--inputs", default="pixels,features", help="training inputs to measure: pixels, features or both")
    ap.add_argument("--out", default=None, help="write the JSON here and the markdown block next to it (.md)")
    args = ap.parse_args(argv)

    from socialfusion.config import split_list
    from socialfusion.numerics import precision_facts
    from socialfusion.plan import estimate
    from socialfusion.runtime import compute_dtype, resolve_device, resolve_precision

    device = resolve_device(args.device)
    precision = resolve_precision(device, args.precision)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    peak = matmul_peak(
        device, compute_dtype(device, precision), args.matmul_n or (8192 if device.type == "cuda" else 512)
    )
    config, model = build(args.preset, device, precision, args.batch_size, args.overrides)
    plan = estimate(config, batch_size=config.train.batch_size)
    train = [
        bench_train(
            config, model, device, precision, kind == "features", args.warmup, args.steps, plan, peak["flops_per_s"]
        )
        for kind in split_list(args.inputs) or []
    ]
    predict = bench_predict(model, device, precision, args.predict_batch_size, args.warmup, args.steps)
    on_gpu = device.type == "cuda"
    targets = {}
    for t in train:
        targets[f"MFU from {t['input']} >= {100 * MFU_TARGET:.0f} % of the measured peak"] = (
            ("met" if t["mfu"] >= MFU_TARGET else "NOT met") + f" ({100 * t['mfu']:.1f} %)"
            if on_gpu and precision == "bf16"
            else "not applicable (bf16 on a GPU only)"
        )
        if on_gpu:
            targets[f"peak memory from {t['input']} within {100 * MEMORY_TOLERANCE:.0f} % of plan"] = (
                "met" if abs(t["memory_vs_plan"] - 1) <= MEMORY_TOLERANCE else "NOT met"
            ) + f" (x{t['memory_vs_plan']:.2f})"
    report = {
        "command": "benchmarks/gpu.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "started": started,
        "preset": args.preset,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if on_gpu else "CPU",
        "precision": precision,
        "machine_precision": precision_facts(),  # the CPU's native bf16 and what auto resolves to, CPU and GPU
        "lora_r": config.model.llm.lora.r,
        "gradient_checkpointing": config.model.llm.gradient_checkpointing,
        "torch": torch.__version__,
        "peak": peak,
        "plan": {
            k: plan[k]
            for k in (
                "sequence_length",
                "estimated_training_memory_gb",
                "training_gflops_per_sample",
                "training_gflops_per_sample_with_feature_cache",
            )
        },
        "train": train,
        "predict": predict,
        "targets": targets,
    }
    report["command"] = report["command"].strip()
    text = render(report)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
        out.with_suffix(".md").write_text(text + "\n")
        print(f"\nwrote {out} and {out.with_suffix('.md')}")
    else:
        print("\n" + json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

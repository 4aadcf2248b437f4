"""`socialfusion plan`: build a config on the `meta` device (no weights, no download) and report parameters
per component, visual tokens, an estimate of training memory, FLOPs per sample, and the feature cache's size on
disk per dataset split."""

from __future__ import annotations

import copy

import torch

from .config import Config
from .features.inputs import SPLITS, entry_bytes, split_entries
from .models.socialfusion import SocialFusionModel
from .models.tiny_tokenizer import build_tiny_tokenizer
from .models.trainability import format_parameter_table, parameter_table
from .models.vlm_plan import estimate_vlm
from .runtime import precision_for

TEXT_TOKENS = 48  # a typical task prompt + answer with a chat template; the estimate is linear in it


def build_on_meta(config: Config):
    cfg = copy.deepcopy(config.model)
    for part in (cfg.encoder, cfg.llm):
        if part.arch is None:
            raise ValueError(f"plan needs an architecture JSON for {part.pretrained!r} (set `arch` in the preset)")
        part.pretrained = None
    with torch.device("meta"):
        # the tokenizer only names prompt tokens; its size matters only for the tiny preset
        return SocialFusionModel(cfg, tokenizer=build_tiny_tokenizer())


def estimate(config: Config, batch_size: int | None = None, text_tokens: int = TEXT_TOKENS) -> dict:
    if config.model.type == "vlm":
        return estimate_vlm(config, batch_size, text_tokens)
    model = build_on_meta(config)
    rows = parameter_table(model)
    b = batch_size or config.train.batch_size
    lm_cfg = model.llm.config
    d, layers, vocab = lm_cfg.hidden_size, lm_cfg.num_hidden_layers, lm_cfg.vocab_size
    # region tokens: counted for the two-role task (relation), the most any task uses
    n_vis = model.num_visual_tokens + min(2, config.model.box.roles) * config.model.connector.box_tokens**2
    seq = n_vis + text_tokens
    enc = model.encoder
    enc_params = sum(p.numel() for p in enc.parameters())
    llm_params = sum(p.numel() for n, p in model.llm.named_parameters() if "lora_" not in n) - vocab * d * (
        1 if lm_cfg.tie_word_embeddings else 2
    )
    trainable = sum(r["trainable"] for r in rows)
    frozen = sum(r["frozen"] for r in rows)
    # forward FLOPs: 2 per multiply-add; attention scores add 4 * seq^2 * d per layer; the LM head runs only at
    # the few answer positions (8 here), never over the image tokens
    enc_tokens = enc.num_patches + 1
    enc_fwd = 2 * enc_params * enc_tokens + 4 * enc.num_layers * enc_tokens**2 * enc.hidden_size
    llm_fwd = 2 * llm_params * seq + 4 * layers * seq**2 * d + 2 * vocab * d * 8
    # training: backward costs about twice the forward through the LLM (activation gradients dominate even when
    # its weights are frozen); the frozen encoder runs forward only, and not at all with the feature cache
    train_flops = 3 * llm_fwd + enc_fwd
    bytes_frozen, bytes_trainable = 2 * frozen, 4 * trainable  # bf16 frozen weights; fp32 master weights
    optimizer = 8 * trainable + 4 * trainable  # Adam moments + gradients
    # activations kept for backward, per layer and token, ~34 * d bytes in bf16 (Korthikanti et al. 2022),
    # plus attention scores 5 * heads * seq bytes
    per_layer = b * seq * (34 * d + 5 * lm_cfg.num_attention_heads * seq)
    if config.model.llm.gradient_checkpointing:  # keep each layer's input, recompute one layer at a time
        act = b * layers * seq * d * 2 + per_layer
    else:
        act = layers * per_layer
    return {
        "parameters": rows,
        "total_parameters": trainable + frozen,
        "trainable_parameters": trainable,
        "visual_tokens_per_image": n_vis,
        "patch_grid": list(enc.grid),
        "sequence_length": seq,
        "batch_size": b,
        "estimated_training_memory_gb": round((bytes_frozen + bytes_trainable + optimizer + act) / 1e9, 2),
        "forward_gflops_per_sample": round((enc_fwd + llm_fwd) / 1e9, 2),
        "training_gflops_per_sample": round(train_flops / 1e9, 2),
        "training_gflops_per_sample_with_feature_cache": round(3 * llm_fwd / 1e9, 2),
        "feature_cache": feature_cache_plan(config, enc),
    }


def feature_cache_plan(config: Config, encoder) -> dict:
    """Entries (distinct images per configured split after the caps) and bytes on disk. Like the memory estimate,
    it assumes a GPU with bf16, where `precision: auto` stores bf16 entries; counted where a data root exists,
    else bounded by the caps, else unknown."""
    dtype_name = precision_for("cuda", config.train.precision, native_bf16=True)
    per = entry_bytes(encoder, torch.bfloat16 if dtype_name == "bf16" else torch.float32)
    rows = [
        {
            "task": c.task,
            "split": c.which,
            "entries": c.entries,
            "gb": None if c.entries is None else round(c.entries * per / 1e9, 3),
            "how": c.how,
        }
        for which in SPLITS
        for c in split_entries(config, which)
    ]
    known = [r["entries"] for r in rows if r["entries"] is not None]
    return {
        "tokens_per_entry": encoder.num_patches,
        "dim": encoder.hidden_size,
        "dtype": dtype_name,
        "bytes_per_entry": per,
        "rows": rows,
        "total_entries": sum(known),
        "total_gb": round(sum(known) * per / 1e9, 3),
        "all_counted": len(known) == len(rows),
        "max_gb": config.train.feature_cache_max_gb,
    }


def format_feature_cache(fc: dict) -> list[str]:
    lines = [
        f"feature cache: {fc['tokens_per_entry']} tokens x {fc['dim']} x {fc['dtype']} = "
        f"{fc['bytes_per_entry'] / 1e6:.3g} MB per image (entries = distinct images per split after the caps)",
        f"  {'task':<12} {'split':<6} {'entries':>10} {'GB':>10}  how",
    ]
    for r in fc["rows"]:
        n = "?" if r["entries"] is None else str(r["entries"])
        gb = "?" if r["gb"] is None else f"{r['gb']:.3g}"
        lines.append(f"  {r['task']:<12} {r['split']:<6} {n:>10} {gb:>10}  {r['how']}")
    bound = "" if fc["all_counted"] else " (known splits only; '?' = unknown)"
    lines.append(f"  {'total':<12} {'':<6} {fc['total_entries']:>10} {fc['total_gb']:>10.4g}  {bound.strip()}")
    lines.append(
        f"  used by default (train.feature_cache: auto) only when each training image is read more than once and "
        f"the training run's entries fit in train.feature_cache_max_gb ({fc['max_gb']:g} GB)"
    )
    return lines


def format_plan(plan: dict) -> str:
    lines = [format_parameter_table(plan["parameters"]), ""]
    for key in (
        "visual_tokens_per_image",
        "patch_grid",
        "sequence_length",
        "batch_size",
        "estimated_training_memory_gb",
        "forward_gflops_per_sample",
        "training_gflops_per_sample",
        "training_gflops_per_sample_with_feature_cache",
    ):
        lines.append(f"{key:<48} {plan[key]}")
    if plan.get("feature_cache"):
        lines += format_feature_cache(plan["feature_cache"])
    if "note" in plan:
        lines.append(f"note: {plan['note']}")
    return "\n".join(lines)

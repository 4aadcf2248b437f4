"""`socialfusion plan` for a VLM baseline: the model on the `meta` device from its architecture JSON (no weights, no
download; a processor is built in-process to count the image tokens), parameters per component (vision, projector,
llm, their LoRA adapters, gaze head), visual tokens, and approximate memory and FLOPs."""

from __future__ import annotations

import copy

import torch

from .vlm import VLMBaseline


def build_vlm_on_meta(config):
    cfg = copy.deepcopy(config.model)
    if cfg.arch is None:
        raise ValueError(f"plan needs an architecture JSON for {cfg.pretrained!r} (set model.arch in the preset)")
    cfg.pretrained = None
    with torch.device("meta"):
        return VLMBaseline(cfg, processor="tiny")


def estimate_vlm(config, batch_size: int | None = None, text_tokens: int = 48) -> dict:
    """The keys of `plan.estimate`, plus `family`, `vision_tokens_per_image` and a `note`. FLOPs count 2 per
    multiply-add over the weights plus 4 * seq^2 * d per attention layer; they and the memory are approximate."""
    from PIL import Image

    model = build_vlm_on_meta(config)
    rows = model.parameter_table()
    numel = {r["component"]: r["trainable"] + r["frozen"] for r in rows}
    hf = model.hf_model.config
    tc, vc = hf.text_config, hf.vision_config
    d, layers, vocab = tc.hidden_size, tc.num_hidden_layers, tc.vocab_size
    b = batch_size or config.train.batch_size
    n_vis = model.num_visual_tokens
    # box text ("Marked box: [0.12, 0.30, 0.45, 0.80]") adds about 24 tokens
    seq = n_vis + text_tokens + (24 if config.model.boxes == "text" else 0)
    with torch.device("cpu"):
        pixels = model.encoder.preprocess([Image.new("RGB", (model.image_size,) * 2)], boxes=[[]])
    if model.family == "qwen2vl":
        crops, per_crop, v_layers, v_d = 1, pixels.shape[1], vc.depth, vc.embed_dim
    else:
        crops = pixels.shape[1] if model.family == "onevision" else 1
        per_crop = (model.image_size // vc.patch_size) ** 2 + int(vc.model_type == "clip_vision_model")
        v_layers, v_d = vc.num_hidden_layers, vc.hidden_size
    vision_params = numel.get("vision", 0)
    vision_fwd = (
        crops * (2 * vision_params * per_crop + 4 * v_layers * per_crop**2 * v_d)
        + 2 * numel.get("projector", 0) * n_vis
    )
    llm_params = numel.get("llm", 0) - vocab * d * (1 if tc.tie_word_embeddings else 2)
    llm_fwd = 2 * llm_params * seq + 4 * layers * seq**2 * d + 2 * vocab * d * 8
    vision_trainable = config.model.trainable.vision != "frozen"
    train_flops = 3 * llm_fwd + (3 if vision_trainable else 1) * vision_fwd
    trainable = sum(r["trainable"] for r in rows)
    frozen = sum(r["frozen"] for r in rows)
    per_layer = b * seq * (34 * d + 5 * tc.num_attention_heads * seq)
    act = b * layers * seq * d * 2 + per_layer if config.model.gradient_checkpointing else layers * per_layer
    memory = 2 * frozen + 4 * trainable + 12 * trainable + act
    return {
        "type": "vlm",
        "family": model.family,
        "parameters": rows,
        "total_parameters": trainable + frozen,
        "trainable_parameters": trainable,
        "visual_tokens_per_image": n_vis,
        "vision_tokens_per_image": crops * per_crop,
        "patch_grid": list(model.grid),
        "sequence_length": seq,
        "batch_size": b,
        "estimated_training_memory_gb": round(memory / 1e9, 2),
        "forward_gflops_per_sample": round((vision_fwd + llm_fwd) / 1e9, 2),
        "training_gflops_per_sample": round(train_flops / 1e9, 2),
        "training_gflops_per_sample_with_feature_cache": None,
        "note": "approximate FLOPs and memory; a VLM baseline runs from pixels "
        "(no feature cache); patch_grid is the grid the gaze head reads",
    }

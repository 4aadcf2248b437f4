"""AdamW with one parameter group per component (own learning rate; weight decay only on >= 2-D tensors)
and a linear warm-up + cosine schedule."""

from __future__ import annotations

import math

import torch

from ..config import TrainConfig
from ..models.trainability import component_of

# the pretrained vision encoder's components (SocialFusion's encoder, a VLM's vision tower, with or without LoRA)
ENCODER_COMPONENTS = ("encoder", "encoder.lora", "vision", "vision.lora")
# A pretrained encoder trained at the connector's rate is wrecked within a few hundred steps (the VLM-style
# baseline at lr 1e-3), so VLM recipes give the vision tower a much smaller rate: LLaVA-1.5 keeps it frozen;
# LLaVA-OneVision (LLaVA-NeXT scripts/train/finetune_ov.sh) trains it at mm_vision_tower_lr=2e-6 while the
# projector and LLM get 1e-5 in that stage (1/5), after a projector-only stage at 1e-3 (1/500 of that). Our
# connector and LoRA train from scratch at the projector-stage rate (1e-3 in the presets), and LoRA rates run
# ~10x full fine-tuning rates (LLaVA-1.5: 2e-4 LoRA vs 2e-5 full), so OneVision's 1/5 of a full-fine-tuning rate
# is ~1/50 of ours: 2e-5 with the presets. Choosing it on val is a separate experiment.
ENCODER_LR_FRACTION = 1 / 50


def encoder_lr(cfg: TrainConfig) -> float:
    """The trained encoder's learning rate: `lr_encoder`, else 1/50 of the connector's."""
    if cfg.lr_encoder is not None:
        return cfg.lr_encoder
    return (cfg.lr if cfg.lr_connector is None else cfg.lr_connector) * ENCODER_LR_FRACTION


def _component_lr(component: str, cfg: TrainConfig) -> float:
    if component in ENCODER_COMPONENTS:
        return encoder_lr(cfg)
    specific = {
        "connector": cfg.lr_connector,
        "box_embed": cfg.lr_box_embed,
        "gaze_head": cfg.lr_heads,
        "llm.lora": cfg.lr_lora,
    }.get(component)
    return cfg.lr if specific is None else specific


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Only parameters that train get a group, so `lr_encoder` matters only when the encoder has trainable ones."""
    groups: dict[tuple[str, bool], dict] = {}
    # the model names its components (a VLM's vision tower is "vision"); plain modules fall back on the name
    component_fn = getattr(model, "component", component_of)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        component = component_fn(name)
        decay = p.ndim >= 2
        g = groups.setdefault(
            (component, decay),
            {
                "params": [],
                "lr": _component_lr(component, cfg),
                "weight_decay": cfg.weight_decay if decay else 0.0,
                "name": f"{component}{'' if decay else '.no_decay'}",
            },
        )
        g["params"].append(p)
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    # foreach: one multi-tensor kernel per update step instead of a Python loop over every parameter tensor (on
    # CPU torch defaults to the loop); at the tiny preset's size the loop was 11-13 % of a training step
    return torch.optim.AdamW(list(groups.values()), betas=(0.9, 0.999), foreach=True)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    warmup, total = cfg.warmup_steps, cfg.steps

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

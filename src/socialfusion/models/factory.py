"""One constructor for every model type of the config: SocialFusion or a VLM baseline (`model.type`)."""

from __future__ import annotations

from ..config import ModelConfig


def build_model(model_cfg: ModelConfig, tasks: dict | None = None, **kwargs):
    if model_cfg.type == "vlm":
        from .vlm import VLMBaseline

        return VLMBaseline(model_cfg, tasks=tasks, **kwargs)
    from .socialfusion import SocialFusionModel

    return SocialFusionModel(model_cfg, tasks=tasks, **kwargs)

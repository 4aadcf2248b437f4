"""One constructor for every model type of the config: SocialFusion or a VLM baseline (`model.type`)."""

from __future__ import annotations

from ..config import ModelConfig


def build_model(model_cfg: ModelConfig, tasks: dict | None = None, **kwargs):
    if model_cfg.type == "vlm":
        from .loading import quiet_loading
        from .vlm import VLMBaseline

        with quiet_loading():  # transformers' load report and progress bars, unless --verbose
            return VLMBaseline(model_cfg, tasks=tasks, **kwargs)
    from .socialfusion import SocialFusionModel

    return SocialFusionModel(model_cfg, tasks=tasks, **kwargs)

"""One constructor for every model type of the config: SocialFusion or a VLM baseline (`model.type`)."""

from __future__ import annotations

from ..config import ModelConfig
from .loading import quiet_loading
from .socialfusion import SocialFusionModel
from .vlm import VLMBaseline


def build_model(model_cfg: ModelConfig, tasks: dict | None = None, **kwargs):
    if model_cfg.type == "vlm":
        with quiet_loading():  # transformers' load report and progress bars, unless --verbose
            return VLMBaseline(model_cfg, tasks=tasks, **kwargs)
    return SocialFusionModel(model_cfg, tasks=tasks, **kwargs)

"""The frozen visual encoder: any Hugging Face vision transformer whose patch tokens we can read."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..config import EncoderConfig
from .loading import load_arch, quiet_loading, resolve_pretrained

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
HALF = [0.5, 0.5, 0.5]
_DEFAULT_STATS = {"clip_vision_model": (CLIP_MEAN, CLIP_STD), "siglip_vision_model": (HALF, HALF)}


def _vision_config(config):
    """The vision part of a config: itself, or `vision_config` of a CLIP/SigLIP/VLM config."""
    return getattr(config, "vision_config", None) or config


def _build_vision_model(cfg: EncoderConfig) -> nn.Module:
    from transformers import AutoConfig, AutoModel

    if cfg.pretrained is None:
        config = _vision_config(load_arch(cfg.arch))
        return AutoModel.from_config(config)
    source = resolve_pretrained(cfg.pretrained)
    config = AutoConfig.from_pretrained(source)
    if cfg.from_vlm:
        from transformers import AutoModelForImageTextToText

        vlm = AutoModelForImageTextToText.from_pretrained(source)
        tower = getattr(vlm.model, "vision_tower", None) or getattr(vlm.model, "visual", None)
        if tower is None:
            raise ValueError(f"{cfg.pretrained}: no vision_tower/visual module found in this VLM")
        return tower
    if hasattr(config, "vision_config") and config.model_type in ("clip", "siglip", "siglip2"):
        from transformers import CLIPVisionModel, SiglipVisionModel

        cls = CLIPVisionModel if config.model_type == "clip" else SiglipVisionModel
        return cls.from_pretrained(source)
    return AutoModel.from_pretrained(source)


class VisionEncoder(nn.Module):
    """Wraps a vision transformer: reads hidden layer `cfg.layer`, drops CLS/register tokens, exposes the grid."""

    wants_boxes = False  # the image input interface (`TaskModel.image_input`): boxes never change the pixels

    def __init__(self, cfg: EncoderConfig, model: nn.Module | None = None):
        super().__init__()
        self.cfg = cfg
        if model is None:
            with quiet_loading():  # transformers' load report and progress bar, unless --verbose
                model = _build_vision_model(cfg)
        self.model = model
        vc = self.model.config
        self.model_type = vc.model_type
        self.image_size = int(cfg.image_size or vc.image_size)
        self.patch_size = int(vc.patch_size)
        # like the HF patch embeddings (a strided conv), a remainder smaller than a patch is ignored
        self.grid = (self.image_size // self.patch_size, self.image_size // self.patch_size)
        self.hidden_size = int(vc.hidden_size)
        default_mean, default_std = _DEFAULT_STATS.get(self.model_type, (IMAGENET_MEAN, IMAGENET_STD))
        self.mean = cfg.mean or default_mean
        self.std = cfg.std or default_std
        self.num_layers = int(vc.num_hidden_layers)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def identity(self) -> dict:
        """What the features depend on: the feature cache keys on it."""
        return {
            "pretrained": self.cfg.pretrained,
            "arch": self.cfg.arch,
            "model_type": self.model_type,
            "layer": self.cfg.layer,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            # v3: JPEGs decoded at the smallest DCT scale >= the side first (core/images.load_image_reduced); v2 kept
            # >= 2x the side. Other pixels, other cache
            "resize": "bicubic-square-v3-jpeg-draft",
        }

    def preprocess(self, images) -> torch.Tensor:
        """PIL images -> normalised (B, 3, S, S). The whole image is resized to a square (no crop), so that
        normalised boxes keep their meaning."""
        from PIL import Image

        size = self.image_size
        arrays = []
        for image in images:
            resized = image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
            arrays.append(np.asarray(resized, dtype=np.float32) / 255.0)
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> patch features (B, h*w, d) from the configured layer."""
        kwargs = {"output_hidden_states": True}
        if self.model_type in ("clip_vision_model", "siglip_vision_model", "dinov2") and self.cfg.image_size:
            kwargs["interpolate_pos_encoding"] = True
        out = self.model(pixel_values=pixel_values, **kwargs)
        hidden = out.hidden_states[self.cfg.layer]
        extra = hidden.shape[1] - self.num_patches
        if extra < 0 or int(math.isqrt(hidden.shape[1] - extra)) ** 2 != self.num_patches:
            raise ValueError(f"encoder returned {hidden.shape[1]} tokens for a {self.grid} grid")
        return hidden[:, extra:]  # CLS (and register tokens) come first in CLIP and DINOv2

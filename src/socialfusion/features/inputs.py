"""Where a model's image inputs come from: the feature cache (frozen encoder) or pixels.

Training, evaluation, the analyses and the report all choose their input the same way, so the choice lives
here, in the package that owns the feature cache, not in any one of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..config import Config


def default_cache_dir(config: Config) -> Path:
    """`train.cache_dir`, else $SOCIALFUSION_CACHE/features, else ~/.cache/socialfusion/features."""
    if config.train.cache_dir:
        return Path(config.train.cache_dir)
    base = os.environ.get("SOCIALFUSION_CACHE") or Path.home() / ".cache" / "socialfusion"
    return Path(base) / "features"


def input_function(model, config: Config):
    """The feature cache when the model has a frozen encoder (`TaskModel.cacheable_encoder`) and the cache is on;
    None otherwise (the model reads pixels)."""
    encoder = model.cacheable_encoder
    if encoder is not None and config.train.feature_cache == "auto":
        from .cache import FeatureCache

        return FeatureCache(default_cache_dir(config), encoder)
    return None


def sample_inputs(model, config: Config):
    """(cache or None, the function that turns a Sample into the model's input item): cached features where
    `input_function` gives a cache, the model's pixel inputs otherwise."""
    from ..data.pipeline import pixel_input

    cache = input_function(model, config)
    return cache, (cache.input_fn() if cache is not None else pixel_input(model.image_input))

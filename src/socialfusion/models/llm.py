"""The language model: any Hugging Face causal LM, its tokenizer, LoRA via PEFT, and prompt pieces."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import LLMConfig
from ..tasks.base import IMAGE_PLACEHOLDER
from .loading import load_arch, peft_model, quiet_loading, resolve_pretrained
from .tiny_tokenizer import build_tiny_tokenizer


def build_tokenizer(cfg: LLMConfig, vocab_size: int | None = None):
    if cfg.tokenizer == "tiny":
        return build_tiny_tokenizer()
    from transformers import AutoTokenizer

    source = resolve_pretrained(cfg.tokenizer or cfg.pretrained or "")
    with quiet_loading():
        tok = AutoTokenizer.from_pretrained(source)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def kept_layers(cfg: LLMConfig, total: int) -> list[int] | None:
    """The decoder layers the config keeps, as indices into the model's `total` layers (None: all of them)."""
    if cfg.layers is not None:
        keep = [i + total if i < 0 else i for i in cfg.layers]
        if any(not 0 <= i < total for i in keep) or len(set(keep)) != len(keep):
            raise ValueError(f"llm.layers={cfg.layers}: each must name a different one of the model's {total} layers")
        return keep
    if cfg.num_layers is None:
        return None
    if cfg.num_layers > total:
        raise ValueError(f"llm.num_layers={cfg.num_layers} but the model has {total} layers")
    return list(range(cfg.num_layers))


def _set_layer_count(config, keep: list[int]) -> None:
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in keep]
    config.num_hidden_layers = len(keep)


def build_causal_lm(cfg: LLMConfig, vocab_size: int | None = None) -> nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    if cfg.pretrained is None:
        config = load_arch(cfg.arch)
        if vocab_size is not None:
            config.vocab_size = vocab_size
        keep = kept_layers(cfg, config.num_hidden_layers)
        if keep is not None:
            _set_layer_count(config, keep)  # random weights: only the count matters
        return AutoModelForCausalLM.from_config(config)
    source = resolve_pretrained(cfg.pretrained)
    config = AutoConfig.from_pretrained(source)
    keep = kept_layers(cfg, config.num_hidden_layers)
    first_n = keep is not None and keep == list(range(len(keep)))
    if first_n:
        _set_layer_count(config, keep)  # the weights of the dropped layers are simply not loaded
    with quiet_loading():  # the report would list every layer cut by `num_layers` as UNEXPECTED
        lm = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=torch.float32)
    if keep is None or first_n:
        return lm
    # other layers than the first N: all were loaded, keep the chosen ones (layer pruning, e.g. Gromov et al.
    # 2024, "The Unreasonable Ineffectiveness of the Deeper Layers": the last layers map the residual stream to
    # the vocabulary, so a cut that keeps them gives calibrated logits where the first N layers alone do not)
    decoder = lm.get_decoder()
    decoder.layers = nn.ModuleList(decoder.layers[i] for i in keep)
    for new_index, layer in enumerate(decoder.layers):
        layer.self_attn.layer_idx = new_index  # the KV cache is indexed by position in the stack
    _set_layer_count(lm.config, keep)
    return lm


def apply_lora(model: nn.Module, cfg: LLMConfig) -> nn.Module:
    from peft import LoraConfig

    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        bias="none",
    )
    return peft_model(model, lora)


def decoder_and_head(lm: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The transformer body (returns hidden states) and the LM head, through a PEFT wrapper if present.

    Splitting them lets us run the LM head only at the answer positions instead of over the whole sequence.
    """
    base = lm.get_base_model() if hasattr(lm, "get_base_model") else lm
    return base.get_decoder(), base.get_output_embeddings()


@dataclass
class PromptPieces:
    """Token ids before and after the image placeholder for one task prompt."""

    pre: list[int]
    post: list[int]


def prompt_pieces(tokenizer, instruction: str, use_chat_template: bool = True) -> PromptPieces:
    """Render the user turn (with the chat template when the tokenizer has one) and split at the placeholder.

    The placeholder is never a token: the text on either side is tokenized on its own, so no vocabulary
    or embedding matrix has to change.
    """
    if IMAGE_PLACEHOLDER not in instruction:
        raise ValueError(f"prompt must contain {IMAGE_PLACEHOLDER!r}: {instruction!r}")
    if use_chat_template and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
        )
    else:
        text = f"User: {instruction}\nAssistant:"
    before, after = text.split(IMAGE_PLACEHOLDER, 1)
    pre = tokenizer(before, add_special_tokens=False).input_ids
    if (
        tokenizer.bos_token_id is not None
        and (not pre or pre[0] != tokenizer.bos_token_id)
        and not getattr(tokenizer, "chat_template", None)
    ):
        pre = [tokenizer.bos_token_id] + pre
    post = tokenizer(after, add_special_tokens=False).input_ids
    return PromptPieces(pre=pre, post=post)


def answer_ids(tokenizer, text: str) -> list[int]:
    """The answer tokens of a verbalizer, ending with EOS so that no verbalizer is a prefix of another."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    return ids + [tokenizer.eos_token_id]

"""Worker side: the reference, transformers' LlavaForConditionalGeneration + PEFT LoRA, built like SocialFusion."""

from __future__ import annotations

import math


def build_llava_reference(cfg, tokenizer):
    """LlavaForConditionalGeneration + PEFT LoRA with SocialFusion's encoder config, LLM config (same layers),
    visual token count (the projector is preceded by the same k x k average pooling SocialFusion's connector
    uses), LoRA r/alpha/targets on the language model only, frozen vision tower, trainable projector."""

    import torch
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model
    from torch import nn
    from transformers import AutoConfig, LlavaConfig, LlavaForConditionalGeneration

    from socialfusion.models.llm import kept_layers
    from socialfusion.models.loading import load_arch, resolve_pretrained

    m = cfg.model
    vc = (
        AutoConfig.from_pretrained(resolve_pretrained(m.encoder.pretrained))
        if m.encoder.pretrained
        else load_arch(m.encoder.arch)
    )
    vc = getattr(vc, "vision_config", None) or vc
    tc = AutoConfig.from_pretrained(resolve_pretrained(m.llm.pretrained)) if m.llm.pretrained else load_arch(m.llm.arch)
    if m.llm.tokenizer == "tiny":
        tc.vocab_size = len(tokenizer)
    keep = kept_layers(m.llm, tc.num_hidden_layers)  # llm.num_layers / llm.layers, as SocialFusion's LLM
    if keep is not None:
        # random init: only the number of layers matters (and, for a model with per-layer attention types, which)
        if getattr(tc, "layer_types", None):
            tc.layer_types = [tc.layer_types[i] for i in keep]
        tc.num_hidden_layers = len(keep)
    image_size = int(m.encoder.image_size or vc.image_size)
    grid = image_size // vc.patch_size
    out_grid = math.ceil(grid / m.connector.pool)
    image_token_id = tc.vocab_size - 1  # an existing id that no prompt or answer of ours uses
    lcfg = LlavaConfig(
        vision_config=vc.to_dict(),
        text_config=tc.to_dict(),
        image_token_id=image_token_id,
        vision_feature_layer=m.encoder.layer,
        vision_feature_select_strategy="default",  # drop CLS, like SocialFusion's encoder wrapper
        projector_hidden_act="gelu",
        tie_word_embeddings=bool(getattr(tc, "tie_word_embeddings", False)),
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(lcfg)

    class PooledProjector(nn.Module):
        """k x k average pooling of the patch grid, then LLaVA's own 2-layer GELU MLP projector."""

        def __init__(self, proj):
            super().__init__()
            self.proj = proj

        def forward(self, x):
            if out_grid != grid:
                b, n, d = x.shape
                g = x.transpose(1, 2).reshape(b, d, grid, grid)
                x = F.adaptive_avg_pool2d(g, (out_grid, out_grid)).flatten(2).transpose(1, 2)
            return self.proj(x)

    model.model.multi_modal_projector = PooledProjector(model.model.multi_modal_projector)
    targets = "|".join(m.llm.lora.target_modules)
    lora = LoraConfig(
        r=m.llm.lora.r,
        lora_alpha=m.llm.lora.alpha,
        lora_dropout=m.llm.lora.dropout,
        target_modules=rf".*language_model.*\.({targets})",
        bias="none",
    )
    model = get_peft_model(model, lora)
    for p in model.base_model.model.model.multi_modal_projector.parameters():
        p.requires_grad_(True)
    for p in model.base_model.model.model.vision_tower.parameters():
        assert not p.requires_grad
    return model, out_grid * out_grid, image_size

"""Worker side, shared: the protocol streams, memory readings, preset configs, prompt tokens, batches, FLOP counts."""

from __future__ import annotations

import os
import sys

from .common import ALL_LORA, BATCH


def _proto_streams():
    """Protocol on the original stdout; anything libraries print goes to stderr (the worker's log)."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return sys.stdin, out


def _rss_kb() -> dict:
    info = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                info[key] = int(value.split()[0])
    return info


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (the RSS high-water mark) of this process, Linux >= 4.0
        return True
    except OSError:
        return False


def preset_config(preset: str):
    """The socialfusion Config of a preset; `issue9` is the configuration of the earlier reference figure."""
    from socialfusion.config import LoraConfig, load_config

    if preset in ("tiny", "default"):
        cfg = load_config(preset)
        # the reference has no region tokens: compare at the same visual token count, i.e. the paper's model
        # (the `predict` group measures the shipped default, region tokens included)
        cfg.model.connector.box_tokens = 0
        return cfg
    if preset == "issue9":
        cfg = load_config("default")
        cfg.model.connector.box_tokens = 0
        cfg.model.encoder.image_size = 224  # 16 x 16 patches of 14 px
        cfg.model.connector.pool = 1  # 256 visual tokens
        cfg.model.llm.num_layers = None  # all 30 SmolLM2-135M layers
        cfg.model.llm.layers = None
        cfg.model.llm.lora = LoraConfig(r=16, alpha=32, dropout=0.0, target_modules=list(ALL_LORA))
        return cfg
    raise ValueError(preset)


def text_tokens(preset: str, tokenizer, task) -> tuple[list[int], list[int], list[list[int]]]:
    """(prompt ids before the image, after the image, answer ids per class) shared by SocialFusion and the
    reference. For issue9 the prompt is padded so that the reference sees 32 text tokens (prompt + answer)."""
    from socialfusion.models.llm import answer_ids, prompt_pieces

    cfg = preset_config(preset)
    pieces = prompt_pieces(tokenizer, task.instruction(), cfg.model.llm.use_chat_template)
    answers = [answer_ids(tokenizer, v) for v in task.verbalizers]
    pre, post = list(pieces.pre), list(pieces.post)
    if preset == "issue9":
        labels = [i % len(answers) for i in range(BATCH)]
        width = max(len(answers[c]) for c in labels)
        filler = tokenizer(" Please", add_special_tokens=False).input_ids
        need = 32 - width - len(pre) - len(post)
        post = (filler * need)[:need] + post if need > 0 else post
    return pre, post, answers


def make_batch(task, image_size: int, seed: int = 0) -> dict:
    """A batch of BATCH samples of `task` (labels 0, 1, 2, ... cycling over the classes, one role-0 box each, random
    pixels) built by the library's own `collate`, i.e. the batch the trainer feeds to `train_step`."""
    import torch

    from socialfusion.core.schema import Box, Sample
    from socialfusion.data.pipeline import collate

    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(BATCH):
        x, y = (torch.rand(2, generator=g) * 0.5).tolist()
        w, h = (0.2 + torch.rand(2, generator=g) * 0.3).tolist()
        sample = Sample(
            id=str(i),
            task=task.name,
            image=f"{i}.jpg",
            boxes=[Box((x, y, x + w, y + h), 0)],
            label=i % task.num_classes,
        )
        items.append({"sample": sample, "pixel_values": torch.randn(3, image_size, image_size, generator=g)})
    return collate(items, task)


class FlopCount:
    """Analytic FLOPs of one training step from the shapes the modules actually see (forward hooks).

    nn.Linear over N tokens: forward 2*N*in*out; backward 2*N*in*out for the input gradient if the input
    requires grad, plus 2*N*in*out for the weight gradient if the weight requires grad. Conv2d (patch
    embedding): 2 * output elements * in_channels * k*k, same backward rule. Attention (per attention module,
    from its input (B, S, d) and the query width h*d_head): forward 4*B*S^2*h*d_head (QK^T and PV; causal masks
    not discounted), backward twice that when its input requires grad. Norms, activations, softmax, RoPE,
    embedding lookups, the loss and the optimiser are not counted."""

    def __init__(self, model):
        from torch import nn

        self.rows = []
        self.handles = []
        for name, mod in model.named_modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                self.handles.append(mod.register_forward_hook(self._linear_hook(name)))
            elif type(mod).__name__.endswith("Attention") and not any(
                type(c).__name__.endswith("Attention") for c in mod.children()
            ):
                self.handles.append(mod.register_forward_hook(self._attn_hook(name, mod), with_kwargs=True))

    def _linear_hook(self, name):
        def hook(mod, inp, out):
            import torch.nn as nn

            x = inp[0]
            if isinstance(mod, nn.Linear):
                fwd = 2 * (x.numel() // mod.in_features) * mod.in_features * mod.out_features
            else:
                k = mod.kernel_size[0] * mod.kernel_size[1]
                fwd = 2 * out.numel() * (mod.in_channels // mod.groups) * k
            self.rows.append((name, fwd, bool(x.requires_grad), bool(mod.weight.requires_grad)))

        return hook

    def _attn_hook(self, name, mod):
        q = None
        for child_name in ("q_proj", "query"):
            q = getattr(mod, child_name, None)
            if q is not None:
                break
        if q is not None and not hasattr(q, "out_features"):  # a PEFT LoRA wrapper
            q = q.base_layer

        def hook(m, args, kwargs, out):
            x = args[0] if args else kwargs.get("hidden_states")
            if x is None or q is None:
                return
            b, s = x.shape[0], x.shape[1]
            self.rows.append((name + ":sdpa", 4 * b * s * s * q.out_features, bool(x.requires_grad), False))

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()

    def totals(self) -> dict:
        fwd = sum(r[1] for r in self.rows)
        dx = sum(r[1] * (2 if r[0].endswith(":sdpa") else 1) for r in self.rows if r[2])
        dw = sum(r[1] for r in self.rows if r[3])
        attn = sum(r[1] * (3 if r[2] else 1) for r in self.rows if r[0].endswith(":sdpa"))
        return {
            "forward": fwd,
            "backward_input": dx,
            "backward_weight": dw,
            "total": fwd + dx + dw,
            "attention": attn,
            "linear_conv": fwd + dx + dw - attn,
        }

"""The trainability plan: which component learns (frozen | lora | full), and the start-up parameter table."""

from __future__ import annotations

from torch import nn

from ..config import LoraConfig, TrainableConfig
from .loading import peft_model

COMPONENTS = ("encoder", "connector", "box_embed", "gaze_head", "llm")


def _set(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)


def peft_lora_config(cfg: LoraConfig):
    """PEFT's LoraConfig for ours; target_modules ["all-linear"] is PEFT's "all-linear" shorthand (every linear
    layer but the output one), which PEFT recognises only as a plain string."""
    from peft import LoraConfig as PeftLoraConfig

    targets = list(cfg.target_modules)
    return PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
    )


def apply_trainability(model: nn.Module, plan: TrainableConfig, encoder_lora: LoraConfig | None = None) -> None:
    """Freeze or unfreeze each component as `plan` says. `encoder: lora` wraps the encoder with `encoder_lora`
    (default: the model's `cfg.encoder.lora`)."""
    if plan.encoder == "lora":
        lora = encoder_lora if encoder_lora is not None else model.cfg.encoder.lora
        model.encoder.model = peft_model(model.encoder.model, peft_lora_config(lora))
    else:
        _set(model.encoder, plan.encoder == "full")
    _set(model.connector, plan.connector == "full")
    _set(model.box_embed, plan.box_embed == "full")
    _set(model.gaze_head, plan.heads == "full")
    if plan.llm == "full":
        _set(model.llm, True)
    elif plan.llm == "frozen":
        _set(model.llm, False)
    # "lora": PEFT already froze the base weights and left the adapters trainable


def component_of(name: str) -> str:
    head = name.split(".", 1)[0]
    if head == "llm" and "lora_" in name:
        return "llm.lora"
    return head


def parameter_table(model: nn.Module) -> list[dict]:
    rows: dict[str, dict] = {}
    for name, p in model.named_parameters():
        row = rows.setdefault(component_of(name), {"component": component_of(name), "trainable": 0, "frozen": 0})
        row["trainable" if p.requires_grad else "frozen"] += p.numel()
    return list(rows.values())


def format_parameter_table(rows: list[dict]) -> str:
    lines = [f"{'component':<12} {'trainable':>14} {'frozen':>14}"]
    for r in rows:
        lines.append(f"{r['component']:<12} {r['trainable']:>14,} {r['frozen']:>14,}")
    total_t = sum(r["trainable"] for r in rows)
    total_f = sum(r["frozen"] for r in rows)
    lines.append(f"{'total':<12} {total_t:>14,} {total_f:>14,}")
    return "\n".join(lines)

"""The model card of a checkpoint: what it learned from, how it scored against chance, what it is for.

`save_checkpoint` writes it next to the weights as `model_card.json` (for programs) and `MODEL_CARD.md` (for
people). Its `summary` is the one line that `predict`, the Python API, the service and the web page show with
every answer, because a checkpoint cannot be told apart from its name: one trained on drawn synthetic scenes
answers a real photo as confidently as one trained on the real datasets.

What the training loop hands over (`facts`, every key optional):
  manifest    `data.pipeline.manifest` of the run: {"<task>/<split>": {"n", "sha256", "root", "synthetic"}}
  step        the optimiser step of the checkpoint
  validation  the last evaluation {task: metrics}, and validation_step its step
  chance      {task: the primary metric of a model that ignores the image, on the validation split}
A checkpoint written without facts still gets a card, which says its data are not recorded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

CARD_JSON = "model_card.json"
CARD_MD = "MODEL_CARD.md"
FORMAT = 1
NO_CARD = "no model card (a checkpoint written before cards existed): what it was trained on is unknown"
# a primary metric this close to chance is reported as chance level: a short run on a small split wobbles by that much
AT_CHANCE_MARGIN = 0.02

INTENDED_USE = (
    "Research on visual social perception: reproducing and analysing the five benchmark tasks (looking at the camera "
    "wearer, facial expression, hand gesture, social relation, gaze target) on images like those of the datasets "
    "listed here, with boxes of the kind each task was trained on (face, hand, head, two persons)."
)
GENERAL_LIMITS = [
    "Validation figures come from the validation split of the same data source; "
    "they say nothing about other kinds of images.",
    "Expression, relation and gaze labels are coarse categories of appearance, not facts about a person: do not use "
    "the outputs for decisions about people.",
    "Each task reads only the box kind it was trained on; a task without its box is skipped, never run on another box.",
]


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _datasets(config, manifest: dict, tasks: dict) -> list[dict]:
    out = []
    for td in config.data.tasks:
        train = manifest.get(f"{td.task}/train") or {}
        val = manifest.get(f"{td.task}/val") or {}
        flags = [e["synthetic"] for e in (train, val) if "synthetic" in e]
        out.append(
            {
                "task": td.task,
                "dataset": td.dataset or getattr(tasks.get(td.task), "default_dataset", None),
                "train_samples": train.get("n"),
                "val_samples": val.get("n"),
                "synthetic": any(flags) if flags else None,  # None: not recorded
            }
        )
    return out


def _validation(facts: dict, tasks: dict) -> dict | None:
    metrics = facts.get("validation")
    if not metrics:
        return None
    chance = facts.get("chance") or {}
    per_task = {}
    for name, m in metrics.items():
        task = tasks.get(name)
        key = getattr(task, "primary_metric", None)
        value = _finite((m or {}).get(key)) if key else None
        per_task[name] = {"metric": key, "value": value, "chance": _finite(chance.get(name)), "n": (m or {}).get("n")}
    return {"step": facts.get("validation_step"), "tasks": per_task}


def _summary(card: dict) -> str:
    datasets = card["datasets"]
    if not datasets or all(d["synthetic"] is None and d["train_samples"] is None for d in datasets):
        return f"checkpoint of '{card['config']}' at step {card['steps']}: its training data are not recorded"
    synthetic = [d["task"] for d in datasets if d["synthetic"]]
    if synthetic and len(synthetic) == len(datasets):
        line = "trained on synthetic scenes: not meant for real photos"
    elif synthetic:
        line = f"trained partly on synthetic scenes ({', '.join(synthetic)}): not meant for real photos"
    else:
        parts = [
            f"{d['task']} on {d['dataset'] or 'its default dataset'} ({d['train_samples']} samples)" for d in datasets
        ]
        line = f"trained {card['steps']} steps: " + ", ".join(parts)
    at_chance = card.get("at_chance") or []
    if at_chance:
        line += f"; validation at chance level on {', '.join(at_chance)}"
    return line


def _at_chance(validation: dict | None) -> list[str]:
    if not validation:
        return []
    return [
        name
        for name, v in validation["tasks"].items()
        if v["value"] is not None and v["chance"] is not None and v["value"] <= v["chance"] + AT_CHANCE_MARGIN
    ]


def _model_sources(m) -> dict[str, Any]:
    """Where the weights came from: a hub id or local path, else the architecture file of a random init."""
    if m.type == "vlm":
        return {"type": m.type, "vlm": m.pretrained or m.arch}
    return {"type": m.type, "encoder": m.encoder.pretrained or m.encoder.arch, "llm": m.llm.pretrained or m.llm.arch}


def build_card(model, config, facts: dict | None = None) -> dict:
    """The card of `model` trained with `config` (see the module docstring for `facts`)."""
    facts = facts or {}
    tasks = getattr(model, "tasks", {}) or {}
    trained = [td.task for td in config.data.tasks]
    card: dict[str, Any] = {
        "format": FORMAT,
        "trained": True,
        "config": config.name,
        "model": _model_sources(config.model),
        "steps": facts.get("step"),
        "trained_tasks": trained,
        "untrained_tasks": [name for name in tasks if name not in trained],
        "datasets": _datasets(config, facts.get("manifest") or {}, tasks),
        "validation": _validation(facts, tasks),
        "intended_use": INTENDED_USE,
    }
    card["at_chance"] = _at_chance(card["validation"])
    limits = []
    if any(d["synthetic"] for d in card["datasets"]):
        limits.append(
            "Learned from procedurally drawn scenes (socialfusion.data.synth): on real photographs its answers carry "
            "no information, whatever their probabilities."
        )
    if card["untrained_tasks"]:
        limits.append(
            f"Tasks not trained in this checkpoint: {', '.join(card['untrained_tasks'])}; their answers come from "
            "untrained weights."
        )
    if card["at_chance"]:
        limits.append(f"At chance level on validation: {', '.join(card['at_chance'])}.")
    card["limits"] = limits + GENERAL_LIMITS
    card["summary"] = _summary(card)
    return card


def untrained_card(config) -> dict:
    """The card of a preset built from its config: nothing was trained for the tasks."""
    summary = (
        f"UNTRAINED: '{config.name}' is a preset, not a trained checkpoint; its connector, box and adapter weights are "
        "at their initial values, so its answers carry no information"
    )
    return {
        "format": FORMAT,
        "trained": False,
        "config": config.name,
        "summary": summary,
        "trained_tasks": [],
        "datasets": [],
        "validation": None,
        "intended_use": "testing the software only",
        "limits": [summary],
    }


def write_card(card: dict, directory: Path) -> None:
    (directory / CARD_JSON).write_text(json.dumps(card, indent=2))
    (directory / CARD_MD).write_text(render_markdown(card))


def read_card(ckpt: str | Path) -> dict | None:
    """The checkpoint's card; None when it has none. An unreadable card is a card that says so (it is documentation: a
    broken one must not stop the weights from loading)."""
    path = Path(ckpt) / CARD_JSON
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        return {"format": None, "trained": True, "summary": f"model card unreadable ({path}: {err})"}
    if not isinstance(card, dict) or not isinstance(card.get("summary"), str):
        return {"format": None, "trained": True, "summary": f"model card unreadable ({path}: no 'summary' line)"}
    return card


def render_markdown(card: dict) -> str:
    lines = [f"# Model card: {card.get('config')}", "", f"**{card['summary']}**", ""]
    lines += [
        f"- steps: {card.get('steps')}",
        f"- model: {json.dumps(card.get('model'))}",
        f"- trained tasks: {', '.join(card.get('trained_tasks') or []) or 'none'}",
    ]
    if card.get("untrained_tasks"):
        lines.append(f"- untrained tasks (answers from initial weights): {', '.join(card['untrained_tasks'])}")
    lines += [
        "",
        "## Data",
        "",
        "| task | dataset | train samples | val samples | synthetic |",
        "|---|---|---|---|---|",
    ]
    for d in card.get("datasets") or []:
        lines.append(
            f"| {d['task']} | {d['dataset'] or '(default)'} | "
            f"{d['train_samples']} | {d['val_samples']} | {d['synthetic']} |"
        )
    lines += ["", "## Validation", ""]
    val = card.get("validation")
    if not val:
        lines.append("No validation metrics recorded.")
    else:
        lines += [
            f"At step {val.get('step')}, primary metric of each task against its chance level (a model that ignores "
            "the image):",
            "",
            "| task | metric | value | chance |",
            "|---|---|---|---|",
        ]

        def fmt(v):
            return "n/a" if v is None else f"{v:.3f}"

        for name, v in val["tasks"].items():
            lines.append(f"| {name} | {v['metric']} | {fmt(v['value'])} | {fmt(v['chance'])} |")
    lines += ["", "## Intended use", "", card.get("intended_use", ""), "", "## Limits", ""]
    lines += [f"- {limit}" for limit in card.get("limits") or []]
    return "\n".join(lines) + "\n"

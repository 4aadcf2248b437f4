"""Ego4D Looking-At-Me: is the person in the face box looking at the camera wearer?"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import TASKS
from .base import Task, as_arrays


@TASKS.register("lam")
@dataclass
class LookingAtMe(Task):
    name = "lam"
    default_dataset = "ego4d_lam"
    primary_metric = "map"
    prompt_templates = {
        "v1": "<image>\nLook at the face in the marked box. Is this person looking at the camera wearer? Answer yes or no.",
    }
    classes: list[str] = field(default_factory=lambda: ["not_looking", "looking"])

    @property
    def verbalizers(self) -> list[str]:
        return ["no", "yes"]

    def evaluate(self, predictions):
        from ..eval.metrics import lam_accuracy, lam_map

        labels, probs = as_arrays(predictions)
        score = probs[:, 1]
        return {"map": lam_map(labels, score), "accuracy": lam_accuracy(labels, score), "n": int(len(labels))}

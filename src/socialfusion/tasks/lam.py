"""Ego4D Looking-At-Me: is the person in the face box looking at the camera wearer?"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.metrics import lam_accuracy, lam_map
from . import TASKS
from .base import ClassificationTask


@TASKS.register("lam")
@dataclass
class LookingAtMe(ClassificationTask):
    name = "lam"
    default_dataset = "ego4d_lam"
    primary_metric = "map"
    box_kinds = ("face",)
    prompt_templates = {
        "v1": "<image>\nLook at the face in the marked box. "
        "Is this person looking at the camera wearer? Answer yes or no.",
    }
    classes: list[str] = field(default_factory=lambda: ["not_looking", "looking"])

    @property
    def verbalizers(self) -> list[str]:
        return ["no", "yes"]

    def metrics(self, labels, probs):
        score = probs[:, 1]
        return {"map": lam_map(labels, score), "accuracy": lam_accuracy(labels, score), "n": int(len(labels))}

    def submission(self, samples, predictions):
        """Ego4D LAM challenge format (as written to EvalAI's guidelines by third-party converters)."""
        results = [
            {
                "video_id": s.meta.get("video_id"),
                "unique_id": s.meta.get("unique_id"),
                "track_id": s.meta.get("track_id"),
                "label": 1,
                "score": float(p["probs"][1]),
            }
            for s, p in zip(samples, predictions)
        ]
        return {"version": "1.0", "challenge": "ego4d_looking_at_me", "results": results}

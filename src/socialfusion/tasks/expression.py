"""AffectNet facial expression (8-class, or 7-class without Contempt), official index order."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import TASKS
from .base import ClassificationTask

AFFECTNET_CLASSES = ["neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt"]


@TASKS.register("expression")
@dataclass
class Expression(ClassificationTask):
    name = "expression"
    default_dataset = "affectnet"
    primary_metric = "accuracy"
    box_kinds = ("face",)
    prompt_templates = {
        "v1": "<image>\nWhat is the facial expression of the face in the marked box? Answer with one word.",
    }
    n_classes: int = 8
    classes: list[str] = field(default_factory=list)

    def __post_init__(self):
        super().__post_init__()
        if self.n_classes not in (7, 8):
            raise ValueError(f"expression: n_classes must be 7 or 8, got {self.n_classes}")
        self.classes = AFFECTNET_CLASSES[: self.n_classes]

    def adapter_label_options(self, dataset):
        # the AffectNet adapter drops Contempt (index 7) from the 7-class task
        return {"classes": self.n_classes} if dataset == "affectnet" else {}

"""PISC social relationship between two people (fine: 6 classes; coarse: 3 domains)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.metrics import pisc_metrics
from . import TASKS
from .base import ClassificationTask

PISC_FINE = ["friends", "family", "couple", "professional", "commercial", "no_relation"]
PISC_COARSE = ["intimate", "non-intimate", "no_relation"]


@TASKS.register("relation")
@dataclass
class Relation(ClassificationTask):
    name = "relation"
    default_dataset = "pisc"
    primary_metric = "map"
    num_roles = 2
    box_kinds = ("person", "person")
    probe_pools = ("pair", "box")
    prompt_templates = {
        "v1": "<image>\nWhat is the social relationship between the two marked people? Answer with one relationship.",
    }
    level: str = "fine"
    classes: list[str] = field(default_factory=list)

    def __post_init__(self):
        super().__post_init__()
        if self.level not in ("fine", "coarse"):
            raise ValueError(f"relation: level must be 'fine' or 'coarse', got {self.level!r}")
        self.classes = list(PISC_FINE if self.level == "fine" else PISC_COARSE)

    def adapter_label_options(self, dataset):
        # PISC's two levels are two label files over different image sets: the adapter reads the task's level
        return {"level": self.level} if dataset == "pisc" else {}

    def metrics(self, labels, probs):
        return pisc_metrics(labels, probs)

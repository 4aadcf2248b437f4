"""The task protocol: a task owns its classes, verbalizers, versioned prompt, targets and metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..data.schema import DataError, Sample

IMAGE_PLACEHOLDER = "<image>"


@dataclass
class Task:
    """Base class. Subclasses set the class-level fields and implement `evaluate`.

    `kind` is "classification" (answer = class verbalizer text, scored from the LLM's logits) or "heatmap" (gaze).
    `prompt_templates` maps a version to the instruction; the active version is `prompt_version`. A change of
    wording must come with a new version (the snapshot test fails otherwise).
    """

    name: ClassVar[str]
    kind: ClassVar[str] = "classification"
    default_dataset: ClassVar[str]
    primary_metric: ClassVar[str]
    prompt_templates: ClassVar[dict[str, str]]
    # how many box roles a sample of this task carries (relation: two people)
    num_roles: ClassVar[int] = 1
    prompt_version: str = "v1"
    classes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.prompt_version not in self.prompt_templates:
            raise ValueError(f"task {self.name}: unknown prompt version {self.prompt_version!r}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def verbalizers(self) -> list[str]:
        """The answer text of each class, in class-index order."""
        return [c.replace("_", " ") for c in self.classes]

    def instruction(self) -> str:
        """The user turn, with the image placeholder where the visual tokens go."""
        return self.prompt_templates[self.prompt_version]

    def target_text(self, sample: Sample) -> str:
        self.check(sample, require_label=True)
        return self.verbalizers[sample.label]

    def check(self, sample: Sample, require_label: bool = False) -> None:
        """Reject samples this task cannot use, naming the sample (unlabelled ones only when a label is required)."""
        if self.kind == "classification":
            if sample.label is None and not require_label:
                return  # an unlabelled sample, e.g. the LAM challenge crops: predicted, not scored
            if sample.label is None or not 0 <= sample.label < self.num_classes:
                raise DataError(f"sample {sample.id}: label {sample.label!r} is not a class of {self.name} (0..{self.num_classes - 1})")

    def evaluate(self, predictions: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "classes": list(self.classes),
            "verbalizers": self.verbalizers if self.kind == "classification" else [],
            "prompt_version": self.prompt_version,
            "primary_metric": self.primary_metric,
        }


def as_arrays(predictions: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(predictions["labels"], dtype=np.int64)
    probs = np.asarray(predictions["probs"], dtype=np.float64)
    return labels, probs

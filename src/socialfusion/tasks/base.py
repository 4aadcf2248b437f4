"""A task is one object: its label space, prompt, targets, loss, decoding, metrics, chance level and report.

Two families share the model's two readouts (`readout`):
  "answer"  - `ClassificationTask`: the answer is one of the class verbalizers, scored from the LLM's logits;
  "heatmap" - the gaze family: a 64 x 64 heatmap read from the LLM's hidden states at the image positions.
The model implements each readout once and asks the task for everything else, so a new task of either family
(say, head orientation with three classes) is one file and one `TASKS.register`, and touches nothing else.

The flow through a task, training: `check` (is a sample usable) -> `targets` (its part of the batch) -> the
model's readout -> `loss`. Inference: the readout's raw output -> `decode` (one prediction per row) ->
`evaluate` (official metrics), `record` (a JSONL row), `present` (an API result), `figures` (the report).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ..core.intervals import loop_statistic
from ..core.metrics import classification_metrics, classification_resampled
from ..core.schema import DataError, Sample
from .figures import confusion_png

IMAGE_PLACEHOLDER = "<image>"
BOX_KINDS = ("face", "hand", "head", "person")  # what a box can mark; `Task.box_kinds` names them per role


@dataclass
class Task:
    """Base class of every task. Subclasses set the class-level fields; a family implements the methods.

    `prompt_templates` maps a version to the instruction; the active version is `prompt_version`. A change of
    wording must come with a new version (the snapshot test fails otherwise).
    """

    name: ClassVar[str]
    readout: ClassVar[str]
    # the adapter used when the config names none (None: the config must name one, e.g. jsonl)
    default_dataset: ClassVar[str | None] = None
    primary_metric: ClassVar[str]
    prompt_templates: ClassVar[dict[str, str]]
    # how many box roles a sample of this task carries (relation: two people)
    num_roles: ClassVar[int] = 1
    # the kind of box each role is (one of BOX_KINDS), as the task's dataset annotates it: a caller's boxes are
    # matched to a task by kind, so a face box never reaches the gesture task. Empty: the task names no kind and
    # reads untagged boxes by role only.
    box_kinds: ClassVar[tuple[str, ...]] = ()
    prompt_version: str = "v1"

    def __post_init__(self):
        if self.prompt_version not in self.prompt_templates:
            raise ValueError(f"task {self.name}: unknown prompt version {self.prompt_version!r}")

    # ------------------------------------------------------------------ configuration

    @classmethod
    def options_from_model(cls, model_cfg) -> dict[str, Any]:
        """Task options the model config decides (e.g. the gaze target's sigma); the data config may override."""
        return {}

    def adapter_label_options(self, dataset: str) -> dict[str, Any]:
        """The adapter options that select this task's label space in `dataset` (e.g. PISC's `level`), so that the
        adapter reads exactly the classes the task predicts. The task's options are the one source of truth."""
        return {}

    def instruction(self) -> str:
        """The user turn, with the image placeholder where the visual tokens go."""
        return self.prompt_templates[self.prompt_version]

    # ------------------------------------------------------------------ samples and targets

    def check(self, sample: Sample, require_label: bool = False) -> None:
        """Raise DataError naming the sample when this task cannot use it (unlabelled ones only when a label is
        required). Box roles, when there are boxes: one per role the task uses, or several role-0 boxes for a
        one-role task."""
        roles = sorted(b.role for b in sample.boxes)
        if not roles:
            return  # no box: the model sees the image without a box mask (`data validate` flags it)
        if self.num_roles == 1 and any(r != 0 for r in roles):
            raise DataError(f"sample {sample.id}: box role other than 0 for task {self.name}")
        if self.num_roles > 1 and roles != list(range(self.num_roles)):
            raise DataError(
                f"sample {sample.id}: task {self.name} needs exactly one box per role 0..{self.num_roles - 1}"
            )

    def targets(self, samples: list[Sample]) -> dict[str, Any]:
        """This task's part of a batch of `samples` (labels, target heatmaps...)."""
        raise NotImplementedError

    def loss(self, outputs: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        """{"loss": scalar, "n_supervised": count, "loss_<part>": detached parts} from the readout's outputs."""
        raise NotImplementedError

    # ------------------------------------------------------------------ predictions

    def decode(self, raw) -> list[dict[str, Any]]:
        """The readout's raw batch output -> one prediction dict per row (numpy values)."""
        raise NotImplementedError

    def evaluate(self, samples: list[Sample], predictions: list[dict]) -> dict[str, Any] | None:
        """The official metrics of `predictions` against `samples`; None when the split carries no labels."""
        raise NotImplementedError

    def resampler(self, samples: list[Sample], predictions: list[dict]):
        """The metrics of `evaluate` recomputed on bootstrap resamples: a function of indices (B, n) -> {metric: (B,)}
        (`core/intervals.py`). This default re-runs `evaluate` per resample; a task overrides it with an equivalent
        that is fast enough for a thousand resamples."""
        return loop_statistic(lambda i: self.evaluate([samples[j] for j in i], [predictions[j] for j in i]))

    def chance(self, samples: list[Sample]) -> float:
        """The primary metric of a model that ignores the image, on these samples."""
        raise NotImplementedError

    def record(self, sample: Sample, prediction: dict) -> dict[str, Any]:
        """The per-sample fields of a predictions JSONL row."""
        raise NotImplementedError

    def present(self, prediction: dict, width: int, height: int, boxes: list[dict]) -> dict[str, Any]:
        """A prediction as the Python API / service returns it, for an image of width x height with these boxes
        (pixel `xyxy`, by role)."""
        raise NotImplementedError

    def submission(self, samples: list[Sample], predictions: list[dict]) -> dict | None:
        """A benchmark-server submission for an unlabelled split, where the benchmark has one (else None)."""
        return None

    def figures(
        self, metrics: dict | None, samples: list[Sample], predictions: list[dict], out_dir: Path
    ) -> dict[str, Path]:
        """The report's figures for this task's validation results: {name: png path}."""
        return {}

    def data_stats(self, samples: list[Sample]) -> dict[str, Any]:
        """Task-specific counts for `socialfusion data stats`."""
        return {}

    # the probe pools that make sense for this task (`analysis/probe.py`), and the one its figure shows
    probe_pools: ClassVar[tuple[str, ...]] = ("box",)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "readout": self.readout,
            "prompt_version": self.prompt_version,
            "primary_metric": self.primary_metric,
            "box_kinds": list(self.box_kinds),
        }


@dataclass
class ClassificationTask(Task):
    """The answer is the verbalizer of one class; the class probabilities come from the LLM's logits."""

    readout: ClassVar[str] = "answer"
    primary_metric: ClassVar[str] = "accuracy"
    classes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def verbalizers(self) -> list[str]:
        """The answer text of each class, in class-index order."""
        return [c.replace("_", " ") for c in self.classes]

    def check(self, sample: Sample, require_label: bool = False) -> None:
        super().check(sample, require_label)
        if sample.label is None and not require_label:
            return  # an unlabelled sample, e.g. the LAM challenge crops: predicted, not scored
        if sample.label is None or not 0 <= sample.label < self.num_classes:
            raise DataError(
                f"sample {sample.id}: label {sample.label!r} is not a class of {self.name} (0..{self.num_classes - 1})"
            )

    def targets(self, samples):
        if all(s.label is not None for s in samples):
            return {"labels": torch.tensor([s.label for s in samples])}
        return {}

    def loss(self, outputs, batch):
        # the answer readout computes the answer's negative log-likelihood (token-level or verbalizer-level, as
        # the model is configured): the classification loss is exactly that
        loss = outputs["answer_nll"]
        return {"loss": loss, "loss_answer": loss.detach(), "n_supervised": outputs["n_supervised"]}

    def decode(self, raw):
        """raw: class log-probabilities (B, C) -> {"probs": (C,) summing to 1, "index": argmax}."""
        probs = raw.float().exp().cpu().numpy().astype(np.float64)
        probs /= probs.sum(axis=1, keepdims=True)
        return [{"probs": p, "index": int(p.argmax())} for p in probs]

    def metrics(self, labels: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
        """The official metrics from labels (N,) and class probabilities (N, C); accuracy and per-class figures
        unless the benchmark says otherwise."""
        return classification_metrics(labels, probs.argmax(1), self.num_classes)

    def evaluate(self, samples, predictions):
        if not samples:
            return {"n": 0}
        if any(s.label is None for s in samples):
            return None
        labels = np.asarray([s.label for s in samples], dtype=np.int64)
        return self.metrics(labels, np.stack([p["probs"] for p in predictions]))

    def resampler(self, samples, predictions):
        labels = np.asarray([s.label for s in samples], dtype=np.int64)
        probs = np.stack([p["probs"] for p in predictions])
        if type(self).metrics is ClassificationTask.metrics:  # the default metrics have a vectorised form
            pred = probs.argmax(1)
            return lambda idx: classification_resampled(labels, pred, self.num_classes, idx)
        return loop_statistic(lambda i: self.metrics(labels[i], probs[i]))

    def chance(self, samples):
        """Accuracy: always predicting the majority class. mAP: random scores give each class an AP equal to its
        prevalence, so chance is the mean prevalence over the classes."""
        labels = [s.label for s in samples if s.label is not None]
        if not labels:
            return float("nan")
        counts = np.bincount(labels, minlength=self.num_classes)
        if self.primary_metric == "accuracy":
            return float(counts.max() / counts.sum())
        return float(np.mean(counts / counts.sum()))

    def record(self, sample, prediction):
        probs, k = prediction["probs"], prediction["index"]
        return {
            "label": sample.label,
            "pred": k,
            "pred_name": self.classes[k],
            "probs": [round(float(p), 6) for p in probs],
        }

    def present(self, prediction, width, height, boxes):
        probs = prediction["probs"]
        return {"label": self.classes[prediction["index"]], "probs": {c: float(v) for c, v in zip(self.classes, probs)}}

    def figures(self, metrics, samples, predictions, out_dir):
        if not metrics or "confusion_matrix" not in metrics:
            return {}
        path = Path(out_dir) / f"confusion_{self.name}.png"
        return {
            f"confusion_{self.name}": confusion_png(
                metrics["confusion_matrix"], self.classes, path, f"{self.name} (val)"
            )
        }

    def data_stats(self, samples):
        labels = Counter(s.label for s in samples if s.label is not None)
        names = {k: self.classes[k] if isinstance(k, int) and 0 <= k < self.num_classes else str(k) for k in labels}
        return {
            "unlabelled": sum(s.label is None for s in samples),
            "classes": {names[k]: labels[k] for k in sorted(labels)},
        }

    def describe(self):
        return {
            **super().describe(),
            "kind": "classification",
            "classes": list(self.classes),
            "verbalizers": self.verbalizers,
        }

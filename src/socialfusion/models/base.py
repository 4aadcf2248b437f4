"""The one interface every model implements (SocialFusion and the VLM baselines): what training, evaluation,
prediction, checkpointing, LoRA merging, gradient conflict and the optimizer need. Nothing outside
`models/factory.py` asks which model it holds.

A batch is a dict of one task's samples (`data/pipeline.py`); the model reads it with that task's readout
(`Task.readout`: "answer" or "heatmap") and hands the readout's outputs to the task for its loss. Inference
returns each task's raw readout output, which the task decodes (`Task.decode`).
"""

from __future__ import annotations

import torch
from torch import nn

from ..tasks.base import Task
from .llm import answer_ids


class TaskModel(nn.Module):
    """Base class of the models. Subclasses set `cfg`, `tasks`, `tokenizer` and implement the abstract methods."""

    cfg: object
    tasks: dict[str, Task]

    # ------------------------------------------------------------------ what a subclass implements

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Training: {"loss", "n_supervised", "loss_<part>"...} of the batch's task (`Task.loss`)."""
        raise NotImplementedError

    def infer_tasks(self, batch: dict, tasks: list[str], method: str = "auto") -> dict:
        """Inference of several tasks on the same rows and boxes: {task: raw readout output} (class log-probs
        (B, C) for an answer task, under decoding constrained to its verbalizers; {"heatmap", "inout"} for a
        heatmap task), each what the task alone gives. `method`: how the verbalizers are scored
        (`scoring.plan_scoring`: auto, full, or fast, which refuses verbalizers that share a first token)."""
        raise NotImplementedError

    @property
    def image_input(self):
        """The object that turns PIL images into this model's pixel inputs: `preprocess(images, boxes=None)`,
        `wants_boxes` (the boxes are drawn on the image), `identity()` (what a cached feature depends on)."""
        raise NotImplementedError

    def component(self, name: str) -> str:
        """The component of a parameter name (optimizer groups, parameter table, gradient conflict): e.g.
        connector, box_embed, gaze_head, llm, llm.lora, encoder."""
        raise NotImplementedError

    # ------------------------------------------------------------------ what a subclass may refine

    @property
    def device(self) -> torch.device:
        return next(p for p in self.parameters()).device

    def prepare_inputs(self, batch: dict) -> dict:
        """The batch with what every task of it shares computed once (SocialFusion: the frozen encoder's features
        in place of the pixels). Inference calls this before `infer_tasks` on subsets of the rows."""
        return batch

    @property
    def cacheable_encoder(self):
        """The frozen image encoder whose features may be cached on disk (`features/cache.py`), or None."""
        return None

    def fit_statistics(self, batches) -> int:
        """Measure input statistics on training batches (as the loader builds them: pixels or cached features)
        before training (SocialFusion's connector standardisation); returns how many feature tokens were measured
        (0: nothing to fit)."""
        return 0

    def shared_components(self) -> list[str]:
        """Components all tasks train (gradient conflict is measured on these): all but the task-specific heads."""
        return sorted({self.component(n) for n, p in self.named_parameters() if p.requires_grad} - {"gaze_head"})

    def parameter_table(self) -> list[dict]:
        rows: dict[str, dict] = {}
        for name, p in self.named_parameters():
            c = self.component(name)
            row = rows.setdefault(c, {"component": c, "trainable": 0, "frozen": 0})
            row["trainable" if p.requires_grad else "frozen"] += p.numel()
        return list(rows.values())

    def answers(self, task: str) -> list[list[int]]:
        """Token ids of each class verbalizer of an answer task (each ends with EOS), built once per task."""
        cache = self.__dict__.setdefault("_answer_ids", {})
        if task not in cache:
            cache[task] = [answer_ids(self.tokenizer, v) for v in self.tasks[task].verbalizers]
        return cache[task]

    # ------------------------------------------------------------------ one task's readout

    # `infer_tasks` of the batch's own task, undecoded: what tests and benchmarks compare across models, paths and
    # checkpoints

    @torch.no_grad()
    def score_classes(self, batch: dict, method: str = "auto") -> torch.Tensor:
        """Class log-probabilities (B, C) of the batch's answer task (`infer_tasks` with that task alone)."""
        return self.infer_tasks(batch, [batch["task"]], method)[batch["task"]]

    @torch.no_grad()
    def predict_heatmap(self, batch: dict) -> dict[str, torch.Tensor]:
        """{"heatmap", "inout"} of the batch's heatmap task (`infer_tasks` with that task alone)."""
        return self.infer_tasks(batch, [batch["task"]])[batch["task"]]

    def predict(self, batch: dict, tasks: list[str] | None = None) -> dict[str, list[dict]]:
        """Decoded predictions of `tasks` (default: the batch's task) on a batch: {task: one dict per row}."""
        names = tasks or [batch["task"]]
        raw = self.infer_tasks(self.prepare_inputs(batch), names)
        return {name: self.tasks[name].decode(raw[name]) for name in names}

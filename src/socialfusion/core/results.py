"""The result files as types: an evaluation's results.json, transfer.json, probe.json and gradconf.json.

Pydantic models (no torch), here in core so that both their producers (eval, analysis) and their reader (report)
may import them, as the config is. Each type reads and writes its own JSON: `load(path)` / `from_json(path_or_dict)`,
`save(path)` / `to_json()`. A record keeps the keys it does not model (`extra`), and writes only the keys it was
given or set (a key a file lacked stays out), in the order its fields are declared, which is the order the
producers write them; through strict_json (no NaN, ever). A malformed file is a ResultError naming the file and
the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError

from .. import strict_json


class ResultError(ValueError):
    """A result file that is not what its type expects (not JSON, not an object, a required key missing)."""


def _child(where: str, key: Any) -> str:
    """Where a nested value sits: "FILE: key.key" (the file once, then the path of keys)."""
    return f"{where}.{key}" if ": " in where else f"{where}: {key}"


def _message(err: ValidationError, where: str) -> str:
    """Pydantic's first error as "FILE: key.path: what is wrong"."""
    first = err.errors()[0]
    keys = [str(k) for k in first["loc"]]
    if first["type"] == "missing":
        parent = _child(where, ".".join(keys[:-1])) if keys[:-1] else where
        return f"{parent}: missing key {keys[-1]!r}"
    at = _child(where, ".".join(keys)) if keys else where
    if first["type"] in ("dict_type", "model_type", "model_attributes_type"):
        return f"{at}: expected a JSON object, got {type(first['input']).__name__}"
    return f"{at}: {first['msg']}"


class Record(BaseModel):
    """A JSON object with typed fields; the keys the type does not model are kept (`extra`)."""

    model_config = ConfigDict(extra="allow")
    FILE: ClassVar[str] = "result"

    @property
    def extra(self) -> dict:
        return dict(self.model_extra or {})

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None):
        """A record from JSON data; `where` (a file, a key path) names the place in errors."""
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise ResultError(_message(err, where or cls.FILE)) from None

    def to_dict(self) -> dict:
        """The JSON object: the keys given or set, in the fields' order, then the unmodelled ones."""
        return self.model_dump(exclude_unset=True)

    def to_json(self) -> str:
        return strict_json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path):
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ResultError(f"{path}: not a readable {cls.FILE} ({e})") from e
        return cls.from_dict(data, str(path))

    @classmethod
    def from_json(cls, source: str | Path | Mapping | Record):
        """A record from a file's path, from the data of one (a dict) or a record already (returned as it is)."""
        if isinstance(source, cls):
            return source
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        return cls.load(source)


# ------------------------------------------------------------------------------------------- evaluation
class TaskMetrics(RootModel[dict[str, Any]]):
    """One task's official metrics as evaluation writes them ({metric: value, ..., "n", "ci": {metric: [lo,
    hi]}}); the dict is kept as it is (its keys are the task's own), read through typed accessors."""

    def to_dict(self) -> dict:
        return self.root

    @property
    def n(self) -> int | None:
        return self.root.get("n")

    def value(self, metric: str, default: float | None = None) -> float | None:
        return self.root.get(metric, default)

    def interval(self, metric: str) -> list[float] | None:
        """The metric's 95 % interval, None without one."""
        return (self.root.get("ci") or {}).get(metric)


class EvalResults(Record):
    """results.json of `socialfusion eval` (and of every run's eval/): the metrics of each task of a split (None:
    unlabelled, a submission file written instead)."""

    FILE: ClassVar[str] = "results.json"
    split: str
    metrics: dict[str, TaskMetrics | None] = Field(default_factory=dict)
    intervals: dict | None = None
    skips: dict = Field(default_factory=dict)
    manifest: dict = Field(default_factory=dict)
    config: dict = Field(default_factory=dict)
    versions: dict = Field(default_factory=dict)
    files: dict = Field(default_factory=dict)


# ------------------------------------------------------------------------------------------- transfer
class Fit(Record):
    """A training run's fit.json as transfer.json keeps it: how long it trained, where it was selected, why it
    stopped, and its learning curve."""

    FILE: ClassVar[str] = "fit.json"
    steps: int | None = None
    cap: int | None = None
    stop_reason: str | None = None
    plateaued: bool | None = None
    eval_every: int | None = None
    patience: int | None = None
    selection_split: dict[str, str | None] | None = None  # {task: the split that selected}
    best_step: int | None = None
    best_value: float | None = None
    curve: list = Field(default_factory=list)


class TransferRun(Record):
    """One training run of a family (single-<task> or joint): its directory, the checkpoint scored, its metrics on
    the report split and its fit."""

    dir: str
    checkpoint: str | None = None
    steps: int | None = None
    cap: int | None = None
    seed: int | None = None
    metrics: dict[str, TaskMetrics | None] = Field(default_factory=dict)
    fit: Fit | None = None
    seconds: float | None = None


class TransferRow(Record):
    """One task of a family: the single-task and joint values of its primary metric, their difference and relative
    change with intervals, and the call ("positive", "negative", "within noise"; None: no value to compare)."""

    metric: str
    single: float | None = None
    single_ci: list[float] | None = None
    joint: float | None = None
    joint_ci: list[float] | None = None
    delta: float | None = None
    delta_ci: list[float] | None = None
    relative: float | None = None
    relative_ci: list[float] | None = None
    transfer: str | None = None
    n: int | None = None
    seeds: int | None = None
    interval: str | None = None
    per_seed: list | None = None


class Steps(Record):
    """A family's step budget: per single-task run and for the joint run."""

    single: int | None = None
    joint: int | None = None


class TransferFamily(Record):
    """A model family's (or a joint-run variant's) result: its overrides, budget, seeds, each task's row and the
    counts of the calls."""

    overrides: list[str] = Field(default_factory=list)
    joint_variant_of: str | None = None
    steps: Steps | None = None
    seeds: list[int] = Field(default_factory=list)
    tasks: dict[str, TransferRow] = Field(default_factory=dict)
    single_metrics: dict[str, TaskMetrics | None] = Field(default_factory=dict)
    joint_metrics: dict[str, TaskMetrics | None] = Field(default_factory=dict)
    mean_relative: float | None = None
    mean_relative_ci: list[float] | None = None
    n_positive: int = 0
    n_negative: int = 0
    n_within_noise: int = 0

    def row(self, task: str) -> TransferRow:
        """A task's row; a task the family has no row for reads as a row of nothing (no value, no call)."""
        return self.tasks.get(task) or TransferRow(metric="")


class SplitRoles(Record):
    """The split names a task trains on, selects on and reports on ("?": a file that does not say)."""

    train: str = "?"
    selection: str = "?"
    report: str = "?"


class TransferResult(Record):
    """transfer.json: the protocol, every family's result and every family's runs ({family: {run name: run}});
    like every analysis, its figures, their captions and its section of the report (markdown)."""

    FILE: ClassVar[str] = "transfer.json"
    config: str | None = None
    budget: str | None = None
    split: str | None = None
    splits: dict[str, SplitRoles] = Field(default_factory=dict)
    tasks: list[str] = Field(default_factory=list)
    seeds: int | None = None
    interval: str = "95 %"
    bootstrap: dict | None = None
    families: dict[str, TransferFamily] = Field(default_factory=dict)
    runs: dict[str, dict[str, TransferRun]] = Field(default_factory=dict)
    runs_by_seed: dict | None = None
    seconds: float | None = None
    figures: list[str] = Field(default_factory=list)
    captions: dict[str, str] = Field(default_factory=dict)
    markdown: str = ""

    def family(self, name: str) -> TransferFamily:
        """A family's result; one the file lacks reads as an empty family (no steps, seeds or rows)."""
        return self.families.get(name) or TransferFamily()

    def split_roles(self, task: str) -> SplitRoles:
        return self.splits.get(task) or SplitRoles()

    def run(self, family: str, name: str) -> TransferRun:
        """A family's run by name (single-<task>, joint), a clear error when the file has none."""
        try:
            return self.runs[family][name]
        except KeyError:
            raise ResultError(f"{self.FILE}: no run {name!r} of family {family!r}") from None


# ------------------------------------------------------------------------------------------- probes
class ProbeEncoder(Record):
    """An encoder the probes read: the spec it came from and its shape."""

    spec: str | None = None
    identity: Any = None
    num_layers: int | None = None
    grid: list[int] = Field(default_factory=list)
    hidden_size: int | None = None
    layers: list[int] = Field(default_factory=list)
    skipped_layers: list[int] = Field(default_factory=list)


class ProbeRow(Record):
    """One probe: an encoder's layer, a task and a pooling, and its value of the task's primary metric (the fit's
    other fields, which differ between the linear and the gaze probe, stay in `extra`)."""

    encoder: str
    layer: int
    task: str
    pool: str
    metric: str
    value: float | None = None


class ProbeResult(Record):
    """probe.json: every probed encoder and every probe's row, the chance levels, the figure, captions, section."""

    FILE: ClassVar[str] = "probe.json"
    config: str | None = None
    pools: list[str] = Field(default_factory=list)
    encoders: dict[str, ProbeEncoder] = Field(default_factory=dict)
    results: list[ProbeRow] = Field(default_factory=list)
    n_samples: dict[str, int] = Field(default_factory=dict)
    skips: dict = Field(default_factory=dict)
    intervals: dict | None = None
    chance: dict[str, float] = Field(default_factory=dict)
    figures: list[str] = Field(default_factory=list)
    captions: dict[str, str] = Field(default_factory=dict)
    markdown: str = ""
    seconds: float | None = None


# ------------------------------------------------------------------------------------------- gradient conflict
class GradconfPair(Record):
    """Two tasks' gradient statistics (cosine, conflict frequency, ...) and their intervals."""

    a: str
    b: str
    cosine: float | None = None
    mean_batch_cosine: float | None = None
    conflict_frequency: float | None = None
    magnitude_similarity: float | None = None
    ci: dict | None = None


class GradconfResult(Record):
    """gradconf.json: the protocol, the statistics overall and per component (task x task matrices), per pair."""

    FILE: ClassVar[str] = "gradconf.json"
    tasks: list[str] = Field(default_factory=list)
    batches: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    loss_weights: dict[str, float] = Field(default_factory=dict)
    mean_loss: dict[str, float] = Field(default_factory=dict)
    mean_loss_ci: dict = Field(default_factory=dict)
    intervals: dict | None = None
    components: dict[str, int] = Field(default_factory=dict)
    excluded_components: list[str] = Field(default_factory=list)
    overall: dict = Field(default_factory=dict)
    per_component: dict = Field(default_factory=dict)
    pairs: list[GradconfPair] = Field(default_factory=list)
    skips: dict = Field(default_factory=dict)
    seconds: float | None = None
    figures: list[str] = Field(default_factory=list)
    captions: dict[str, str] = Field(default_factory=dict)
    markdown: str = ""


RESULT_TYPES = (EvalResults, TransferResult, ProbeResult, GradconfResult)

"""The result files as types: an evaluation's results.json, transfer.json, probe.json and gradconf.json.

Pure dataclasses (no torch), here in core so that both their producers (eval, analysis) and their reader (report)
may import them. Each type reads and writes its own JSON: `load(path)` / `from_json(path_or_dict)`, `save(path)` /
`to_json()`. Files stay what they were: a record read from a file keeps its key order and the keys it does not
model (`extra`), so a read and a write give the same bytes; written through strict_json (no NaN, ever).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .. import strict_json


class ResultError(ValueError):
    """A result file that is not what its type expects (not JSON, not an object, a required key missing)."""


def nested(kind: type, many: str | None = None, default: Any = None, omit: bool = False) -> Any:
    """A field holding a record (`many`: None), a list of them ("list"), a {key: record} ("dict") or a {key: {key:
    record}} ("dict2"). `omit`: the key is left out of the JSON while the field is None (keys written only
    sometimes)."""
    return field(**_default_of(default), metadata={"kind": kind, "many": many, "omit": omit})


def optional(default: Any = None, omit: bool = False) -> Any:
    """A plain field that a file may lack, read as `default`; `omit` as in `nested`."""
    return field(**_default_of(default), metadata={"omit": omit})


def _default_of(default: Any) -> dict:
    # an empty {} or [] default becomes a factory: one shared mutable default would leak between records
    return {"default_factory": type(default)} if isinstance(default, (dict, list)) else {"default": default}


def _child(where: str, key: Any) -> str:
    """Where a nested value sits: "FILE: key.key" (the file once, then the path of keys)."""
    return f"{where}.{key}" if ": " in where else f"{where}: {key}"


def _read(f: dataclasses.Field, value: Any, where: str) -> Any:
    kind, many = f.metadata.get("kind"), f.metadata.get("many")
    if kind is None or value is None:
        return value
    if many is None:
        return kind.from_dict(value, where)
    if many == "list":
        if not isinstance(value, list):
            raise ResultError(f"{where}: expected a list, got {type(value).__name__}")
        return [kind.from_dict(v, _child(where, i)) for i, v in enumerate(value)]
    inner = _mapping(value, where)
    if many == "dict":
        return {k: None if v is None else kind.from_dict(v, _child(where, k)) for k, v in inner.items()}
    return {
        k: {k2: kind.from_dict(v2, _child(_child(where, k), k2)) for k2, v2 in _mapping(v, _child(where, k)).items()}
        for k, v in inner.items()
    }


def _write(f: dataclasses.Field, value: Any) -> Any:
    many = f.metadata.get("many")
    if f.metadata.get("kind") is None or value is None:
        return value
    if many is None:
        return value.to_dict()
    if many == "list":
        return [v.to_dict() for v in value]
    if many == "dict":
        return {k: None if v is None else v.to_dict() for k, v in value.items()}
    return {k: {k2: v2.to_dict() for k2, v2 in v.items()} for k, v in value.items()}


def _mapping(value: Any, where: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ResultError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@dataclass(kw_only=True)
class Record:
    """A JSON object with typed fields; `extra` holds the keys the type does not model, `key_order` the order the
    keys came in (empty: the fields' order), so that what was read is written back as it was."""

    extra: dict = field(default_factory=dict, repr=False)
    key_order: tuple = field(default=(), repr=False, compare=False)
    FILE: ClassVar[str] = "result"

    @classmethod
    def _fields(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.name not in ("extra", "key_order")]

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None):
        """A record from JSON data; `where` (a file, a key path) names the place in errors."""
        where = where or cls.FILE
        data = _mapping(data, where)
        values = {}
        for f in cls._fields():
            if f.name in data:
                values[f.name] = _read(f, data[f.name], _child(where, f.name))
            elif _required(f):
                raise ResultError(f"{where}: missing key {f.name!r} (a {cls.__name__} needs it)")
        names = {f.name for f in cls._fields()}
        return cls(**values, extra={k: v for k, v in data.items() if k not in names}, key_order=tuple(data))

    def to_dict(self) -> dict:
        """The JSON object: the keys in the order they were read (or the fields' order), then any field set since."""
        fields = {f.name: f for f in self._fields()}
        out = {}
        for name in self.key_order or tuple(fields):
            if name in fields:
                value = getattr(self, name)
                if not (fields[name].metadata.get("omit") and value is None and not self.key_order):
                    out[name] = _write(fields[name], value)
            elif name in self.extra:
                out[name] = self.extra[name]
        for name, f in fields.items():
            value = getattr(self, name)
            # a field the file lacked and nobody set stays out: a file read and written keeps its keys
            unset = value is None if f.metadata.get("omit") else (self.key_order and value == _default(f))
            if name not in out and not unset:
                out[name] = _write(f, value)
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

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


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


# ------------------------------------------------------------------------------------------- evaluation
class TaskMetrics:
    """One task's official metrics as evaluation writes them ({metric: value, ..., "n", "ci": {metric: [lo,
    hi]}}); the dict is kept as it is (its keys are the task's own), read through typed accessors."""

    def __init__(self, scores: Mapping):
        self.scores = dict(scores)

    @classmethod
    def from_dict(cls, data: Any, where: str = "metrics") -> TaskMetrics:
        return cls(_mapping(data, where))

    def to_dict(self) -> dict:
        return self.scores

    def __eq__(self, other) -> bool:
        return isinstance(other, TaskMetrics) and self.scores == other.scores

    def __repr__(self) -> str:
        return f"TaskMetrics({self.scores!r})"

    @property
    def n(self) -> int | None:
        return self.scores.get("n")

    def value(self, metric: str, default: float | None = None) -> float | None:
        return self.scores.get(metric, default)

    def interval(self, metric: str) -> list[float] | None:
        """The metric's 95 % interval, None without one."""
        return (self.scores.get("ci") or {}).get(metric)


@dataclass(kw_only=True)
class EvalResults(Record):
    """results.json of `socialfusion eval` (and of every run's eval/): the metrics of each task of a split (None:
    unlabelled, a submission file written instead)."""

    FILE: ClassVar[str] = "results.json"
    split: str
    metrics: dict[str, TaskMetrics | None] = nested(TaskMetrics, "dict", default={})
    intervals: dict | None = None
    skips: dict = optional({})
    manifest: dict = optional({})
    config: dict = optional({})
    versions: dict = optional({})
    files: dict = optional({})


# ------------------------------------------------------------------------------------------- transfer
@dataclass(kw_only=True)
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
    selection_split: str | None = None
    best_step: int | None = None
    best_value: float | None = None
    curve: list = optional([])


@dataclass(kw_only=True)
class TransferRun(Record):
    """One training run of a family (single-<task> or joint): its directory, the checkpoint scored, its metrics on
    the report split and its fit."""

    dir: str
    checkpoint: str | None = None
    steps: int | None = None
    cap: int | None = None
    seed: int | None = None
    metrics: dict[str, TaskMetrics | None] = nested(TaskMetrics, "dict", default={})
    fit: Fit | None = nested(Fit)
    seconds: float | None = None


@dataclass(kw_only=True)
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
    seeds: int | None = optional(omit=True)
    interval: str | None = None
    per_seed: list | None = optional(omit=True)


@dataclass(kw_only=True)
class Steps(Record):
    """A family's step budget: per single-task run and for the joint run."""

    single: int | None = None
    joint: int | None = None


@dataclass(kw_only=True)
class TransferFamily(Record):
    """A model family's (or a joint-run variant's) result: its overrides, budget, seeds, each task's row and the
    counts of the calls."""

    overrides: list[str] = optional([])
    joint_variant_of: str | None = optional(omit=True)
    steps: Steps | None = nested(Steps)
    seeds: list[int] = optional([])
    tasks: dict[str, TransferRow] = nested(TransferRow, "dict", default={})
    single_metrics: dict[str, TaskMetrics | None] = nested(TaskMetrics, "dict", default={})
    joint_metrics: dict[str, TaskMetrics | None] = nested(TaskMetrics, "dict", default={})
    mean_relative: float | None = None
    mean_relative_ci: list[float] | None = None
    n_positive: int = 0
    n_negative: int = 0
    n_within_noise: int = 0

    def row(self, task: str) -> TransferRow:
        """A task's row; a task the family has no row for reads as a row of nothing (no value, no call)."""
        return self.tasks.get(task) or TransferRow(metric="")


@dataclass(kw_only=True)
class SplitRoles(Record):
    """The split names a task trains on, selects on and reports on ("?": a file that does not say)."""

    train: str = "?"
    selection: str = "?"
    report: str = "?"


@dataclass(kw_only=True)
class TransferResult(Record):
    """transfer.json: the protocol, every family's result and every family's runs ({family: {run name: run}});
    like every analysis, its figures, their captions and its section of the report (markdown)."""

    FILE: ClassVar[str] = "transfer.json"
    config: str | None = None
    budget: str | None = None
    split: str | None = None
    splits: dict[str, SplitRoles] = nested(SplitRoles, "dict", default={})
    tasks: list[str] = optional([])
    seeds: int | None = None
    interval: str = "95 %"
    bootstrap: dict | None = None
    families: dict[str, TransferFamily] = nested(TransferFamily, "dict", default={})
    runs: dict[str, dict[str, TransferRun]] = nested(TransferRun, "dict2", default={})
    runs_by_seed: dict | None = optional(omit=True)
    seconds: float | None = None
    figures: list[str] = optional([])
    captions: dict[str, str] = optional({})
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
@dataclass(kw_only=True)
class ProbeEncoder(Record):
    """An encoder the probes read: the spec it came from and its shape."""

    spec: str | None = None
    identity: Any = None
    num_layers: int | None = None
    grid: list[int] = optional([])
    hidden_size: int | None = None
    layers: list[int] = optional([])
    skipped_layers: list[int] = optional([])


@dataclass(kw_only=True)
class ProbeRow(Record):
    """One probe: an encoder's layer, a task and a pooling, and its value of the task's primary metric (the fit's
    other fields, which differ between the linear and the gaze probe, stay in `extra`)."""

    encoder: str
    layer: int
    task: str
    pool: str
    metric: str
    value: float | None = None


@dataclass(kw_only=True)
class ProbeResult(Record):
    """probe.json: every probed encoder and every probe's row, the chance levels, the figure, captions, section."""

    FILE: ClassVar[str] = "probe.json"
    config: str | None = None
    pools: list[str] = optional([])
    encoders: dict[str, ProbeEncoder] = nested(ProbeEncoder, "dict", default={})
    results: list[ProbeRow] = nested(ProbeRow, "list", default=[])
    n_samples: dict[str, int] = optional({})
    skips: dict = optional({})
    intervals: dict | None = None
    chance: dict[str, float] = optional({})
    figures: list[str] = optional([])
    captions: dict[str, str] = optional({})
    markdown: str = ""
    seconds: float | None = None


# ------------------------------------------------------------------------------------------- gradient conflict
@dataclass(kw_only=True)
class GradconfPair(Record):
    """Two tasks' gradient statistics (cosine, conflict frequency, ...) and their intervals."""

    a: str
    b: str
    cosine: float | None = None
    mean_batch_cosine: float | None = None
    conflict_frequency: float | None = None
    magnitude_similarity: float | None = None
    ci: dict | None = optional(omit=True)


@dataclass(kw_only=True)
class GradconfResult(Record):
    """gradconf.json: the protocol, the statistics overall and per component (task x task matrices), per pair."""

    FILE: ClassVar[str] = "gradconf.json"
    tasks: list[str] = optional([])
    batches: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    loss_weights: dict[str, float] = optional({})
    mean_loss: dict[str, float] = optional({})
    mean_loss_ci: dict = optional({})
    intervals: dict | None = None
    components: dict[str, int] = optional({})
    excluded_components: list[str] = optional([])
    overall: dict = optional({})
    per_component: dict = optional({})
    pairs: list[GradconfPair] = nested(GradconfPair, "list", default=[])
    skips: dict = optional({})
    seconds: float | None = None
    figures: list[str] = optional([])
    captions: dict[str, str] = optional({})
    markdown: str = ""


RESULT_TYPES = (EvalResults, TransferResult, ProbeResult, GradconfResult)

"""Typed configuration: pydantic models are the schema, YAML files are instances, `a.b=value` overrides.

Parsing is pydantic's, strict (no string-to-number coercion) and closed (an unknown key is an error); its errors
become one ConfigError naming the key's dotted path (`_error_message`). `model` is a tagged union of the two model
families on `model.type`. Each section's cross-field checks are its `check` method, run by `validate` at load time.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError

from .errors import UserError

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(UserError, ValueError):
    pass


_YAML11_BOOL_WORDS = {"yes", "no", "on", "off", "y", "n"}


def _bool_word(value: Any) -> Any:
    """An override keeps yes/no/on/off as words (`parse_override`): a true/false field reads them as booleans."""
    if isinstance(value, str) and value.lower() in _YAML11_BOOL_WORDS:
        return value.lower() in ("yes", "on", "y")
    return value


def _on_off_word(value: Any) -> Any:
    """YAML 1.1 reads an unquoted on/off as a boolean: an on/off option reads it back as the word."""
    return ("on" if value else "off") if isinstance(value, bool) else value


Flag = Annotated[bool, BeforeValidator(_bool_word)]


class Section(BaseModel):
    """A config section: strict types, no unknown keys; attributes stay assignable (tests and analyses edit a
    loaded config, then `validate` it)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class LoraConfig(Section):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )

    def check(self, where: str) -> None:
        if self.r < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0 or not self.target_modules:
            raise ConfigError(f"{where}: needs r >= 1, alpha > 0, 0 <= dropout < 1 and target_modules, got {self}")


class EncoderLoraConfig(LoraConfig):
    """A LoraConfig with the vision encoder's defaults: rank 8 on every linear layer (["all-linear"] is PEFT's
    shorthand), no dropout. A separate class so that a partial override (`model.encoder.lora.r=4`) keeps these
    defaults for the other fields rather than the LLM's."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = Field(default_factory=lambda: ["all-linear"])


class EncoderConfig(Section):
    # Hugging Face id, local directory or "bundled:<name>"; None builds random-init weights from `arch`.
    pretrained: str | None = None
    # architecture JSON (a vision config with `model_type`), relative to the presets dir; used for random init
    # and for planning on the meta device without weights.
    arch: str | None = None
    # hidden-state index to read (-2 = penultimate, the LLaVA convention)
    layer: int = -2
    image_size: int | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    # read the vision tower out of a VLM checkpoint (e.g. LLaVA, Qwen2-VL) instead of a vision model
    from_vlm: Flag = False
    # the adapters of `model.trainable.encoder: lora`
    lora: EncoderLoraConfig = Field(default_factory=EncoderLoraConfig)

    def check(self) -> None:
        if self.pretrained is None and self.arch is None:
            raise ConfigError("model.encoder: set `pretrained` or `arch`")
        self.lora.check("model.encoder.lora")


class ConnectorConfig(Section):
    type: Literal["mlp2x_gelu", "linear"] = "mlp2x_gelu"
    # k x k average pooling of the patch grid before the connector (fewer visual tokens)
    pool: int = 1
    # normalisation of the encoder features before the connector. "layer": a parameter-free LayerNorm per token
    # (some layers, e.g. DINOv2's last before its final norm, have norms in the hundreds, which a freshly
    # initialised connector would pass on to the LLM). "standardize": per-channel mean and standard deviation
    # measured once on the training images when training starts (kept in the checkpoint), as a linear probe
    # standardises its inputs: a few DINOv2 channels have means near 17 and spreads near 8 while most spread
    # ~0.3, and per-token LayerNorm leaves the rest too small to learn from in a short run.
    input_norm: Literal["none", "layer", "standardize"] = "none"
    # k > 0: each box role also gets k x k "region tokens", RoI-aligned from the full-resolution patch grid
    # (before pooling) and projected by the same connector. A small pooled grid blurs a face or a hand into one
    # cell; these tokens keep its detail for a few extra positions. 0 = the paper's model (mask only).
    box_tokens: int = 0
    # where the region tokens go: "image" (after the grid) or "answer" (after the prompt's text, so the answer's
    # first token is predicted at the last region token, whose own embedding the residual stream carries to the
    # LM head: a short path from a box's features to the class logits)
    box_tokens_at: Literal["image", "answer"] = "image"

    def check(self, box: BoxConfig) -> None:
        if self.pool < 1:
            raise ConfigError(f"model.connector.pool must be >= 1, got {self.pool}")
        if self.box_tokens < 0:
            raise ConfigError(f"model.connector.box_tokens must be >= 0, got {self.box_tokens}")
        if self.box_tokens and not box.enabled:
            raise ConfigError("model.connector.box_tokens needs the boxes, but model.box.enabled is false")


class BoxConfig(Section):
    # false: the ablation without the box embedding mask (the visual tokens are the connector's output, whatever
    # the boxes; no region tokens either)
    enabled: Flag = True
    # number of learned role embeddings; 1 reproduces the paper's single embedding, 2 tells a pair apart
    roles: int = 2

    def check(self) -> None:
        if self.roles < 1:
            raise ConfigError(f"model.box.roles must be >= 1, got {self.roles}")


class LLMConfig(Section):
    pretrained: str | None = None
    arch: str | None = None
    # "tiny" builds a small BPE tokenizer in-process; None uses the tokenizer next to `pretrained`
    tokenizer: str | None = None
    use_chat_template: Flag = True
    # keep only the first N decoder layers (a CPU-sized LLM); None keeps them all
    num_layers: int | None = None
    # or keep these decoder layers, in this order (negative: from the end), e.g. [0, 1, 2, 3, 4, 5, -2, -1]
    layers: list[int] | None = None
    lora: LoraConfig = Field(default_factory=LoraConfig)
    gradient_checkpointing: Flag = False

    def check(self) -> None:
        if self.pretrained is None and self.arch is None:
            raise ConfigError("model.llm: set `pretrained` or `arch`")
        if self.num_layers is not None and self.num_layers < 1:
            raise ConfigError(f"model.llm.num_layers must be >= 1, got {self.num_layers}")
        if self.layers is not None and (self.num_layers is not None or not self.layers):
            raise ConfigError("model.llm.layers: give a non-empty list, and not together with model.llm.num_layers")


class GazeHeadConfig(Section):
    loss: Literal["kl", "bce"] = "kl"
    sigma: float = 3.0
    inout: Flag = True
    # SocialFusion only: add to the heatmap a term on the encoder's full patch grid (a query from the prompt's last
    # hidden state against keys of the standardised patch features), for a connector that pools the grid; 0: off,
    # else the width of the query and the keys (models/heads.py, DESIGN-CHANGES 25)
    patch_keys: int = 0

    def check(self, family: str) -> None:
        if self.patch_keys < 0 or (family == "vlm" and self.patch_keys):
            raise ConfigError(
                "model.gaze.patch_keys: a width >= 0, and 0 for a VLM baseline (its head reads the image positions "
                "only)"
            )


class TrainableConfig(Section):
    encoder: Literal["frozen", "lora", "full"] = "frozen"
    connector: Literal["frozen", "full"] = "full"
    llm: Literal["frozen", "lora", "full"] = "lora"
    box_embed: Literal["frozen", "full"] = "full"
    heads: Literal["frozen", "full"] = "full"


class VLMTrainableConfig(Section):
    vision: Literal["frozen", "lora", "full"] = "frozen"
    projector: Literal["frozen", "full"] = "full"
    llm: Literal["lora", "full", "frozen"] = "lora"


class SocialFusionConfig(Section):
    """`model.type: socialfusion` (the default): a frozen encoder, a connector, the box embedding mask, an LLM with
    LoRA (`models/socialfusion.py`)."""

    type: Literal["socialfusion"] = "socialfusion"
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    connector: ConnectorConfig = Field(default_factory=ConnectorConfig)
    box: BoxConfig = Field(default_factory=BoxConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    gaze: GazeHeadConfig = Field(default_factory=GazeHeadConfig)
    # the classification loss on the answer tokens: "lm" is next-token cross-entropy over the whole vocabulary
    # (LLaVA's); "verbalizer" restricts each softmax to the tokens that continue some class verbalizer, i.e.
    # -log P(class) under the scorer (`models/scoring.py`). Inference is the same for both.
    answer_loss: Literal["lm", "verbalizer"] = "lm"
    trainable: TrainableConfig = Field(default_factory=TrainableConfig)
    seed: int = 0

    def fine_tunes_fully(self) -> bool:
        """Is a pretrained network (the LLM, the image encoder) trained in full? (FSDP's case, train/distributed.py)"""
        return "full" in (self.trainable.llm, self.trainable.encoder)

    def check(self, train: TrainConfig) -> None:
        self.gaze.check(self.type)
        self.encoder.check()
        self.llm.check()
        self.connector.check(self.box)
        self.box.check()
        if self.trainable.encoder != "frozen" and train.feature_cache != "off":
            # a trainable encoder changes its features every step: a cache would serve stale features
            raise ConfigError("train.feature_cache must be 'off' when model.trainable.encoder is not 'frozen'")


class VLMBaselineConfig(Section):
    """`model.type: vlm`: a Hugging Face image-text-to-text model as a baseline (`models/vlm.py`). It trains with
    the LM loss only and gets its boxes as text or drawn (`boxes`); SocialFusion's options (encoder, connector, box
    mask, answer_loss...) are not fields here, so setting one is an unknown-key error instead of a silent no-op.
    The gaze head and its targets use `gaze`, as SocialFusion's do."""

    type: Literal["vlm"] = "vlm"
    # Hugging Face id or local directory; None builds random-init weights from `arch`
    pretrained: str | None = None
    # architecture JSON (a full VLM config with `model_type`), relative to the presets dir
    arch: str | None = None
    # None: the processor next to `pretrained`; "tiny": built in-process around the tiny tokenizer
    processor: str | None = None
    # boxes as text coordinates in the prompt, or painted on the image (one colour per role)
    boxes: Literal["text", "draw"] = "text"
    # side of the square every image is resized to (None: the vision tower's size; Qwen2-VL: 448)
    image_size: int | None = None
    trainable: VLMTrainableConfig = Field(default_factory=VLMTrainableConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    gradient_checkpointing: Flag = False

    gaze: GazeHeadConfig = Field(default_factory=GazeHeadConfig)
    seed: int = 0

    def fine_tunes_fully(self) -> bool:
        """Is a pretrained network (the LLM, the vision tower) trained in full? (FSDP's case, train/distributed.py)"""
        return "full" in (self.trainable.llm, self.trainable.vision)

    def check(self, train: TrainConfig) -> None:
        self.gaze.check(self.type)
        if self.pretrained is None and self.arch is None:
            raise ConfigError("model: a VLM baseline needs `pretrained` or `arch`")
        if self.pretrained is None and self.processor is None:
            raise ConfigError("model: a random-init VLM baseline (no `pretrained`) needs processor: tiny")
        if self.trainable.vision != "frozen" and train.feature_cache != "off":
            raise ConfigError("train.feature_cache must be 'off' when model.trainable.vision is not 'frozen'")
        self.lora.check("model.lora")


def _family(value: Any) -> str:
    """The tag of a model section: its `type`, "socialfusion" when a mapping gives none."""
    return value.get("type", "socialfusion") if isinstance(value, dict) else getattr(value, "type", "socialfusion")


# the model families, told apart by `model.type`; only the chosen family's fields are read
ModelConfig = Annotated[
    Annotated[SocialFusionConfig, Tag("socialfusion")] | Annotated[VLMBaselineConfig, Tag("vlm")],
    Discriminator(_family),
]


class TaskDataConfig(Section):
    task: str
    # adapter name (registry); None = the task's default dataset
    dataset: str | None = None
    root: str | None = None
    # The three roles of a study (docs/DATASETS.md "Splits"): train_split trains, val_split *selects* (evaluation
    # during training, early stopping, checkpoints/best, the probes' regularisation), test_split *reports* (scored
    # once, by nothing chosen on it). HOLDOUT ("holdout") names a selection split carved from train_split for a
    # benchmark without public test labels, where the official val reports (`data/holdout.py`).
    train_split: str = "train"
    val_split: str = "val"
    test_split: str | None = None
    # share of train_split's groups (a clip, a HaGRID user, else an image) held out when a split is "holdout"
    holdout_fraction: float = 0.15
    adapter_options: dict[str, Any] = Field(default_factory=dict)
    task_options: dict[str, Any] = Field(default_factory=dict)
    loss_weight: float = 1.0
    # cap on training samples drawn from this task (HaGRIDv2 has a million images)
    max_train_samples: int | None = None
    max_eval_samples: int | None = None

    def check(self, where: str) -> None:
        """The roles stay apart: nothing selected on a split is reported on it, and a holdout never trains."""
        if self.loss_weight < 0:
            raise ConfigError(f"{where}.loss_weight must be >= 0")
        if self.train_split == "holdout":
            raise ConfigError(f"{where}.train_split: 'holdout' is carved from the training split; it cannot be one")
        if self.test_split is not None and self.test_split == self.val_split:
            raise ConfigError(
                f"{where}: val_split (selection) and test_split (report) are both {self.val_split!r}; a reported "
                "score must come from a split no choice has seen (set val_split: holdout to carve a selection split "
                "from train)"
            )
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ConfigError(f"{where}.holdout_fraction must be in (0, 1), got {self.holdout_fraction}")


class DataConfig(Section):
    tasks: list[TaskDataConfig] = Field(default_factory=list)
    # the task of each batch (train/sampler.py); round_robin with train.grad_accum = number of tasks puts every
    # task in every optimizer step
    sampler: Literal["proportional", "uniform", "temperature", "round_robin"] = "proportional"
    temperature: float = 2.0
    on_bad_sample: Literal["skip", "error"] = "skip"

    def check(self) -> None:
        seen = set()
        for i, td in enumerate(self.tasks):
            if td.task in seen:
                raise ConfigError(f"data.tasks[{i}]: task {td.task!r} is listed twice")
            seen.add(td.task)
            td.check(f"data.tasks[{i}]")


class TrainConfig(Section):
    steps: int = 100
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    # SocialFusion's connector and box embedding, trained from scratch; a VLM baseline's projector is pretrained and
    # trains at `lr` with its LLM, as in LLaVA's fine-tuning stage (train/optim.py), so these do not reach it
    lr_connector: float | None = None
    lr_box_embed: float | None = None
    lr_heads: float | None = None
    lr_lora: float | None = None
    # a trainable encoder's (encoder: lora|full, or a VLM's vision tower); None: 1/50 of the connector's lr
    # (`train/optim.py` says why). Unused while the encoder is frozen.
    lr_encoder: float | None = None
    weight_decay: float = 0.0
    warmup_steps: int = 10
    grad_clip: float = 1.0
    # "pcgrad": combine the tasks of a step by gradient surgery (train/surgery.py); needs several tasks per step
    # (data.sampler: round_robin, grad_accum = number of tasks) and DDP or one process (not FSDP's shards)
    gradient_surgery: Literal["none", "pcgrad"] = "none"
    eval_every: int = 0
    save_every: int = 0
    early_stop_patience: int = 0
    precision: Literal["fp32", "bf16", "auto"] = "fp32"
    # multi-process gradient synchronisation (train/distributed.py): "ddp" replicates the model; "fsdp" shards it
    # (FSDP2 fully_shard); "auto" picks fsdp when an LLM or encoder is fully fine-tuned, ddp otherwise
    distributed: Literal["auto", "ddp", "fsdp"] = "auto"
    # "auto": the frozen encoder's features are cached when the run reads each training image more than once
    # and the cache fits in feature_cache_max_gb (features/inputs.py, `cache_decision`); "on"/"off" force it
    feature_cache: Annotated[Literal["auto", "on", "off"], BeforeValidator(_on_off_word)] = "auto"
    feature_cache_max_gb: float = 50.0
    # how many training runs read the same images' features, so that `auto` counts the reuse across runs; only a
    # config sets it (`transfer`'s single-task and joint runs read the same images, but each decides with the
    # configured value)
    feature_cache_runs: int = 1
    cache_dir: str | None = None
    eval_batch_size: int = 16
    # image-decoding worker processes (DataLoader); 0 decodes in the main process; "auto" = min(4, cpus - 1)
    # (`resolve_num_workers`: the training process keeps a core). Batches do not depend on it (data/pipeline.py).
    num_workers: int | Literal["auto"] = "auto"
    # batches each worker prepares ahead of the one being trained on
    prefetch_factor: int = 2
    seed: int = 0
    log_every: int = 10
    # besides log.jsonl (always): TensorBoard event files in <run>/tensorboard (train/tracking.py), or none
    report_to: Literal["tensorboard", "none"] = "tensorboard"

    def check(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be >= 1")
        if self.gradient_surgery != "none" and self.grad_accum < 2:
            raise ConfigError(
                f"train.gradient_surgery={self.gradient_surgery} needs several tasks in a step: set train.grad_accum "
                ">= 2 (data.sampler: round_robin with grad_accum = the number of tasks puts every task in every step)"
            )
        if self.num_workers != "auto" and self.num_workers < 0:
            raise ConfigError(f"train.num_workers must be >= 0 or 'auto', got {self.num_workers}")
        if self.prefetch_factor < 1:
            raise ConfigError(f"train.prefetch_factor must be >= 1, got {self.prefetch_factor}")
        if self.feature_cache_max_gb < 0 or self.feature_cache_runs < 1:
            raise ConfigError("train.feature_cache_max_gb must be >= 0 and train.feature_cache_runs >= 1")


def resolve_num_workers(value: int | str, cpus: int | None = None) -> int:
    """`train.num_workers` as a count. "auto": min(4, cpus - 1), never more than cpus - 1 (the training process
    needs a core of its own), 0 on a single core; cpus are the ones this process may run on."""
    if value != "auto":
        return int(value)
    if cpus is None:
        import os

        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cpus - 1))


class Config(Section):
    name: str = "unnamed"
    model: ModelConfig = Field(default_factory=SocialFusionConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


# ---------------------------------------------------------------- pydantic's errors as dotted key paths


def from_dict(cls: type[Section], data: Any) -> Any:
    """`data` (plain YAML/JSON values) as a `cls`, or a ConfigError naming the first wrong key's dotted path."""
    if data is None:
        data = {}
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        message = _error_message(err, cls)
        raise ConfigError(message, hint=_LAYOUT_HINT if "unknown key(s) model.vlm" in message else None) from None


# configs written before the model families were a tagged union kept a VLM baseline's options under model.vlm
_LAYOUT_HINT = "a VLM baseline's options now sit directly under model: model.vlm.boxes is model.boxes, and so on"


_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true/false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _error_message(err: ValidationError, cls: type[Section]) -> str:
    errors = err.errors()
    first = errors[0]
    path, parent = _key_path(first["loc"], cls)
    kind, value = first["type"], first.get("input")
    if kind == "extra_forbidden":
        where = path.rsplit(".", 1)[0] + "." if "." in path else ""
        unknown = sorted({_key_path(e["loc"], cls)[0] for e in errors if e["type"] == "extra_forbidden"})
        unknown = [u for u in unknown if u.startswith(where) and "." not in u[len(where) :]]
        return f"unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(parent.model_fields))}"
    if kind == "union_tag_invalid":
        return f"{path}.type: {first['ctx']['tag']!r} is not one of [{first['ctx']['expected_tags']}]"
    if kind == "literal_error":
        return f"{path}: {value!r} is not one of [{first['ctx']['expected'].replace(' or ', ', ')}]"
    same_key = [e for e in errors if _key_path(e["loc"], cls)[0] == path]
    if len(same_key) > 1:  # every arm of a union refused the value
        return f"{path or '<root>'}: {value!r} matches none of the accepted types"
    if kind in _EXPECTED:
        return f"{path or '<root>'}: expected {_EXPECTED[kind]}, got {value!r}"
    return f"{path or '<root>'}: {first['msg']}"


def _key_path(loc: tuple, cls: type) -> tuple[str, type]:
    """A pydantic error location -> (dotted key path, the section holding the key). Union arms add a member's name
    to the location (`int`, `literal['auto']`, a model family's tag); they are not keys and are dropped."""
    parts: list[str] = []
    tp, holder = cls, cls
    for item in loc:
        tp = _strip_optional(_strip_annotated(tp))
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            holder = tp
            parts.append(str(item))
            field_info = tp.model_fields.get(item)
            tp = field_info.annotation if field_info else Any
        elif typing.get_origin(tp) in (typing.Union, types.UnionType):
            tp = _union_arm(tp, item)
        elif typing.get_origin(tp) is list:
            parts[-1] += f"[{item}]"
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            parts.append(str(item))
            tp = typing.get_args(tp)[1]
        else:
            parts.append(str(item))
    return ".".join(parts), holder


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _strip_optional(tp: Any) -> Any:
    """`X | None` -> X: pydantic validates it as a nullable X and names no union arm in the location."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        arms = [arm for arm in typing.get_args(tp) if arm is not type(None)]
        if len(arms) == 1:
            return arms[0]
    return tp


def _union_arm(tp: Any, name: Any) -> Any:
    """The arm of a union that pydantic names `name` in an error location: a model family's tag, else the arm's
    type as pydantic writes it (`int`, `literal['auto']`, `list[int]`)."""
    for arm in typing.get_args(tp):
        tags = [m.tag for m in getattr(arm, "__metadata__", ()) if isinstance(m, Tag)]
        bare = _strip_annotated(arm)
        origin = typing.get_origin(bare)
        written = getattr(origin or bare, "__name__", None)
        if name in tags or name == written or (written and str(name).startswith(f"{written.lower()}[")):
            return bare
    return Any


# ---------------------------------------------------------------- loading, overrides, validation


def _list_index(items: list, key: str, dotted: str, where: str) -> int:
    """The position `key` names in a list: an index (`data.tasks.1`), or a task's name (`data.tasks.expression`)
    in a list of task entries."""
    names = [item.get("task") if isinstance(item, dict) else None for item in items]
    if key.lstrip("-").isdigit():
        index = int(key)
        if not -len(items) <= index < len(items):
            raise ConfigError(f"override {dotted}: {where} has {len(items)} entries, no index {index}")
        return index
    if key in names:
        return names.index(key)
    if any(names):
        raise ConfigError(f"override {dotted}: no task {key!r} in {where} (tasks: {', '.join(str(n) for n in names)})")
    raise ConfigError(f"override {dotted}: {where} is a list; give an index, got {key!r}")


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    if dotted == "model.type" and isinstance(value, str):  # a family switch: `model.type=vlm model.arch=...`
        data["model"] = _in_family(data.get("model") or {}, value)
        return
    keys = dotted.split(".")
    node = data
    for i, key in enumerate(keys[:-1]):
        if isinstance(node, list):
            node = node[_list_index(node, key, dotted, ".".join(keys[:i]))]
        else:
            node = node.setdefault(key, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {dotted}: {'.'.join(keys[: i + 1])} is not a mapping")
    last = keys[-1]
    if isinstance(node, list):
        node[_list_index(node, last, dotted, ".".join(keys[:-1]))] = value
    else:
        node[last] = value


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    if raw.strip().lower() in _YAML11_BOOL_WORDS:
        return key.strip(), raw.strip()  # only true/false are booleans on the command line (YAML 1.2)
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads 2e-3 (no dot) as a string
    return key.strip(), value


def resolve_config_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if preset.exists():
        return preset
    presets = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
    raise ConfigError(f"no config file {str(name_or_path)!r} and no preset of that name (presets: {presets})")


def _load_yaml(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    base = data.pop("base", None)
    if base is None:
        return data
    parent = _load_yaml(resolve_config_path(base))
    family = (data.get("model") or {}).get("type")
    if family is not None:
        parent["model"] = _in_family(parent.get("model") or {}, family)
    return _deep_merge(parent, data)


# the fields every model family has: they survive a change of family (a preset's `base`, a `model.type=` override)
SHARED_MODEL_KEYS = ("gaze", "seed")


def _in_family(model: dict, family: str) -> dict:
    """A model section moved to `family`: unchanged if it is that family already, else only its shared fields
    (the other family's options would be unknown keys there)."""
    if model.get("type", "socialfusion") == family:
        return model
    return {"type": family, **{key: model[key] for key in SHARED_MODEL_KEYS if key in model}}


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load a preset name or YAML file (which may say `base: <preset>`), apply overrides, validate."""
    data = _load_yaml(resolve_config_path(name_or_path))
    for text in overrides:
        _set_dotted(data, *parse_override(text))
    config = from_dict(Config, data)
    validate(config)
    return absolute_paths(config)


def config_from_dict(data: dict) -> Config:
    """A saved config (a checkpoint's, a run's) -> Config, validated; one saved before the model families were a
    tagged union is read in today's layout first (`_upgrade_model_section`)."""
    config = from_dict(Config, _upgrade_model_section(data))
    validate(config)
    return config


def _upgrade_model_section(data: dict) -> dict:
    """Configs saved before the model families were a tagged union (socialfusion 0.2) had both families' fields
    under `model`, a VLM baseline's own under `model.vlm`: the family's fields are kept (a VLM's lifted to
    `model`), the other family's dropped (they did nothing)."""
    model = data.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("vlm"), dict):
        return data
    model = dict(model)
    vlm = model.pop("vlm")
    if model.get("type") == "vlm":
        model = {"type": "vlm", **vlm, **{key: model[key] for key in ("gaze", "seed") if key in model}}
    return {**data, "model": model}


def apply_overrides(config: Config, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A copy of `config` with `key.sub=value` overrides applied, validated like `load_config`."""
    if not overrides:
        return copy.deepcopy(config)
    data = config.to_dict()
    for text in overrides:
        _set_dotted(data, *parse_override(text))
    return absolute_paths(config_from_dict(data))


def absolute_paths(config: Config, base: str | Path | None = None) -> Config:
    """A copy of `config` with relative data roots and `train.cache_dir` made absolute against `base` (default: the
    current directory). A relative path means "from where the command runs"; a run saves its config with absolute
    ones, so its checkpoint evaluates from any directory."""
    import os

    config = copy.deepcopy(config)
    base = Path.cwd() if base is None else Path(base)
    for td in config.data.tasks:
        if td.root and not Path(td.root).is_absolute():
            td.root = os.path.normpath(base / td.root)
    if config.train.cache_dir and not Path(config.train.cache_dir).is_absolute():
        config.train.cache_dir = os.path.normpath(base / config.train.cache_dir)
    return config


def split_list(text: str | None, cast=str) -> list | None:
    """A comma-separated option ("lam,gaze", "-1,-6", "box, pair") -> [cast(item)] (items stripped, empty ones
    dropped); None when empty or not given. Every comma-separated option and argument is read with it."""
    return [cast(x.strip()) for x in text.split(",") if x.strip()] if text else None


def select_tasks(config: Config, names: list[str] | tuple[str, ...]) -> Config:
    """A copy of `config` keeping only the named tasks of `data.tasks` (in the config's order), validated."""
    known = [td.task for td in config.data.tasks]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(f"--tasks {','.join(unknown)} not in the config's tasks {known}")
    config = copy.deepcopy(config)
    config.data.tasks = [td for td in config.data.tasks if td.task in names]
    validate(config)
    return config


def validate(config: Config) -> None:
    """The cross-field checks of every section, each written with the section it checks. A task's own options
    (`task_options`, the label space, a default dataset) are the task's to check: `tasks.check_tasks`, run when
    a run builds its tasks, so that this module imports neither the tasks nor torch."""
    config.model.check(config.train)
    config.data.check()
    config.train.check()


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)

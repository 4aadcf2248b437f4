"""Corrupted checkpoints and feature-cache entries (truncated, bytes flipped, emptied, garbage appended) are
detected with a message naming the file: the checkpoint loader (and a resume) refuses, the cache deletes the
entry, recomputes the features and counts it. Safetensors alone does not checksum tensor bytes: the checkpoint's
checksums.json and the cache entries' content hash are what catch a flipped byte inside tensor data."""

from __future__ import annotations

import logging
import random
import shutil
import struct

import pytest
import torch

from socialfusion.models.checkpoint import (
    CheckpointError,
    load_model,
    load_trainable,
    read_checkpoint_config,
    save_checkpoint,
)

SEED = 7
RANDOM_FLIPS = 25  # per file


def _safetensors_data_start(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]


def _corruptions(data: bytes, is_safetensors: bool) -> dict[str, bytes]:
    body = _safetensors_data_start(data) if is_safetensors else len(data) // 2
    flip_data = bytearray(data)
    flip_data[body + (len(data) - body) // 2] ^= 0x01  # one bit inside tensor bytes: safetensors cannot see it
    flip_header = bytearray(data)
    flip_header[min(20, len(data) - 1)] ^= 0xFF
    return {
        "truncated to half": data[: len(data) // 2],
        "last byte cut": data[:-1],
        "zero bytes": b"",
        "bit flipped in tensor data": bytes(flip_data),
        "byte flipped in header": bytes(flip_header),
        "garbage appended": data + b"\x00garbage",
        "replaced by text": b"not a checkpoint\n",
    }


@pytest.fixture(scope="module")
def model_and_ckpt(tmp_path_factory):
    from socialfusion.config import load_config
    from socialfusion.models.socialfusion import SocialFusionModel

    config = load_config("tiny")
    model = SocialFusionModel(config.model)
    with torch.no_grad():  # non-zero LoRA B matrices, so every tensor matters
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn_like(p))
    state = {"step": torch.tensor(3), "optimizer": {"exp_avg": torch.randn(4096)}, "torch_rng": torch.get_rng_state()}
    ckpt = save_checkpoint(model, config, tmp_path_factory.mktemp("ckpt") / "last", training_state=state)
    return model, config, ckpt


@pytest.mark.parametrize("name", ["trainable.safetensors", "training_state.pt"])
def test_corrupted_checkpoint_files_are_refused_with_the_file_named(model_and_ckpt, tmp_path, name):
    model, _, pristine = model_and_ckpt
    data = (pristine / name).read_bytes()
    cases = _corruptions(data, name.endswith(".safetensors"))
    rng = random.Random(SEED)
    for k in range(RANDOM_FLIPS):
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        cases[f"random flip {k}"] = bytes(flipped)
    for what, bad in cases.items():
        ckpt = tmp_path / what.replace(" ", "_")
        shutil.copytree(pristine, ckpt)
        (ckpt / name).write_bytes(bad)
        with pytest.raises(CheckpointError, match=name) as err:
            read_checkpoint_config(ckpt)
        assert str(ckpt / name) in str(err.value), (what, str(err.value))
        if name.endswith(".safetensors"):
            with pytest.raises(CheckpointError, match=name):
                load_trainable(model, ckpt)  # the direct path verifies too
    ckpt = tmp_path / "bit_flipped_in_tensor_data"
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_model(ckpt)


def test_resume_refuses_a_corrupted_training_state(model_and_ckpt, tmp_path):
    from socialfusion.train.loop import train

    _, config, pristine = model_and_ckpt
    run = tmp_path / "run"
    shutil.copytree(pristine, run / "checkpoints" / "last")
    state = run / "checkpoints" / "last" / "training_state.pt"
    flipped = bytearray(state.read_bytes())
    flipped[len(flipped) - 100] ^= 0x10
    state.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="training_state.pt: checksum mismatch"):
        train(config, run, resume=True, progress=False)


def test_pristine_checkpoint_still_loads(model_and_ckpt):
    model, _, ckpt = model_and_ckpt
    loaded, _ = load_model(ckpt)
    expected = {n: p for n, p in model.named_parameters() if p.requires_grad}
    for n, p in loaded.named_parameters():
        if p.requires_grad:
            assert torch.equal(p, expected[n]), n


# ---- the feature cache ----------------------------------------------------------------------------------


@pytest.fixture()
def cache_and_image(model_and_ckpt, tmp_path):
    from PIL import Image

    from socialfusion.core.schema import Sample
    from socialfusion.features.cache import FeatureCache

    model, _, _ = model_and_ckpt
    root = tmp_path / "data"
    root.mkdir()
    Image.new("RGB", (40, 30), (200, 30, 90)).save(root / "face.png")
    sample = Sample(id="s", task="expression", image="face.png", root=str(root))
    cache = FeatureCache(tmp_path / "cache", model.encoder)
    feats, size = cache.input_fn()(sample).values()
    [entry] = list(cache.dir.rglob("*.safetensors"))
    return cache, sample, entry, feats.clone(), size


def _next_run(cache):
    """The same cache directory as a new run sees it: an entry's content hash is checked once per run."""
    from socialfusion.features.cache import FeatureCache

    return FeatureCache(cache.root, cache.encoder, cache.dtype)


def test_corrupted_cache_entries_are_detected_named_recomputed_and_counted(cache_and_image, caplog):
    cache, sample, entry, expected, size = cache_and_image
    data = entry.read_bytes()
    cases = _corruptions(data, True)
    for what, bad in cases.items():
        entry.write_bytes(bad)
        cache = _next_run(cache)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="socialfusion.features"):
            out = cache.input_fn()(sample)
        assert torch.equal(out["features"], expected) and tuple(out["image_size"]) == size, what
        assert cache.stats["corrupt_recomputed"] == 1, what
        assert any(str(entry) in r.getMessage() and "corrupt" in r.getMessage() for r in caplog.records), what
        assert cache.get(sample.image_path()) is not None, f"{what}: the recomputed entry was not rewritten"


def test_random_byte_flips_in_a_cache_entry_never_give_wrong_features(cache_and_image):
    cache, sample, entry, expected, size = cache_and_image
    data = entry.read_bytes()
    rng = random.Random(SEED)
    detected = 0
    for _ in range(RANDOM_FLIPS):
        flipped = bytearray(data)
        flipped[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        entry.write_bytes(bytes(flipped))
        cache = _next_run(cache)
        out = cache.input_fn()(sample)
        assert torch.equal(out["features"], expected) and tuple(out["image_size"]) == size
        detected += cache.stats["corrupt_recomputed"]
        entry.write_bytes(data)
    assert detected >= RANDOM_FLIPS - 3  # almost every byte matters; a flip in header padding may be harmless


def test_cache_entry_written_before_content_hashes_is_still_read(cache_and_image):
    from safetensors.torch import load_file, save_file

    cache, sample, entry, expected, _ = cache_and_image
    save_file(load_file(str(entry)), str(entry))  # the old format: no sha256 in the metadata
    feats, _ = cache.get(sample.image_path())
    assert torch.equal(feats, expected) and cache.stats["corrupt_recomputed"] == 0

"""The feature cache at scale: when `auto` uses it (reuse and size), the dtype of its entries, checksums checked
once per run, `warm` through DataLoader workers, and the sizes `plan` prints."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from socialfusion.config import apply_overrides, load_config, select_tasks
from socialfusion.features import cache as cache_mod
from socialfusion.features.inputs import cache_decision, entry_bytes, input_function, split_entries
from tests.conftest import synth_overrides


@pytest.fixture(scope="module")
def expression_config(synth_root, tmp_path_factory):
    config = load_config("tiny", synth_overrides(synth_root, tmp_path_factory.mktemp("cache")))
    return select_tasks(config, ["expression"])


@pytest.fixture(scope="module")
def model(expression_config):
    from socialfusion.models.socialfusion import SocialFusionModel

    return SocialFusionModel(expression_config.model)


def _distinct_train_images(config) -> int:
    from socialfusion.data.pipeline import build_task_datasets
    from socialfusion.data.skips import SkipReport
    from socialfusion.tasks import tasks_from_config

    ds = build_task_datasets(config, tasks_from_config(config), "train", lambda s: {}, SkipReport())["expression"]
    return len({s.image_path() for s in ds.samples})


def test_entries_are_the_distinct_training_images_after_the_cap(expression_config):
    n = _distinct_train_images(expression_config)
    [row] = split_entries(expression_config, "train")
    assert row.entries == n > 0 and "counted" in row.how
    capped = apply_overrides(expression_config, [f"data.tasks.0.max_train_samples={n - 3}"])
    assert split_entries(capped, "train")[0].entries == n - 3
    missing = apply_overrides(
        expression_config, ["data.tasks.0.root=/nonexistent/affectnet", "data.tasks.0.max_train_samples=7"]
    )
    [row] = split_entries(missing, "train")
    assert row.entries == 7 and "at most max_train_samples" in row.how
    unknown = apply_overrides(missing, ["data.tasks.0.max_train_samples=null"])
    assert split_entries(unknown, "train")[0].entries is None


def test_auto_uses_the_cache_only_when_images_are_read_more_than_once(expression_config, model):
    n = _distinct_train_images(expression_config)
    # exactly one read per image: the cache would only cost a write
    once = apply_overrides(expression_config, [f"train.steps={n}", "train.batch_size=1"])
    d = cache_decision(model, once, world=1)
    assert not d.use and "at most once" in d.reason and f"/ {n} images" in d.reason
    assert input_function(model, once, training=True) is None
    # a second run over the same images (analysis/transfer.py) makes it pay off
    shared = apply_overrides(once, ["train.feature_cache_runs=2"])
    assert cache_decision(model, shared, world=1).use
    # several epochs; two processes count twice the reads
    epochs = apply_overrides(expression_config, [f"train.steps={n}", "train.batch_size=2"])
    d = cache_decision(model, epochs, world=1)
    assert d.use and "2.00 reads per training image" in d.reason, d.reason
    assert "4.00 reads" in cache_decision(model, epochs, world=2).reason
    assert input_function(model, epochs, training=True) is not None


def test_auto_keeps_pixels_when_the_cache_would_not_fit(expression_config, model):
    n = _distinct_train_images(expression_config)
    per = entry_bytes(model.encoder, torch.float32)
    limit_gb = (n - 1) * per / 1e9  # one entry short
    cfg = apply_overrides(expression_config, ["train.steps=100", f"train.feature_cache_max_gb={limit_gb}"])
    d = cache_decision(model, cfg, world=1)
    assert not d.use and "> train.feature_cache_max_gb" in d.reason and f"{n} entries" in d.reason
    assert cache_decision(model, apply_overrides(cfg, [f"train.feature_cache_max_gb={n * per / 1e9}"]), world=1).use
    # validation images count too when the run evaluates
    with_val = apply_overrides(cfg, [f"train.feature_cache_max_gb={n * per / 1e9}", "train.eval_every=10"])
    assert not cache_decision(model, with_val, world=1).use


def test_on_and_off_force_it_and_a_trained_encoder_never_caches(expression_config, model):
    once = apply_overrides(expression_config, ["train.steps=1", "train.batch_size=1"])
    assert cache_decision(model, apply_overrides(once, ["train.feature_cache=on"]), world=1).use
    assert not cache_decision(model, apply_overrides(once, ["train.steps=100", "train.feature_cache=off"]), world=1).use
    assert load_config("tiny", ["train.feature_cache=on"]).train.feature_cache == "on"
    trained = SimpleNamespace(cacheable_encoder=None)
    d = cache_decision(trained, apply_overrides(once, ["train.feature_cache=on"]), world=1)
    assert not d.use and "encoder is trained" in d.reason
    unknown = apply_overrides(once, ["data.tasks.0.root=/nonexistent", "train.steps=100"])
    d = cache_decision(model, unknown, world=1)
    assert not d.use and "cannot be counted" in d.reason


def test_training_prints_the_decision_once(expression_config, tmp_path, capsys):
    from socialfusion.train.loop import train

    cfg = apply_overrides(expression_config, ["train.steps=2", "train.batch_size=2", "train.feature_cache=on"])
    train(cfg, tmp_path / "run", progress=False, device="cpu")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("feature cache:")]
    assert lines == ["feature cache: on: train.feature_cache: on"]


# ---- the cache itself -------------------------------------------------------------------------------------


def _samples(config):
    from socialfusion.data.pipeline import build_task_datasets
    from socialfusion.data.skips import SkipReport
    from socialfusion.tasks import tasks_from_config

    return build_task_datasets(config, tasks_from_config(config), "train", lambda s: {}, SkipReport())[
        "expression"
    ].samples


def test_entries_are_stored_in_the_compute_dtype_and_never_mix(expression_config, model, tmp_path):
    from socialfusion.data.skips import SkipReport
    from socialfusion.features.cache import FeatureCache

    samples = _samples(expression_config)[:5]
    fp32 = FeatureCache(tmp_path, model.encoder, torch.float32)
    bf16 = FeatureCache(tmp_path, model.encoder, torch.bfloat16)
    assert fp32.dir != bf16.dir and fp32.dir.name.endswith("-fp32") and bf16.dir.name.endswith("-bf16")
    for c in (fp32, bf16):
        c.warm(samples, SkipReport(), progress=False)
    a, b = fp32.input_fn()(samples[0])["features"], bf16.input_fn()(samples[0])["features"]
    assert a.dtype == torch.float32 and b.dtype == torch.bfloat16
    assert torch.allclose(a, b.float(), atol=0.1, rtol=0.05)  # the same features, rounded
    assert len(list(bf16.dir.rglob("*.safetensors"))) == len({s.image_path() for s in samples})
    # a run in bf16 opens the bf16 directory
    from socialfusion.features.inputs import open_cache

    assert open_cache(apply_overrides(expression_config, ["train.precision=bf16"]), model.encoder).dir.name.endswith(
        "-bf16"
    )
    assert open_cache(expression_config, model.encoder).dir.name.endswith("-fp32")


def test_the_content_hash_is_checked_once_per_entry_per_run(expression_config, model, tmp_path, monkeypatch):
    from socialfusion.data.skips import SkipReport
    from socialfusion.features.cache import FeatureCache

    samples = _samples(expression_config)[:4]
    FeatureCache(tmp_path, model.encoder).warm(samples, SkipReport(), progress=False)
    calls = []
    real = cache_mod._content_hash
    monkeypatch.setattr(cache_mod, "_content_hash", lambda *a: calls.append(1) or real(*a))
    run = FeatureCache(tmp_path, model.encoder)
    fn = run.input_fn()
    n = len({s.image_path() for s in samples})
    for _ in range(3):  # three epochs
        for s in samples:
            fn(s)
    assert len(calls) == n and run.stats["verified"] == n and run.stats["hits"] == 3 * len(samples)
    FeatureCache(tmp_path, model.encoder).input_fn()(samples[0])  # the next run checks again
    assert len(calls) == n + 1


def test_warm_through_worker_processes_gives_the_pixel_paths_features(expression_config, model, tmp_path):
    from socialfusion.core.schema import Sample
    from socialfusion.data.pipeline import pixel_input
    from socialfusion.data.skips import SkipReport
    from socialfusion.features.cache import FeatureCache

    samples = _samples(expression_config)[:6]
    root = tmp_path / "imgs"
    root.mkdir()
    (root / "broken.jpg").write_bytes(b"not an image")
    broken = Sample(id="broken", task="expression", image="broken.jpg", root=str(root), label=0)
    report = SkipReport()
    cache = FeatureCache(tmp_path / "cache", model.encoder, num_workers=2)
    cache.warm(samples + [broken], report, batch_size=4, progress=False)
    assert cache.stats["misses"] == len({s.image_path() for s in samples}) and report.total == 0
    to_pixels = pixel_input(model.encoder)
    with torch.no_grad():
        for s in samples:
            expected = model.encoder(to_pixels(s)["pixel_values"][None])[0]
            got = cache.get(s.image_path())[0]
            assert torch.allclose(got, expected, atol=1e-5), s.id
    assert cache.get(broken.image_path()) is None  # counted when a sample asks for it, as before


def test_plan_sizes_the_paper_cache_in_bf16(expression_config):
    from socialfusion.plan import feature_cache_plan, format_feature_cache

    clip_l_336 = SimpleNamespace(num_patches=576, hidden_size=1024)  # CLS dropped: 24 x 24 patches
    fc = feature_cache_plan(load_config("paper"), clip_l_336)
    assert fc["dtype"] == "bf16" and fc["bytes_per_entry"] == 576 * 1024 * 2  # ~1.18 MB
    gesture = next(r for r in fc["rows"] if r["task"] == "gesture" and r["split"] == "train")
    if gesture["how"].startswith("at most"):  # no HaGRID here: the cap bounds it
        assert gesture["entries"] == 200000 and gesture["gb"] == pytest.approx(200000 * 576 * 1024 * 2 / 1e9, rel=1e-3)
    text = "\n".join(format_feature_cache(fc))
    assert "1.18 MB per image" in text and "bf16" in text
    tiny = feature_cache_plan(expression_config, SimpleNamespace(num_patches=64, hidden_size=32))
    assert tiny["dtype"] == "fp32" and tiny["bytes_per_entry"] == 64 * 32 * 4 and tiny["all_counted"]
    assert tiny["total_entries"] == sum(r["entries"] for r in tiny["rows"])


def test_plan_reports_the_configured_models_cache(expression_config, model):
    from socialfusion.plan import estimate, format_plan

    plan = estimate(expression_config)
    fc = plan["feature_cache"]
    assert fc["tokens_per_entry"] == model.encoder.num_patches and fc["dim"] == model.encoder.hidden_size
    assert fc["bytes_per_entry"] == entry_bytes(model.encoder, torch.float32)
    assert {r["split"] for r in fc["rows"]} == {"train", "val", "test"} and fc[
        "all_counted"
    ]  # train, selection, report
    assert "feature cache:" in format_plan(plan)

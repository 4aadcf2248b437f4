"""Linear probes on synthetic features with known separability, pooling, layers and encoder resolution."""

import numpy as np
import pytest
import torch

from socialfusion.analysis.probe import (
    fit_gaze_probe,
    fit_linear_probe,
    pool_one,
    resolve_encoder,
    valid_layers,
)
from socialfusion.config import ConfigError


@pytest.fixture(autouse=True)
def _one_thread():
    """Small probes run far faster single-threaded (torch and BLAS), and are then insensitive to other load."""
    from threadpoolctl import threadpool_limits

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(n)


def _blobs(n_per_class: int, k: int, d: int, sep: float, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * sep
    y = np.repeat(np.arange(k), n_per_class)
    X = centres[y] + rng.normal(size=(len(y), d))
    perm = rng.permutation(len(y))
    return X[perm], y[perm]


def test_separable_blobs_give_near_perfect_accuracy():
    X, y = _blobs(90, 4, 12, sep=6.0, seed=0)
    res = fit_linear_probe(X[:200], y[:200], X[200:280], y[200:280], num_classes=4, X_test=X[280:], y_test=y[280:])
    assert res["val"]["accuracy"] > 0.97
    assert res["test"]["accuracy"] > 0.97
    assert res["C"] in res["per_C"]


def test_shuffled_labels_give_chance_level():
    X, y = _blobs(200, 3, 10, sep=6.0, seed=2)
    y_shuffled = np.random.default_rng(3).permutation(y)  # labels no longer depend on the features
    res = fit_linear_probe(
        X[:300],
        y_shuffled[:300],
        X[300:400],
        y_shuffled[300:400],
        num_classes=3,
        X_test=X[400:],
        y_test=y_shuffled[400:],
    )
    assert abs(res["test"]["accuracy"] - 1 / 3) < 0.1
    # the same features with their true labels are decodable
    assert fit_linear_probe(X[:300], y[:300], X[300:400], y[300:400], num_classes=3)["val"]["accuracy"] > 0.95


def test_official_metric_scoring_and_classes_missing_from_training():
    from socialfusion.tasks import build_task

    task = build_task("relation")  # 6 classes, mAP
    X, y = _blobs(40, 3, 8, sep=5.0, seed=4)  # only classes 0..2 occur
    calls = []

    def score(labels, probs):
        calls.append(probs.shape)
        return task.metrics(labels, probs)

    res = fit_linear_probe(X[:80], y[:80], X[80:], y[80:], num_classes=6, score_fn=score, primary="map", Cs=(0.1, 1.0))
    assert all(shape[1] == 6 for shape in calls)
    assert res["val"]["accuracy"] > 0.9
    # GRIT's mAP averages over all 6 classes, absent ones counting 0: at most 3/6 here
    assert 0.45 < res["val"]["map"] <= 0.5 + 1e-9


def test_a_single_training_class_is_reported_not_crashed():
    X = np.random.default_rng(0).normal(size=(10, 3))
    res = fit_linear_probe(X, np.zeros(10, dtype=int), X, np.array([0, 1] * 5), num_classes=2)
    assert res["degenerate"] and res["val"]["accuracy"] == pytest.approx(0.5)


def _marker_patches(n: int, grid=(4, 4), d: int = 8, seed: int = 0):
    """Noise patch features; the gazed-at patch carries a marker (+4 on feature 0); the target is its centre."""
    from socialfusion.tasks.gaze import gaze_target

    rng = np.random.default_rng(seed)
    h, w = grid
    feats = rng.normal(size=(n, h * w, d)).astype(np.float32)
    cells = rng.integers(0, h * w, size=n)
    feats[np.arange(n), cells, 0] += 4.0
    points = [[((c % w + 0.5) / w, (c // w + 0.5) / h)] for c in cells]
    targets = np.stack([gaze_target(p).numpy() for p in points])
    return feats, targets, points


def test_gaze_probe_finds_the_marked_patch():
    from socialfusion.core.metrics import gazefollow_metrics

    Ftr, Ttr, _ = _marker_patches(120, seed=0)
    Fev, _, pts = _marker_patches(40, seed=1)
    heat = fit_gaze_probe(Ftr, Ttr, (4, 4), Fev, steps=150)
    assert heat.shape == (40, 64, 64)
    assert np.allclose(heat.reshape(40, -1).sum(1), 1.0, atol=1e-4)
    m = gazefollow_metrics(heat, pts, [(64, 48)] * 40)
    assert m["auc"] > 0.85 and m["n"] == 40
    # without the marker there is nothing to find: AUC near chance
    noise = np.random.default_rng(5).normal(size=Fev.shape).astype(np.float32)
    assert (
        gazefollow_metrics(
            fit_gaze_probe(noise[:30], Ttr[:30], (4, 4), noise[30:], steps=50), pts[30:], [(64, 48)] * 10
        )["auc"]
        < 0.8
    )


def test_pooling_cls_mean_box_pair_and_patch():
    grid = (2, 2)
    hidden = torch.tensor([[9.0, 9.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]])  # CLS + 4 patches
    boxes = [([0.0, 0.0, 0.5, 0.5], 0), ([0.5, 0.5, 1.0, 1.0], 1)]  # cell (0,0) and cell (1,1)
    out = pool_one(hidden, 4, grid, boxes, ["cls", "mean", "box", "pair"], num_roles=2, gaze=False)
    assert out["cls"].tolist() == [9.0, 9.0]
    assert out["mean"].tolist() == [2.5, 0.0]
    assert out["box"].tolist() == [1.0, 0.0]
    assert out["pair"].tolist() == [1.0, 0.0, 4.0, 0.0]
    # no CLS token (SigLIP-like), one role: no cls and no pair
    single = pool_one(hidden[1:], 4, grid, boxes[:1], ["cls", "box", "pair"], num_roles=1, gaze=False)
    assert set(single) == {"box"}
    assert pool_one(hidden, 4, grid, boxes, ["box"], 1, gaze=True)["patch"].shape == (4, 2)


def test_valid_layers_and_encoder_specs(tiny_config):
    assert valid_layers([-1, -2, -3, -4, 2, 3, -1], 2) == ([-1, -2, -3, 2], [-4, 3])
    label, enc = resolve_encoder(None, tiny_config)
    assert enc == tiny_config.model.encoder and "random-init" in label
    label, enc = resolve_encoder("vlm:/models/llava", tiny_config)
    assert enc.from_vlm and enc.pretrained == "/models/llava"
    _, enc = resolve_encoder("default", tiny_config)
    assert enc.pretrained == "bundled:dinov2-small"
    _, enc = resolve_encoder("openai/clip-vit-base-patch16", tiny_config)
    assert enc.pretrained == "openai/clip-vit-base-patch16" and not enc.from_vlm  # offline: cannot look, not a VLM
    _, enc = resolve_encoder("vlm-llava-1.5-7b", tiny_config)  # a VLM preset: its vision tower, from its checkpoint
    assert enc.from_vlm and enc.pretrained == "llava-hf/llava-1.5-7b-hf"
    with pytest.raises(ConfigError, match="random-init VLM baseline has no vision tower"):
        resolve_encoder("vlm-tiny-llava", tiny_config)

"""Gradient-conflict math on toy problems with known answers, and the bookkeeping around the model."""

import math

import numpy as np
import pytest
import torch

from socialfusion.analysis.gradconf import (
    ConflictStats,
    conflict_frequency,
    cosine_matrix,
    fixed_batches,
    magnitude_similarity,
    magnitude_similarity_matrix,
    shared_parameters,
)
from socialfusion.train.surgery import flat_grad


def test_cosine_identical_opposite_orthogonal():
    g = torch.tensor([1.0, 2.0, -3.0])
    cos = cosine_matrix({"a": g, "b": g.clone(), "c": -g, "d": torch.tensor([2.0, -1.0, 0.0])})
    assert cos.shape == (4, 4)
    assert cos[0, 1] == pytest.approx(1.0)
    assert cos[0, 2] == pytest.approx(-1.0)
    assert cos[0, 3] == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(np.diag(cos), 1.0)
    assert np.allclose(cos, cos.T)


def test_cosine_is_scale_invariant_and_undefined_for_zero_gradients():
    g = torch.randn(50, generator=torch.Generator().manual_seed(0))
    cos = cosine_matrix([g, 7.5 * g, torch.zeros(50)])
    assert cos[0, 1] == pytest.approx(1.0)
    assert np.isnan(cos[2]).all() and np.isnan(cos[:, 2]).all()


def test_magnitude_similarity():
    g = torch.tensor([3.0, 4.0])
    assert magnitude_similarity(g, -g) == pytest.approx(1.0)  # equal norms, direction does not matter
    assert magnitude_similarity(g, 3 * g) == pytest.approx(2 * 3 / (1 + 9))
    assert magnitude_similarity(g, torch.zeros(2)) == pytest.approx(0.0)
    assert math.isnan(magnitude_similarity(torch.zeros(2), torch.zeros(2)))
    m = magnitude_similarity_matrix([g, 3 * g])
    assert m[0, 1] == pytest.approx(0.6) and m[0, 0] == pytest.approx(1.0)


def _toy_task_grads(seed: int, batches: int = 10):
    """A shared weight w (init 0) of a linear model; task A fits y = +x.a, task B y = -x.a, task C y = +2 x.a.

    At w = 0 the gradient of A is -2 E[(x.a) x], of B exactly its negative: they conflict on every batch.
    """
    g = torch.Generator().manual_seed(seed)
    a = torch.tensor([1.0, -2.0, 0.5])
    per_batch = []
    for _ in range(batches):
        x = torch.randn(16, 3, generator=g)
        grads = {}
        for name, sign in (("A", 1.0), ("B", -1.0), ("C", 2.0)):
            w = torch.zeros(3, requires_grad=True)
            loss = ((x @ w - sign * (x @ a)) ** 2).mean()
            loss.backward()
            grads[name] = w.grad.clone()
        per_batch.append(grads)
    return per_batch


def test_toy_two_task_model_conflicts_on_every_batch():
    per_batch = _toy_task_grads(0)
    freq = conflict_frequency(per_batch)
    assert freq[0, 1] == 1.0 and freq[1, 0] == 1.0  # A vs B: always opposite
    assert freq[0, 2] == 0.0  # A vs C: same direction
    assert freq[1, 2] == 1.0
    assert np.all(np.diag(freq) == 0.0)


def test_streaming_stats_agree_with_the_pure_functions():
    per_batch = _toy_task_grads(1, batches=6)
    stats = ConflictStats(["A", "B", "C"], {"first": (0, 2), "last": (2, 3)})
    for grads in per_batch:
        stats.update(grads)
    out = stats.summary()
    total = {t: sum(b[t] for b in per_batch) for t in "ABC"}
    assert np.allclose(out["overall"]["cosine"], cosine_matrix(total))
    assert np.allclose(out["overall"]["conflict_frequency"], conflict_frequency(per_batch))
    assert np.allclose(out["first"]["cosine"], cosine_matrix({t: v[:2] for t, v in total.items()}))
    assert np.allclose(out["overall"]["magnitude_similarity"], magnitude_similarity_matrix(total))
    assert out["overall"]["cosine"][0, 1] == pytest.approx(-1.0)
    assert out["last"]["n_params"] == 1
    with pytest.raises(ValueError):
        stats.update({"A": per_batch[0]["A"]})


def test_shared_parameters_exclude_the_gaze_head_and_flatten_in_order(tiny_model):
    from tests.conftest import make_batch

    params, segments = shared_parameters(tiny_model)
    names = [n for n, _ in params]
    assert not any(n.startswith("gaze_head") or n.startswith("encoder") for n in names)
    assert {"connector", "box_embed", "llm.lora"} <= set(segments)
    total = sum(p.numel() for _, p in params)
    assert max(e for _, e in segments.values()) == total
    tiny_model.zero_grad(set_to_none=True)
    tiny_model(make_batch("lam"))["loss"].backward()
    flat = flat_grad([p for _, p in params])
    assert flat.shape == (total,) and flat.dtype == torch.float32 and torch.isfinite(flat).all()
    a, b = segments["connector"]
    assert flat[a:b].abs().sum() > 0


def test_fixed_batches_are_seeded_and_disjoint_until_they_wrap():
    b1 = fixed_batches(20, 4, 3, seed=0, salt=1)
    assert b1 == fixed_batches(20, 4, 3, seed=0, salt=1)
    assert b1 != fixed_batches(20, 4, 3, seed=0, salt=2)
    flat = [i for b in b1 for i in b]
    assert len(flat) == len(set(flat)) == 12
    assert all(len(b) == 3 for b in fixed_batches(3, 8, 2, 0, 0))  # fewer samples than a batch


def test_bootstrap_over_batches_reproduces_the_point_estimates_and_brackets_them():
    from socialfusion.analysis.gradconf import batch_weights, bootstrap_batches

    per_batch = _toy_task_grads(2, batches=16)
    # D and E: random directions, so their per-batch cosines vary around zero
    g = torch.Generator().manual_seed(3)
    for grads in per_batch:
        grads["D"], grads["E"] = torch.randn(3, generator=g), torch.randn(3, generator=g)
    tasks = ["A", "B", "C", "D", "E"]
    stats = ConflictStats(tasks, {"first": (0, 2), "last": (2, 3)})
    for grads in per_batch:
        stats.update(grads)
    out = stats.summary(resamples=400)
    ov = out["overall"]
    # the Gram matrix of all (batch, task) gradients, summed over the components, is the exact one
    flat = torch.stack([grads[t] for grads in per_batch for t in tasks]).double()
    assert np.allclose(stats.gram("overall").reshape(80, 80), (flat @ flat.T).numpy())
    # drawing every batch once is the point estimate
    once = bootstrap_batches(stats.gram("overall"), np.stack(stats.batch_cos["overall"]), np.ones((1, 16)))
    for key in ("cosine", "mean_batch_cosine", "conflict_frequency", "magnitude_similarity"):
        off = ~np.eye(5, dtype=bool)
        assert np.allclose(once[key][0][off], ov[key][off], equal_nan=True), key
    ci = ov["ci"]
    assert ci["conflict_frequency"][0][1] == [1.0, 1.0] and ci["conflict_frequency"][0][2] == [0.0, 0.0]
    assert ci["cosine"][0][1][1] < -0.99 and ci["cosine"][0][0] is None
    lo, hi = ci["conflict_frequency"][3][4]
    assert lo < ov["conflict_frequency"][3, 4] < hi and hi - lo > 0.2  # random pairs: a genuinely uncertain frequency
    lo, hi = ci["cosine"][3][4]
    assert lo <= ov["cosine"][3, 4] <= hi
    assert set(ci["mean_grad_norm"]) == set(tasks)
    assert batch_weights(16, 10, seed=0).sum(1).tolist() == [16.0] * 10


def test_large_components_are_count_sketched_for_the_intervals():
    g = torch.Generator().manual_seed(4)
    base = torch.randn(20000, generator=g)
    batches = [
        {"A": base + 0.5 * torch.randn(20000, generator=g), "B": -base + 0.5 * torch.randn(20000, generator=g)}
        for _ in range(4)
    ]
    stats = ConflictStats(["A", "B"], {"big": (0, 20000)}, sketch_dim=4096)
    for grads in batches:
        stats.update(grads)
    flat = torch.stack([grads[t] for grads in batches for t in "AB"]).double()
    exact = (flat @ flat.T).numpy()
    approx = stats.gram("big").reshape(8, 8)
    scale = np.sqrt(np.outer(np.diag(exact), np.diag(exact)))
    assert np.abs(approx - exact).max() / scale.max() < 0.05  # ~1/sqrt(4096) relative error
    out = stats.summary(resamples=200)
    assert out["big"]["sketched"] and out["overall"]["sketched"]
    assert np.allclose(
        out["overall"]["cosine"], cosine_matrix({t: sum(b[t] for b in batches) for t in "AB"})
    )  # exact point
    assert out["overall"]["ci"]["cosine"][0][1][1] < -0.5

"""Bootstrap and t intervals: coverage on simulated data with a known answer, paired differences, and equality of
the fast per-task resamplers with the official metrics they stand for."""

import math

import numpy as np
import pytest

from socialfusion.analysis.transfer import seeds_row, transfer_row
from socialfusion.core.intervals import (
    bootstrap,
    bootstrap_intervals,
    excludes_zero,
    fmt_ci,
    loop_statistic,
    mean_statistic,
    paired_difference,
    percentile_interval,
    t_interval,
    t_quantile,
)
from socialfusion.core.metrics import (
    classification_metrics,
    classification_resampled,
    gazefollow_metrics,
    gazefollow_per_person,
)
from socialfusion.core.schema import Sample
from socialfusion.tasks import build_task


def _classification(task, correct: np.ndarray, labels: np.ndarray):
    """Samples and predictions of a classifier that is right exactly where `correct` says."""
    c = task.num_classes
    pred = np.where(correct, labels, (labels + 1) % c)
    samples = [Sample(id=f"s{i}", task=task.name, image="x.jpg", label=int(y)) for i, y in enumerate(labels)]
    predictions = []
    for k in pred:
        p = np.full(c, 0.1 / (c - 1))
        p[k] = 0.9
        predictions.append({"probs": p, "index": int(k)})
    return samples, predictions


def test_accuracy_interval_covers_a_known_bernoulli_p_about_95_percent_of_the_time():
    task = build_task("expression")
    rng = np.random.default_rng(0)
    p, n, covered = 0.7, 100, 0
    for sim in range(200):
        labels = rng.integers(0, task.num_classes, n)
        samples, predictions = _classification(task, rng.random(n) < p, labels)
        # through the task: its resampler recomputes its official accuracy on every resample
        ci = bootstrap_intervals(task.resampler(samples, predictions), n, resamples=500, seed=sim)["accuracy"]
        covered += ci[0] <= p <= ci[1]
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_paired_difference_excludes_zero_for_a_real_difference_and_covers_it_for_none():
    task = build_task("expression")
    rng = np.random.default_rng(1)
    n, sims = 200, 100
    real, null, widths_paired, widths_b = 0, 0, [], []
    for sim in range(sims):
        labels = rng.integers(0, task.num_classes, n)
        a = rng.random(n) < 0.6
        # a real difference: b fixes a third of a's errors (expected +0.13); no difference: b redraws 20 % of
        # a's answers from the same accuracy (correlated with a, same expectation)
        better = a | (rng.random(n) < 1 / 3)
        redraw = rng.random(n) < 0.2
        same = np.where(redraw, rng.random(n) < 0.6, a)
        sa, pa = _classification(task, a, labels)
        for b_correct, kind in ((better, "real"), (same, "null")):
            sb, pb = _classification(task, b_correct, labels)
            # model b's samples in another order: pairing is by id
            order = rng.permutation(n)
            sb, pb = [sb[i] for i in order], [pb[i] for i in order]
            res = paired_difference(
                task.resampler(sa, pa),
                [s.id for s in sa],
                task.resampler(sb, pb),
                [s.id for s in sb],
                "accuracy",
                resamples=400,
                seed=sim,
            )
            assert res["n"] == n
            if kind == "real":
                real += excludes_zero(res["delta"]) == 1
            else:
                null += excludes_zero(res["delta"]) == 0
                widths_paired.append(res["delta"][1] - res["delta"][0])
                widths_b.append(res["b"][1] - res["b"][0])
    assert real / sims >= 0.95
    assert 0.90 <= null / sims <= 1.0
    # pairing cancels what the two models share: the difference is far better known than either accuracy
    assert np.median(widths_paired) < 0.7 * np.median(widths_b)


def test_paired_difference_needs_common_samples():
    stat = mean_statistic({"m": [1.0, 2.0]})
    with pytest.raises(ValueError, match="no sample in common"):
        paired_difference(stat, ["a", "b"], stat, ["c", "d"], "m")


def test_vectorised_classification_equals_the_official_metrics_on_every_resample():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 6, 80)
    labels[labels == 5] = 4  # class 5 absent from the labels but still predicted sometimes
    pred = np.where(rng.random(80) < 0.5, labels, rng.integers(0, 6, 80))
    idx = rng.integers(0, 80, (25, 80))
    fast = classification_resampled(labels, pred, 6, idx)
    for b, row in enumerate(idx):
        ref = classification_metrics(labels[row], pred[row], 6)
        assert fast["accuracy"][b] == pytest.approx(ref["accuracy"])
        assert fast["macro_f1"][b] == pytest.approx(ref["macro_f1"])


@pytest.mark.parametrize("name", ["lam", "relation", "gesture"])
def test_task_resamplers_recompute_the_task_metrics(name):
    task = build_task(name)
    rng = np.random.default_rng(3)
    n = 40
    labels = rng.integers(0, task.num_classes, n)
    samples = [Sample(id=str(i), task=name, image="x.jpg", label=int(y)) for i, y in enumerate(labels)]
    probs = rng.dirichlet(np.ones(task.num_classes), n)
    predictions = [{"probs": p, "index": int(p.argmax())} for p in probs]
    idx = rng.integers(0, n, (5, n))
    values = task.resampler(samples, predictions)(idx)
    assert task.primary_metric in values
    for b, row in enumerate(idx):
        ref = task.evaluate([samples[i] for i in row], [predictions[i] for i in row])
        for k, v in values.items():
            assert v[b] == pytest.approx(ref[k], nan_ok=True), (k, b)


def test_gaze_resampler_is_the_mean_of_per_person_values():
    task = build_task("gaze")
    rng = np.random.default_rng(4)
    n = 12
    samples = [Sample(id=str(i), task="gaze", image="x.jpg", points=[tuple(rng.random(2))], inout=1) for i in range(n)]
    predictions = [{"heatmap": rng.random((64, 64)).astype(np.float32), "image_size": (40, 30)} for _ in range(n)]
    per = gazefollow_per_person(
        np.stack([p["heatmap"] for p in predictions]), [s.points for s in samples], [(40, 30)] * n
    )
    whole = gazefollow_metrics(
        np.stack([p["heatmap"] for p in predictions]), [s.points for s in samples], [(40, 30)] * n
    )
    assert np.mean(per["auc"]) == pytest.approx(whole["auc"])
    idx = rng.integers(0, n, (4, n))
    values = task.resampler(samples, predictions)(idx)
    for b, row in enumerate(idx):
        ref = task.evaluate([samples[i] for i in row], [predictions[i] for i in row])
        for k in ("auc", "avg_l2", "min_l2"):
            assert values[k][b] == pytest.approx(ref[k])


def test_mean_statistic_skips_unscored_samples_and_loop_statistic_keeps_floats_only():
    stat = mean_statistic({"m": [1.0, np.nan, 3.0]})
    out = stat(np.array([[0, 1, 2], [1, 1, 1]]))["m"]
    assert out[0] == pytest.approx(2.0) and math.isnan(out[1])
    loop = loop_statistic(lambda i: {"acc": float(np.mean(i)), "n": len(i), "per_class": [1.0]})
    assert set(loop(np.array([[0, 2]]))) == {"acc"}


def test_bootstrap_is_seeded_and_percentiles_need_enough_defined_values():
    stat = mean_statistic({"m": np.arange(50.0)})
    a, b = bootstrap(stat, 50, 200, seed=7), bootstrap(stat, 50, 200, seed=7)
    assert np.array_equal(a["m"], b["m"]) and not np.array_equal(a["m"], bootstrap(stat, 50, 200, seed=8)["m"])
    assert percentile_interval(np.array([np.nan] * 6 + [1.0] * 4)) is None
    lo, hi = percentile_interval(np.arange(1001.0))
    assert lo == pytest.approx(25.0) and hi == pytest.approx(975.0)


def test_t_quantiles_and_t_interval():
    for df, q in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423), (1000, 1.9623)):
        assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)
    assert t_quantile(0.025, 4) == pytest.approx(-2.7764, abs=1e-4)
    res = t_interval([1.0, 2.0, 3.0])
    assert res["mean"] == 2.0 and res["sd"] == pytest.approx(1.0) and res["k"] == 3
    assert res["ci"] == pytest.approx([2.0 - 4.3027 / math.sqrt(3), 2.0 + 4.3027 / math.sqrt(3)], abs=1e-4)
    assert t_interval([0.5, None, float("nan")]) == {"mean": 0.5, "ci": None, "sd": None, "k": 1}


def test_t_interval_covers_the_mean_of_normal_draws_about_95_percent_of_the_time():
    rng = np.random.default_rng(5)
    covered = sum(excludes_zero(t_interval(list(rng.normal(0.0, 1.0, 4)))["ci"]) == 0 for _ in range(400))
    assert 0.92 <= covered / 400 <= 0.98


def test_a_transfer_is_called_only_when_its_interval_excludes_zero():
    up = transfer_row(
        "map",
        {"map": 0.5, "ci": {"map": [0.4, 0.6]}},
        {"map": 0.6},
        {"delta": [0.02, 0.18], "relative": [0.04, 0.36], "n": 100},
    )
    assert (
        up["transfer"] == "positive"
        and up["delta_ci"] == [0.02, 0.18]
        and up["single_ci"] == [0.4, 0.6]
        and up["n"] == 100
    )
    noisy = transfer_row(
        "map", {"map": 0.5}, {"map": 0.495}, {"delta": [-0.05, 0.04], "relative": [-0.1, 0.08], "n": 100}
    )
    assert noisy["transfer"] == "within noise"
    down = transfer_row("auc", {"auc": 0.8}, {"auc": 0.6}, {"delta": [-0.3, -0.1], "relative": [-0.35, -0.12]})
    assert down["transfer"] == "negative"
    # across seeds: the t-interval of the per-seed deltas decides
    rows = [transfer_row("map", {"map": 0.5}, {"map": 0.5 + d}) for d in (0.10, 0.12, 0.11)]
    agg = seeds_row(rows)
    assert agg["transfer"] == "positive" and agg["delta"] == pytest.approx(0.11) and agg["seeds"] == 3
    assert (
        seeds_row([transfer_row("map", {"map": 0.5}, {"map": 0.5 + d}) for d in (0.1, -0.1, 0.02)])["transfer"]
        == "within noise"
    )


def test_fmt_ci():
    assert fmt_ci(0.5, [0.4, 0.61]) == "0.5000 [0.4000, 0.6100]"
    assert fmt_ci(0.013, [-0.02, 0.05], digits=1, scale=100, signed=True) == "+1.3 [-2.0, +5.0]"
    assert fmt_ci(None, None) == "-" and fmt_ci(0.5, None, 2) == "0.50"

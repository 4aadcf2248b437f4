"""Unit tests for socialfusion.core.metrics: the worked checks of docs/DATASETS.md, properties, validation."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

from socialfusion.core.metrics import (
    batch_averaged_micro_f1,
    classification_metrics,
    gazefollow_auc,
    gazefollow_l2,
    gazefollow_metrics,
    lam_accuracy,
    lam_ap,
    lam_map,
    mean_primary,
    pisc_ap,
    pisc_metrics,
    roc_auc,
)

RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- LAM
def _voc_ap_bruteforce(y, s):
    """Independent form: AP = mean over positives of the best precision at or below their rank."""
    order = np.argsort(-np.asarray(s), kind="stable")
    y = np.asarray(y)[order]
    prec = np.cumsum(y) / np.arange(1, len(y) + 1)
    return np.mean([prec[r:].max() for r in np.nonzero(y)[0]])


def test_lam_worked_example():
    y, s = [1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1]
    assert lam_ap(y, s) == pytest.approx(5 / 6)
    assert lam_ap([0, 1, 0, 1], [0.1, 0.2, 0.7, 0.9]) == pytest.approx(5 / 6)  # class 0: flipped
    assert lam_map(y, s) == pytest.approx(0.8333, abs=1e-4)
    assert lam_accuracy(y, s) == pytest.approx(0.5)


def test_lam_perfect_and_threshold():
    y, s = [0, 1, 1, 0, 1], [0.1, 0.9, 0.8, 0.2, 0.5]
    assert lam_map(y, s) == 1.0
    assert lam_accuracy(y, s) == 1.0  # 0.5 counts as looking
    assert lam_accuracy([0], [0.5]) == 0.0


def test_lam_matches_bruteforce_and_is_permutation_invariant():
    y = RNG.integers(0, 2, 200)
    s = RNG.permutation(200) / 200.0  # distinct scores
    assert lam_ap(y, s) == pytest.approx(_voc_ap_bruteforce(y, s))
    perm = RNG.permutation(200)
    assert lam_map(y[perm], s[perm]) == pytest.approx(lam_map(y, s))
    assert lam_accuracy(y[perm], s[perm]) == pytest.approx(lam_accuracy(y, s))


def test_lam_flip_swaps_class_aps():
    y = RNG.integers(0, 2, 50)
    s = RNG.random(50)
    ap1, ap0 = lam_ap(y, s), lam_ap(1 - y, 1 - s)
    assert ap1 != pytest.approx(ap0)
    yf, sf = 1 - y, 1 - s
    assert lam_ap(yf, sf) == pytest.approx(ap0)
    assert lam_ap(1 - yf, 1 - sf) == pytest.approx(ap1)
    assert lam_map(yf, sf) == pytest.approx(lam_map(y, s))


def test_lam_ties_are_stable():
    # ties keep input order (documented; the reference's pandas quicksort leaves this undefined)
    assert lam_ap([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert lam_ap([1, 0], [0.5, 0.5]) == pytest.approx(1.0)


def test_lam_no_positive_is_nan():
    assert math.isnan(lam_ap([0, 0], [0.2, 0.7]))


# ----------------------------------------------------------------------------- classification
def test_classification_against_sklearn():
    y = RNG.integers(0, 5, 300)
    p = np.where(RNG.random(300) < 0.6, y, RNG.integers(0, 6, 300))  # class 5 only predicted
    m = classification_metrics(y, p, 6)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(f1_score(y, p, labels=np.unique(y), average="macro", zero_division=0))
    assert m["n"] == 300
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (6, 6) and cm.sum() == 300
    assert cm[2].sum() == np.sum(y == 2) and cm[:, 2].sum() == np.sum(p == 2)  # rows = true
    assert m["per_class_recall"][5] is None
    assert m["per_class_recall"][1] == pytest.approx(np.mean(p[y == 1] == 1))


def test_classification_perfect_and_permutation():
    y = np.array([0, 1, 2, 2, 1, 0, 3])
    m = classification_metrics(y, y, 4)
    assert m["accuracy"] == 1.0 and m["macro_f1"] == 1.0
    p = np.array([0, 2, 2, 1, 1, 0, 0])
    perm = RNG.permutation(len(y))
    assert classification_metrics(y[perm], p[perm], 4) == classification_metrics(y, p, 4)


def test_batch_averaged_micro_f1():
    y, p = [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 0]
    assert classification_metrics(y, p, 2)["accuracy"] == pytest.approx(4 / 6)
    assert batch_averaged_micro_f1(y, p, 4) == pytest.approx(0.5)  # (1.0 + 0.0) / 2
    assert batch_averaged_micro_f1(y, p, 6) == pytest.approx(4 / 6)
    assert batch_averaged_micro_f1(y, p, 100) == pytest.approx(4 / 6)
    y2, p2 = [0] * 6, [0, 0, 1, 1, 0, 1]  # batch accuracies 1, 0, 0.5
    assert batch_averaged_micro_f1(y2, p2, 2) == pytest.approx(0.5)
    assert batch_averaged_micro_f1(y2, p2, 2, log_every=2) == pytest.approx(0.25)  # batches 2 and 3 (last)


# ----------------------------------------------------------------------------- PISC
def test_pisc_ap_worked_example():
    y, s = [1, 0, 0, 1, 1], [0.9, 0.8, 0.7, 0.6, 0.5]  # positives at ranks 1, 4, 5
    assert pisc_ap(y, s) == pytest.approx(0.7333, abs=1e-4)
    assert pisc_ap(y, s) == pytest.approx(2.2 / (3 + 1e-6))
    assert average_precision_score(y, s) == pytest.approx(0.700)


def test_pisc_ap_ties_positives_first():
    # reference: (score, label) record sort reversed -> positives first among equal scores
    # order: pos(0.5), neg(0.5), pos(0.2): ranks 1, 3 -> (1 + 2/3) / 2
    assert pisc_ap([0, 1, 1], [0.5, 0.5, 0.2]) == pytest.approx((1 + 2 / 3) / (2 + 1e-6))
    assert pisc_ap([1, 0, 1], [0.5, 0.5, 0.2]) == pytest.approx(pisc_ap([0, 1, 1], [0.5, 0.5, 0.2]))
    assert pisc_ap([0, 0], [0.3, 0.4]) == 0.0


def test_pisc_metrics_hand_example():
    labels = [0, 1, 2, 0]
    probs = [[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2]]
    m = pisc_metrics(labels, probs)
    # class 0: scores .7 .5 .1 .2 -> order s0(+), s1, s3(+), s2 -> ranks 1, 3 -> (1 + 2/3) / 2
    # class 1: scores .2 .4 .1 .6 -> order s3, s1(+), s0, s2 -> rank 2 -> 1/2
    # class 2: rank 1 -> 1
    assert m["per_class_ap"] == pytest.approx([(1 + 2 / 3) / (2 + 1e-6), 0.5 / (1 + 1e-6), 1 / (1 + 1e-6)])
    assert m["map"] == pytest.approx(np.mean(m["per_class_ap"]))
    assert m["per_class_recall"] == pytest.approx([0.5, 0.0, 1.0])
    assert m["accuracy"] == pytest.approx(0.5) and m["n"] == 4


def test_pisc_metrics_properties():
    y = RNG.integers(0, 4, 80)
    probs = RNG.random((80, 4)) + np.eye(4)[y] * 0.3
    m = pisc_metrics(y, probs)
    perm = RNG.permutation(80)
    mp = pisc_metrics(y[perm], probs[perm])
    for key in ("map", "accuracy", "per_class_ap", "per_class_recall"):
        assert mp[key] == pytest.approx(m[key])
    scaled = probs * RNG.uniform(0.5, 3.0, (80, 1))  # rows are renormalised
    assert pisc_metrics(y, scaled)["map"] == pytest.approx(m["map"])
    perfect = pisc_metrics(y, np.eye(4)[y] + 0.01)
    assert perfect["map"] == pytest.approx(1.0, abs=1e-5) and perfect["accuracy"] == 1.0
    absent = pisc_metrics([0, 0, 1], [[0.9, 0.1, 0.0], [0.8, 0.1, 0.1], [0.2, 0.7, 0.1]])
    assert absent["per_class_ap"][2] == 0.0 and absent["per_class_recall"][2] is None


# ----------------------------------------------------------------------------- GazeFollow
def test_gazefollow_l2_worked_example():
    hm = np.zeros((64, 64), dtype=np.float32)
    hm[32, 16] = 1.0
    pts = [(0.25, 0.50), (0.30, 0.50), (0.20, 0.60)]
    avg, mn = gazefollow_l2(hm, pts)
    assert avg == pytest.approx(0.03333, abs=1e-5)
    assert mn == pytest.approx(0.0, abs=1e-12)
    assert gazefollow_l2(hm, pts + [(-1.0, -1.0)]) == pytest.approx((avg, mn))  # padding ignored


def test_gazefollow_l2_argmax_first_index():
    hm = np.zeros((64, 64))
    hm[10, 5] = hm[40, 50] = 2.0
    assert gazefollow_l2(hm, [(5 / 64, 10 / 64)])[1] == pytest.approx(0.0)


def test_gazefollow_constant_heatmap_auc_half():
    assert gazefollow_auc(np.full((64, 64), 0.3), [(0.4, 0.6), (0.1, 0.2)], 160, 120) == pytest.approx(0.5)


@pytest.mark.parametrize("size,cell", [(64, 1), (192, 3)])
def test_gazefollow_peak_at_annotation(size, cell):
    hm = np.zeros((64, 64), dtype=np.float32)
    hm[20, 40] = 1.0
    # pixel whose centre maps exactly onto cell (20, 40) after align_corners=False upsampling
    col, row = 40 * cell + cell // 2, 20 * cell + cell // 2
    pt = [((col + 0.5) / size, (row + 0.5) / size)]
    assert gazefollow_auc(hm, pt, size, size) == pytest.approx(1.0)
    assert gazefollow_l2(hm, pt)[1] < 1 / 64


def test_gazefollow_auc_matches_sklearn():
    W, H = 50, 37
    hm = torch.rand(64, 64)
    pts = [(0.1, 0.2), (0.999, 0.999), (0.5, 0.5), (-1.0, -1.0)]
    target = np.zeros((H, W))
    for x, y in pts[:3]:
        target[min(int(y * H), H - 1), min(int(x * W), W - 1)] = 1
    up = torch.nn.functional.interpolate(hm[None, None], (H, W), mode="bilinear", align_corners=False)
    expected = roc_auc_score(target.ravel(), up.squeeze().numpy().ravel())
    assert gazefollow_auc(hm, pts, W, H) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("n_pos", [1, 5, 100, 900])  # both branches, and more positives than negatives
def test_roc_auc_equals_sklearn_with_ties(n_pos):
    y = np.zeros(1000, dtype=int)
    y[RNG.choice(1000, n_pos, replace=False)] = 1
    s = np.round(RNG.random(1000) + 0.3 * y, 1)  # heavy ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), rel=1e-12)


def test_gazefollow_metrics_average_skip_and_permutation():
    hms = RNG.random((3, 64, 64)).astype(np.float32)
    pts = [[(0.2, 0.3), (0.25, 0.35)], [(0.7, 0.1)], [(-1.0, -1.0)]]
    sizes = [(160, 120), (80, 100), (64, 64)]
    m = gazefollow_metrics(hms, pts, sizes)
    assert m["n"] == 2 and m["n_skipped"] == 1
    assert m["auc"] == pytest.approx(np.mean([gazefollow_auc(hms[i], pts[i], *sizes[i]) for i in range(2)]))
    l2 = [gazefollow_l2(hms[i], pts[i]) for i in range(2)]
    assert m["avg_l2"] == pytest.approx(np.mean([a for a, _ in l2]))
    assert m["min_l2"] == pytest.approx(np.mean([b for _, b in l2]))
    order = [2, 0, 1]
    m2 = gazefollow_metrics([hms[i] for i in order], [pts[i] for i in order], [sizes[i] for i in order])
    assert m2 == pytest.approx(m)
    assert gazefollow_metrics(torch.from_numpy(hms), pts, sizes) == pytest.approx(m)


# ----------------------------------------------------------------------------- model selection
def test_mean_primary():
    from socialfusion.tasks import TASK_NAMES, build_task

    tasks = {name: build_task(name) for name in TASK_NAMES}
    metrics = {"lam": {"map": 0.8, "accuracy": 0.9}, "gaze": {"auc": 0.9}, "relation": {"map": 0.7}}
    assert mean_primary(metrics, tasks) == pytest.approx(0.8)
    # tasks with no metrics (unscorable split: None; empty split: no primary key) are skipped
    assert mean_primary({**metrics, "expression": None, "gesture": {"n": 0}}, tasks) == pytest.approx(0.8)
    assert math.isnan(mean_primary({}, tasks))
    assert math.isnan(mean_primary({"lam": None, "gaze": {}}, tasks))
    assert math.isnan(mean_primary({"lam": {"map": float("nan")}, "gaze": {"auc": 0.9}}, tasks))
    with pytest.raises(ValueError, match="unknown task"):
        mean_primary({"other": {"x": 1.0}}, tasks)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("fn", [lam_ap, lam_map, lam_accuracy, pisc_ap, roc_auc])
def test_binary_validation(fn):
    with pytest.raises(ValueError, match="differ in length"):
        fn([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="binary"):
        fn([0, 2], [0.1, 0.2])


def test_classification_validation():
    with pytest.raises(ValueError, match="differ in length"):
        classification_metrics([0, 1], [0], 2)
    with pytest.raises(ValueError, match="empty"):
        classification_metrics([], [], 2)
    with pytest.raises(ValueError, match="0..1"):
        classification_metrics([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="differ in length"):
        batch_averaged_micro_f1([0, 1], [0], 2)
    with pytest.raises(ValueError, match="empty"):
        batch_averaged_micro_f1([], [], 2)


def test_pisc_validation():
    with pytest.raises(ValueError, match="differ in length"):
        pisc_metrics([0, 1], [[0.5, 0.5]])
    with pytest.raises(ValueError, match="non-empty"):
        pisc_metrics([], np.zeros((0, 3)))
    with pytest.raises(ValueError, match="non-negative"):
        pisc_metrics([0], [[-1.0, 2.0]])


def test_gaze_validation():
    hm = np.zeros((64, 64))
    with pytest.raises(ValueError, match="empty"):
        gazefollow_metrics([], [], [])
    with pytest.raises(ValueError, match="differ in length"):
        gazefollow_metrics([hm, hm], [[(0.1, 0.1)]], [(10, 10)])
    with pytest.raises(ValueError, match="no valid gaze point"):
        gazefollow_auc(hm, [(-1.0, -1.0)], 10, 10)
    with pytest.raises(ValueError, match="no valid gaze point"):
        gazefollow_l2(hm, [])
    with pytest.raises(ValueError, match="2-D"):
        gazefollow_l2(np.zeros(64), [(0.1, 0.1)])

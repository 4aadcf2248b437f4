"""The official metrics of the five tasks, re-implemented (never imported) from the reference code.

Each function names the reference it reproduces and where it departs from it. All functions take
array-likes (lists, NumPy arrays or CPU tensors), validate them, and raise ``ValueError`` with a
message naming the problem on empty or mismatched inputs. See docs/DATASETS.md sections 1.5, 2.4,
3.6, 4.5 and 5.5 for the protocols.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from sklearn.metrics import f1_score

__all__ = [
    "lam_ap",
    "lam_map",
    "lam_accuracy",
    "classification_metrics",
    "batch_averaged_micro_f1",
    "pisc_ap",
    "pisc_metrics",
    "roc_auc",
    "gazefollow_auc",
    "gazefollow_l2",
    "gazefollow_metrics",
    "mean_primary",
    "classification_resampled",
    "gazefollow_per_person",
]


# ----------------------------------------------------------------------------- input checks
def _1d(x: Any, name: str, dtype=np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=dtype)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty: a metric needs at least one sample")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _same_length(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{na} and {nb} differ in length: {len(a)} vs {len(b)}")


def _binary(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _1d(labels, "labels")
    s = _1d(scores, "scores")
    _same_length(y, s, "labels", "scores")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError(f"labels must be binary 0/1, got values {np.unique(y)[:10].tolist()}")
    return y.astype(np.int64), s


def _class_ids(x: Any, name: str, num_classes: int) -> np.ndarray:
    a = _1d(x, name)
    if not np.all(a == np.round(a)):
        raise ValueError(f"{name} must be integer class indices")
    a = a.astype(np.int64)
    if a.min() < 0 or a.max() >= num_classes:
        raise ValueError(f"{name} must lie in 0..{num_classes - 1}, got range {a.min()}..{a.max()}")
    return a


# ----------------------------------------------------------------------------- Ego4D LAM
def lam_ap(labels: Any, scores: Any) -> float:
    """AP of the positive class, as Ego4D LAM ``common/metrics.py::compute_average_precision``.

    Rows are sorted by score descending; at rank i precision = TP(i)/i and recall = TP(i)/P. Recall
    is padded as [0, ..., 1] and precision as [0, ..., 0], precision is made non-increasing from the
    right, and AP = sum of (delta recall) x precision where recall changes (VOC "all points").

    Difference: the reference sorts with pandas' default (unstable quicksort), so the order of tied
    scores, and therefore AP under ties, is undefined there. Here the sort is stable
    (``np.argsort(-scores, kind="stable")``): ties keep their input order, so the result is
    deterministic. Without positives the reference raises inside its recall check; here the AP is
    undefined and NaN is returned.
    """
    y, s = _binary(labels, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(y[order])
    precision = np.concatenate([[0.0], tp / np.arange(1, len(y) + 1), [0.0]])
    recall = np.concatenate([[0.0], tp / n_pos, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.nonzero(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[idx] - recall[idx - 1]) * precision[idx]))


def lam_map(labels: Any, scores: Any) -> float:
    """LAM mAP: mean of the AP of "looking" (labels, scores) and of "not looking" (1 - labels, 1 - scores).

    As ``run_evaluation`` in Ego4D LAM ``common/metrics.py``; tie handling as in :func:`lam_ap`.
    """
    y, s = _binary(labels, scores)
    return float((lam_ap(y, s) + lam_ap(1 - y, 1.0 - s)) / 2.0)


def lam_accuracy(labels: Any, scores: Any, threshold: float = 0.5) -> float:
    """LAM "TOP-1 Acc" = (TP + TN) / N with ``score >= threshold`` counted as looking.

    As Ego4D LAM ``common/metrics.py::compute_confusion_matrix`` (same threshold rule).
    """
    y, s = _binary(labels, scores)
    return float(np.mean((s >= threshold).astype(np.int64) == y))


# ----------------------------------------------------------------------------- AffectNet / HaGRIDv2
def classification_metrics(labels: Any, pred: Any, num_classes: int) -> dict[str, Any]:
    """Single-label classification metrics (AffectNet expression, HaGRIDv2 full-frame gesture).

    Returns ``accuracy`` (top-1, the AffectNet protocol of DAN-style evaluation), ``macro_f1``,
    ``per_class_recall`` (list of ``num_classes``; None for classes absent from the ground truth),
    ``confusion_matrix`` (list of lists, rows = true class, columns = predicted) and ``n``.

    ``macro_f1`` is ``sklearn.metrics.f1_score(average="macro", zero_division=0)`` over the classes
    present in the ground truth. Classes that never occur in ``labels`` have no defined recall;
    averaging them in (``labels=range(num_classes)``) would add arbitrary zeros and make the value
    depend on which subset was evaluated. Predictions into such classes still count, as false
    negatives of the true class.

    HaGRIDv2's reference (``custom_utils/utils.py::F1ScoreWithLogging`` + ``MetricAverager``) uses
    torchmetrics' default ``average="micro"`` (= accuracy for single-label data) per batch and
    averages the batch values. We report the global value, i.e. ``accuracy``; use
    :func:`batch_averaged_micro_f1` to reproduce the per-batch number.
    """
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    c = int(num_classes)
    y = _class_ids(labels, "labels", c)
    p = _class_ids(pred, "pred", c)
    _same_length(y, p, "labels", "pred")
    cm = np.bincount(y * c + p, minlength=c * c).reshape(c, c)
    support = cm.sum(1)
    recall = [float(cm[k, k] / support[k]) if support[k] > 0 else None for k in range(c)]
    present = np.unique(y)
    macro = f1_score(y, p, labels=present, average="macro", zero_division=0)
    return {
        "accuracy": float(np.trace(cm) / len(y)),
        "macro_f1": float(macro),
        "per_class_recall": recall,
        "confusion_matrix": cm.tolist(),
        "n": int(len(y)),
    }


def classification_resampled(labels: Any, pred: Any, num_classes: int, idx: np.ndarray) -> dict[str, np.ndarray]:
    """``accuracy`` and ``macro_f1`` of :func:`classification_metrics` on every row of ``idx`` (B, m) at once.

    One confusion matrix per resample from a single ``np.bincount``; macro-F1 is 2TP / (2TP + FP + FN) averaged
    over the classes present in that resample's labels, which is what sklearn's ``f1_score(labels=present,
    zero_division=0)`` computes (a present class has 2TP + FP + FN >= its support > 0). sklearn costs about a
    millisecond per call, too slow for 1000 bootstrap resamples per task and run; this is a few milliseconds for
    all of them at n = 1000.
    """
    c = int(num_classes)
    y = _class_ids(labels, "labels", c)
    p = _class_ids(pred, "pred", c)
    _same_length(y, p, "labels", "pred")
    idx = np.asarray(idx, dtype=np.int64)
    if idx.ndim != 2:
        raise ValueError(f"idx must be (resamples, samples), got shape {idx.shape}")
    b = idx.shape[0]
    yi, pi = y[idx], p[idx]
    cm = np.bincount((np.arange(b)[:, None] * (c * c) + yi * c + pi).ravel(), minlength=b * c * c).reshape(b, c, c)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(2), cm.sum(1)
    present = support > 0
    f1 = np.where(present, 2.0 * tp / np.maximum(support + predicted, 1), 0.0)
    return {"accuracy": (yi == pi).mean(1), "macro_f1": f1.sum(1) / np.maximum(present.sum(1), 1)}


def batch_averaged_micro_f1(labels: Any, pred: Any, batch_size: int, log_every: int = 1) -> float:
    """Micro-F1 per batch, averaged over batches, as HaGRIDv2's evaluation reports "F1Score".

    Reproduces ``torchmetrics.F1Score(task="multiclass")`` (default ``average="micro"``, i.e. batch
    accuracy) called per batch by ``F1ScoreWithLogging`` and averaged by ``MetricAverager``: the
    samples are cut, in the given order, into consecutive batches of ``batch_size`` (the last may be
    smaller and still weighs as much as a full batch). The reference ``Logger.log_iteration`` only
    feeds the averager on iterations ``i`` (1-based) with ``i % log_every == 0`` and on the last one;
    ``log_every`` reproduces that (1 = every batch). The result depends on order and batch size;
    it equals the global accuracy when ``batch_size >= len(labels)``.
    """
    y = _1d(labels, "labels", np.int64)
    p = _1d(pred, "pred", np.int64)
    _same_length(y, p, "labels", "pred")
    if int(batch_size) < 1 or int(log_every) < 1:
        raise ValueError(f"batch_size and log_every must be >= 1, got {batch_size}, {log_every}")
    bs = int(batch_size)
    n_batches = math.ceil(len(y) / bs)
    values = [
        float(np.mean(y[i * bs : (i + 1) * bs] == p[i * bs : (i + 1) * bs]))
        for i in range(n_batches)
        if (i + 1) % int(log_every) == 0 or i + 1 == n_batches
    ]
    return float(np.mean(values))


# ----------------------------------------------------------------------------- PISC
def pisc_ap(labels_binary: Any, scores: Any) -> float:
    """Interpolated AP of one class, as GRIT ``utils/eval_utils.py::cal_AP``.

    Sort by score descending; at the n-th positive, found at rank i, record n / i; make these
    values non-increasing from the right; AP = sum / (n_pos + 1e-6). This is *not* sklearn's
    ``average_precision_score`` (positives at ranks 1, 4, 5 of 5: 0.7333 here, 0.700 there), and the
    1e-6 means perfect scores give 1 / (1 + 1e-6 / n_pos), not exactly 1. A class without positives
    gives 0.0, as in the reference.

    Ties: the reference sorts a (score, label) record array ascending and reverses it, so among
    equal scores positives come first. We reproduce that explicitly (``np.lexsort`` on
    (-label, -score)); the result is deterministic and independent of input order.
    """
    y, s = _binary(labels_binary, scores)
    order = np.lexsort((-y, -s))
    ranks = np.nonzero(y[order])[0] + 1
    if len(ranks) == 0:
        return 0.0
    prec = np.arange(1, len(ranks) + 1) / ranks
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    return float(prec.sum() / (len(ranks) + 1e-6))


def pisc_metrics(labels: Any, probs: Any) -> dict[str, Any]:
    """PISC relation metrics: ``map``, ``per_class_ap``, ``per_class_recall``, ``accuracy``, ``n``.

    ``map`` follows GRIT ``utils/eval_utils.py::compute_map``: each score row is renormalised to
    sum 1 (``normnp``), then :func:`pisc_ap` one-vs-rest per class, averaged over *all* classes
    (a class absent from ``labels`` contributes 0, as in the reference). ``per_class_recall`` is
    TP_k / #GT_k on argmax predictions (GRM's report; None for absent classes); ``accuracy`` is the
    overall top-1 accuracy newer papers add. ``probs`` must be non-negative with positive row sums.
    """
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().cpu().numpy()
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] == 0 or P.shape[1] == 0:
        raise ValueError(f"probs must be a non-empty (N, num_classes) array, got shape {P.shape}")
    if not np.all(np.isfinite(P)) or P.min() < 0:
        raise ValueError("probs must be finite and non-negative (class probabilities, not logits)")
    sums = P.sum(1, keepdims=True)
    if np.any(sums <= 0):
        raise ValueError("every row of probs must have a positive sum")
    c = P.shape[1]
    y = _class_ids(labels, "labels", c)
    _same_length(y, P, "labels", "probs")
    P = P / sums
    aps = [pisc_ap((y == k).astype(np.int64), P[:, k]) for k in range(c)]
    pred = P.argmax(1)
    recall = [float(np.mean(pred[y == k] == k)) if np.any(y == k) else None for k in range(c)]
    return {
        "map": float(np.mean(aps)),
        "per_class_ap": aps,
        "per_class_recall": recall,
        "accuracy": float(np.mean(pred == y)),
        "n": int(len(y)),
    }


# ----------------------------------------------------------------------------- GazeFollow
def roc_auc(labels: Any, scores: Any) -> float:
    """Exact ROC AUC (Mann-Whitney statistic, ties count 1/2) = ``sklearn.metrics.roc_auc_score``.

    Cheaper than sklearn on a few positives among many negatives (GazeFollow: <= 20 annotated
    pixels in an image): when one class is small it is compared against the other directly,
    otherwise the larger class is sorted once and searched. Raises ValueError if a class is missing.
    """
    y, s = _binary(labels, scores)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("ROC AUC needs at least one positive and one negative")
    small, large, flip = (pos, neg, False) if len(pos) <= len(neg) else (neg, pos, True)
    if len(small) <= 32:
        less = (large[None, :] < small[:, None]).sum(1)
        equal = (large[None, :] == small[:, None]).sum(1)
    else:
        srt = np.sort(large)
        less = np.searchsorted(srt, small, side="left")
        equal = np.searchsorted(srt, small, side="right") - less
    # wins of `small` over `large`; if small is the negative class, convert to positive wins
    wins = float(less.sum() + 0.5 * equal.sum())
    total = float(len(pos)) * float(len(neg))
    return (total - wins) / total if flip else wins / total


def _heatmap(h: Any) -> torch.Tensor:
    t = h.detach().cpu() if isinstance(h, torch.Tensor) else torch.as_tensor(np.asarray(h))
    if t.ndim != 2 or t.numel() == 0:
        raise ValueError(f"a heatmap must be a non-empty 2-D array, got shape {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    if not torch.isfinite(t).all():
        raise ValueError("heatmap contains NaN or infinite values")
    return t


def _points(points: Any) -> np.ndarray:
    """Valid (x, y) annotations; rows with a negative coordinate are padding and are dropped."""
    if isinstance(points, torch.Tensor):
        points = points.detach().cpu().numpy()
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
    p = p[(p[:, 0] >= 0) & (p[:, 1] >= 0)]
    if len(p) == 0:
        raise ValueError("no valid gaze point (all points empty or negative padding)")
    return p


def gazefollow_auc(heatmap64: Any, points: Any, width: int, height: int) -> float:
    """GazeFollow AUC at the original image resolution, as Gaze-LLE ``gazelle/utils.py::gazefollow_auc``.

    Target T (height x width) is 1 at ``[min(int(y*H), H-1), min(int(x*W), W-1)]`` for each valid
    annotation (annotators on one pixel collapse), 0 elsewhere; the heatmap is upsampled with
    ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` to (H, W) and AUC =
    ROC AUC over all pixels (computed by :func:`roc_auc`, equal to ``sklearn.metrics.roc_auc_score``).
    Differences: points with *any* negative coordinate are skipped as padding (Gaze-LLE tests x
    only, Chong's loader pads both with -1); the heatmap keeps its dtype if floating (the reference
    gets float32 model outputs), and Chong's uint8 ``imresize`` quantisation is not reproduced.
    """
    W, H = int(width), int(height)
    if W < 1 or H < 1:
        raise ValueError(f"width and height must be positive, got {width}x{height}")
    h = _heatmap(heatmap64)
    p = _points(points)
    target = np.zeros((H, W), dtype=np.int64)
    cols = np.minimum((p[:, 0] * W).astype(np.int64), W - 1)
    rows = np.minimum((p[:, 1] * H).astype(np.int64), H - 1)
    target[rows, cols] = 1
    up = torch.nn.functional.interpolate(h[None, None], size=(H, W), mode="bilinear", align_corners=False)
    scores = up[0, 0].numpy().astype(np.float64).ravel()
    return roc_auc(target.ravel(), scores)


def gazefollow_l2(heatmap64: Any, points: Any) -> tuple[float, float]:
    """(avg L2, min L2) as Gaze-LLE ``gazelle/utils.py::gazefollow_l2`` (and Chong's eval).

    The prediction is the heatmap argmax (first index on ties, as ``np.argmax``) at
    p = (col / w, row / h) with no +0.5 cell-centre offset (w = h = 64 in the references). Avg L2 =
    distance from p to the *mean* of the valid annotations; min L2 = the smallest distance to any
    one annotation. Coordinates are normalised, so distances are anisotropic in pixels.
    """
    h = _heatmap(heatmap64).numpy()
    p = _points(points)
    row, col = np.unravel_index(int(np.argmax(h)), h.shape)
    pred = np.array([col / h.shape[1], row / h.shape[0]])
    avg = float(np.linalg.norm(pred - p.mean(0)))
    mn = float(np.min(np.linalg.norm(p - pred[None, :], axis=1)))
    return avg, mn


def gazefollow_metrics(heatmaps: Any, points: Sequence, image_sizes: Sequence) -> dict[str, Any]:
    """Mean over persons of :func:`gazefollow_auc`, and of avg / min :func:`gazefollow_l2`.

    ``heatmaps``: (N, h, w) array/tensor or a list of 2-D maps; ``points``: per person a list of
    normalised (x, y); ``image_sizes``: per person (W, H). Persons without any valid point (e.g.
    out-of-frame gaze) cannot be scored; they are skipped and counted in ``n_skipped`` (the
    references only evaluate in-frame test persons). Returns ``auc``, ``avg_l2``, ``min_l2``, ``n``
    (persons scored) and ``n_skipped``; the means are NaN if no person could be scored.
    """
    per = gazefollow_per_person(heatmaps, points, image_sizes)
    scored = np.isfinite(per["auc"])
    mean = (lambda v: float(np.mean(v[scored]))) if scored.any() else (lambda v: float("nan"))
    n = len(scored)
    return {
        "auc": mean(per["auc"]),
        "avg_l2": mean(per["avg_l2"]),
        "min_l2": mean(per["min_l2"]),
        "n": int(scored.sum()),
        "n_skipped": int(n - scored.sum()),
    }


def gazefollow_per_person(heatmaps: Any, points: Sequence, image_sizes: Sequence) -> dict[str, np.ndarray]:
    """Per person, the three values :func:`gazefollow_metrics` averages: {"auc", "avg_l2", "min_l2"}, each (N,)
    with NaN for a person without a valid point. The metrics are means over persons, so a bootstrap resample's
    metrics are means of these (the per-image AUC is the slow part; it is computed once)."""
    if isinstance(heatmaps, torch.Tensor):
        heatmaps = heatmaps.detach().cpu()
    n = len(heatmaps)
    if n == 0:
        raise ValueError("heatmaps is empty: a metric needs at least one person")
    if len(points) != n or len(image_sizes) != n:
        raise ValueError(f"heatmaps, points and image_sizes differ in length: {n}, {len(points)}, {len(image_sizes)}")
    out = {k: np.full(n, np.nan) for k in ("auc", "avg_l2", "min_l2")}
    for i, (hm, pts, size) in enumerate(zip(heatmaps, points, image_sizes)):
        if len(size) != 2:
            raise ValueError(f"an image size must be (W, H), got {size!r}")
        try:
            valid = _points(pts)
        except ValueError:
            continue
        out["auc"][i] = gazefollow_auc(hm, valid, size[0], size[1])
        out["avg_l2"][i], out["min_l2"][i] = gazefollow_l2(hm, valid)
    return out


# ----------------------------------------------------------------------------- model selection
class HasPrimaryMetric(Protocol):
    """What `mean_primary` reads of a task (`tasks.base.Task` has it), so this layer needs no task import."""

    primary_metric: str


def mean_primary(metrics: dict[str, dict | None], tasks: dict[str, HasPrimaryMetric]) -> float:
    """Mean over the evaluated tasks of each task's primary metric (`Task.primary_metric`), for checkpoint
    selection and the training log.

    ``metrics`` maps task name -> its metrics dict, or None when the split could not be scored (no labels).
    A task with no metrics (None, empty, or without its primary key, e.g. ``{"n": 0}`` for an empty split) is
    skipped; NaN when no task is left. The primaries (lam "map", expression "accuracy", gesture "accuracy",
    relation "map", gaze "auc") are all higher-is-better, so no sign flip is applied; a NaN primary makes the
    mean NaN (never selected as "better"). A task name missing from ``tasks`` is a ValueError.
    """
    unknown = sorted(set(metrics) - set(tasks))
    if unknown:
        raise ValueError(f"metrics for unknown task(s) {unknown}; known: {sorted(tasks)}")
    values = [
        float(m[tasks[name].primary_metric]) for name, m in metrics.items() if m and tasks[name].primary_metric in m
    ]
    return float(sum(values) / len(values)) if values else float("nan")

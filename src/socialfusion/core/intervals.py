"""95 % intervals for every reported number: percentile bootstrap over samples (paired for differences of two
models on the same samples), and Student-t intervals over seeds.

A *statistic* is a function of an index array ``idx`` of shape (B, m) -> ``{metric: (B,) values}``: the official
metrics recomputed on each of B resamples (row b picks samples ``idx[b]``). Tasks build theirs
(`Task.resampler`) so that the interval is always of the number the task reports, through the task's own
metric code; `loop_statistic` re-runs a metric function per resample, `mean_statistic` is the vectorised form for
metrics that are means over samples. Resamples are drawn in chunks (at most ~4M indices at a time) from one seeded
generator, so memory stays bounded on large splits and the result depends only on (seed, resamples, n).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

Statistic = Callable[[np.ndarray], dict[str, np.ndarray]]

LEVEL = 0.95
RESAMPLES = 1000
SEED = 0
_CHUNK_INDICES = 4_000_000


def is_metric(v: Any) -> bool:
    """A scalar metric value: floats only (counts such as ``n`` are ints and carry no interval)."""
    return isinstance(v, (float, np.floating)) and not isinstance(v, bool)


def _chunks(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_INDICES // max(1, n))
    for start in range(0, resamples, rows):
        yield rng.integers(0, n, size=(min(rows, resamples - start), n))


def loop_statistic(metric_fn: Callable[[np.ndarray], dict | None]) -> Statistic:
    """A statistic from a function of one resample's indices (m,) -> metrics dict; its float values are kept."""

    def statistic(idx: np.ndarray) -> dict[str, np.ndarray]:
        rows = [metric_fn(row) or {} for row in idx]
        keys = [k for k, v in rows[0].items() if is_metric(v)] if rows else []
        return {k: np.array([float(r.get(k, np.nan)) for r in rows]) for k in keys}

    return statistic


def mean_statistic(values: dict[str, Sequence[float]]) -> Statistic:
    """The statistic of metrics that are means over samples, given per-sample values (NaN: not scored, left out
    of the mean as the metric leaves it out)."""
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}

    def statistic(idx: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for k, v in arrays.items():
            x = v[idx]
            ok = np.isfinite(x)
            count = ok.sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[k] = np.where(count > 0, np.where(ok, x, 0.0).sum(1) / np.maximum(count, 1), np.nan)
        return out

    return statistic


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """[lo, hi] percentiles of the finite bootstrap values (None when fewer than half are finite: e.g. an mAP
    that most resamples cannot define)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0 or len(v) < 0.5 * np.size(values):
        return None
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(v, [a, 1.0 - a])
    return [float(lo), float(hi)]


def bootstrap(statistic: Statistic, n: int, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, np.ndarray]:
    """{metric: (resamples,) values} of `statistic` on `resamples` resamples (with replacement) of n samples."""
    if n < 1:
        raise ValueError("a bootstrap needs at least one sample")
    parts: dict[str, list[np.ndarray]] = {}
    for idx in _chunks(n, resamples, seed):
        for k, v in statistic(idx).items():
            parts.setdefault(k, []).append(np.asarray(v, dtype=np.float64))
    return {k: np.concatenate(v) for k, v in parts.items()}


def bootstrap_intervals(
    statistic: Statistic, n: int, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> dict[str, list[float] | None]:
    """{metric: [lo, hi]}: percentile-bootstrap intervals of every metric the statistic returns."""
    return {k: percentile_interval(v, level) for k, v in bootstrap(statistic, n, resamples, seed).items()}


def interval_info(resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL, over: str = "samples") -> dict:
    """How the intervals next to it were made (stored once per result)."""
    return {"level": level, "method": f"percentile bootstrap over {over}", "resamples": resamples, "seed": seed}


def add_intervals(
    metrics: dict, statistic: Statistic, n: int, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> dict:
    """`metrics` with ``metrics["ci"] = {metric: [lo, hi]}`` for each float metric it reports (in place)."""
    ci = bootstrap_intervals(statistic, n, resamples, seed, level)
    metrics["ci"] = {k: ci.get(k) for k, v in metrics.items() if is_metric(v) and k in ci}
    return metrics


def paired_difference(
    a: Statistic,
    ids_a: Sequence,
    b: Statistic,
    ids_b: Sequence,
    metric: str,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
    keep_samples: bool = False,
) -> dict:
    """Interval of metric(b) - metric(a) for two models scored on the same samples: every resample picks the same
    samples (matched by id) for both, so what the samples share cancels out of the difference.

    Returns {"n": samples in common, "delta": [lo, hi], "relative": [lo, hi] of (b - a) / |a|, "a": [lo, hi],
    "b": [lo, hi]} (an entry is None where too few resamples define it); with `keep_samples` also "samples":
    {"delta": (resamples,), "relative": (resamples,)}, the bootstrap values themselves."""
    pos_a = {sid: i for i, sid in enumerate(ids_a)}
    pos_b = {sid: i for i, sid in enumerate(ids_b)}
    common = [sid for sid in ids_a if sid in pos_b]
    if not common:
        raise ValueError("the two models were scored on no sample in common")
    ia = np.array([pos_a[s] for s in common])
    ib = np.array([pos_b[s] for s in common])
    va, vb = [], []
    for idx in _chunks(len(common), resamples, seed):
        va.append(np.asarray(a(ia[idx])[metric], dtype=np.float64))
        vb.append(np.asarray(b(ib[idx])[metric], dtype=np.float64))
    va, vb = np.concatenate(va), np.concatenate(vb)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(va != 0, (vb - va) / np.abs(va), np.nan)
    out = {
        "n": len(common),
        "delta": percentile_interval(vb - va, level),
        "relative": percentile_interval(rel, level),
        "a": percentile_interval(va, level),
        "b": percentile_interval(vb, level),
    }
    if keep_samples:
        out["samples"] = {"delta": vb - va, "relative": rel}
    return out


# ------------------------------------------------------------------------------------------- across seeds
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student-t CDF (no SciPy among the dependencies)."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile by bisection on `t_cdf` (e.g. t_quantile(0.975, 4) = 2.776)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, max(10.0, 4 * NormalDist().inv_cdf(p))
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def t_interval(values: Sequence[float | None], level: float = LEVEL) -> dict:
    """Mean and Student-t interval of one number measured once per seed: {"mean", "ci": [lo, hi] or None, "sd",
    "k"} (k: seeds with a finite value; the interval needs k >= 2)."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    k = len(v)
    if k == 0:
        return {"mean": None, "ci": None, "sd": None, "k": 0}
    mean = float(v.mean())
    if k < 2:
        return {"mean": mean, "ci": None, "sd": None, "k": 1}
    sd = float(v.std(ddof=1))
    half = t_quantile(0.5 + level / 2.0, k - 1) * sd / math.sqrt(k)
    return {"mean": mean, "ci": [mean - half, mean + half], "sd": sd, "k": k}


def excludes_zero(ci: Sequence[float] | None) -> int:
    """+1 when the interval lies above zero, -1 below, 0 when it contains zero or is missing."""
    if not ci or ci[0] is None or ci[1] is None:
        return 0
    return 1 if ci[0] > 0 else -1 if ci[1] < 0 else 0


def fmt_ci(value: Any, ci: Sequence[float] | None, digits: int = 4, scale: float = 1.0, signed: bool = False) -> str:
    """'x [lo, hi]' for tables ('-' when the value is missing; the value alone when the interval is)."""
    if value is None or not isinstance(value, (int, float, np.floating)) or not math.isfinite(value):
        return "-"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    text = f.format(scale * float(value))
    if ci and ci[0] is not None and ci[1] is not None:
        text += f" [{f.format(scale * ci[0])}, {f.format(scale * ci[1])}]"
    return text

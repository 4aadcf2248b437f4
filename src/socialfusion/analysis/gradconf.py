"""`socialfusion gradconf`: gradient conflict between tasks (the paper's "compatibility" analysis).

Over K fixed multi-task batches (batch k holds, for every task, that task's k-th fixed batch of train.batch_size
training samples), the gradient of each task's loss (times its configured loss weight) on the *shared* trainable
parameters (connector, box embedding, LoRA, and the encoder when it is trainable; the task-specific gaze head is
left out) is flattened on the CPU. From these we report, per parameter component and overall:

- `cosine`: the cosine similarity of the task gradients accumulated over the K batches (T x T);
- `mean_batch_cosine`: the mean over batches of the per-batch cosine;
- `conflict_frequency`: the fraction of batches in which two tasks' gradients have cosine < 0 (as in PCGrad);
- `magnitude_similarity`: 2|g1||g2| / (|g1|^2 + |g2|^2) of the accumulated gradients (1 = equal norms).

Every number has a 95 % percentile bootstrap interval over the K batches (`ci`: resample the batches with
replacement, recompute the statistic; K >= 16 by default, since with a handful of batches a frequency can only
be 0, 1/K, ...). The accumulated statistics of a resample need the dot products between every pair of (batch,
task) gradients: each batch's gradient is kept per component, exactly when the component has at most
`sketch_dim` (65,536) parameters, else as a count sketch of that size (a fixed random bucket and sign per
parameter; dot products unbiased, relative error about 1/sqrt(sketch_dim) = 0.4 %, used for the intervals only;
the point estimates are exact).

Memory: per task one running sum (float32, CPU) plus K x T x sum over components of min(size, sketch_dim)
floats for the intervals. The math is in pure functions (`cosine_matrix`, `conflict_frequency`,
`magnitude_similarity`, `bootstrap_batches`) tested on toy problems.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import apply_overrides, load_config, split_list
from ..core.intervals import RESAMPLES, SEED, fmt_ci, interval_info, percentile_interval
from ..core.results import GradconfResult
from ..data.pipeline import build_task_datasets, collate, narrow_to_tasks
from ..data.skips import SkipReport
from ..errors import add_console_options
from ..features.inputs import sample_inputs
from ..models import factory as model_factory
from ..models.checkpoint import load_model, read_checkpoint_config
from ..runtime import resolve_device
from ..tasks import tasks_from_config
from ..train.step import NonFiniteLoss, task_backward
from ..train.surgery import flat_grad
from . import fmt
from .plots import gradconf_caption, matrix_heatmaps

DEFAULT_BATCHES = 16
SKETCH_DIM = 65536


# ------------------------------------------------------------------------------------------- pure math
def _stack(grads) -> torch.Tensor:
    """(T, D) float64 from a mapping task -> vector, a sequence of vectors, or a 2-D array."""
    if isinstance(grads, Mapping):
        grads = list(grads.values())
    if isinstance(grads, (list, tuple)):
        if not grads:
            raise ValueError("no gradients given")
        grads = torch.stack([torch.as_tensor(g).flatten() for g in grads])
    g = torch.as_tensor(grads).to(torch.float64)
    if g.ndim != 2:
        raise ValueError(f"gradients must be (tasks, params), got shape {tuple(g.shape)}")
    return g


def cosine_matrix(grads) -> np.ndarray:
    """Pairwise cosine similarity (T x T). A zero gradient has no direction: its row and column are NaN."""
    g = _stack(grads)
    norms = g.norm(dim=1)
    cos = (g @ g.T) / (norms[:, None] * norms[None, :])
    cos = cos.clamp(-1.0, 1.0)
    zero = norms == 0
    cos[zero, :] = float("nan")
    cos[:, zero] = float("nan")
    return cos.numpy()


def magnitude_similarity(g1, g2) -> float:
    """2|g1||g2| / (|g1|^2 + |g2|^2): 1 for equal norms, towards 0 when one dominates (NaN if both are zero)."""
    a = float(torch.as_tensor(g1, dtype=torch.float64).norm())
    b = float(torch.as_tensor(g2, dtype=torch.float64).norm())
    denom = a * a + b * b
    return 2.0 * a * b / denom if denom > 0 else float("nan")


def magnitude_similarity_matrix(grads) -> np.ndarray:
    n = _stack(grads).norm(dim=1).numpy()
    denom = n[:, None] ** 2 + n[None, :] ** 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2.0 * n[:, None] * n[None, :] / np.where(denom > 0, denom, 1.0), np.nan)


def conflict_frequency_from_cosines(cosines: Sequence[np.ndarray]) -> np.ndarray:
    """Fraction of batches with cosine < 0 per task pair, over the batches where the cosine is defined."""
    c = np.stack([np.asarray(m, dtype=np.float64) for m in cosines])
    defined = np.isfinite(c)
    conflicts = (np.where(defined, c, 0.0) < 0).sum(0)
    counts = defined.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = np.where(counts > 0, conflicts / np.maximum(counts, 1), np.nan)
    np.fill_diagonal(freq, 0.0)
    return freq


def conflict_frequency(per_batch_grads: Sequence) -> np.ndarray:
    """per_batch_grads[k] holds the task gradients of batch k (as for `cosine_matrix`); returns T x T fractions."""
    if not per_batch_grads:
        raise ValueError("no batches given")
    return conflict_frequency_from_cosines([cosine_matrix(g) for g in per_batch_grads])


def nanmean_stack(mats: Sequence[np.ndarray]) -> np.ndarray:
    c = np.stack(mats)
    defined = np.isfinite(c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined.any(0), np.where(defined, c, 0.0).sum(0) / np.maximum(defined.sum(0), 1), np.nan)


def batch_weights(k: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, k) counts: how often each of the k batches is drawn in each bootstrap resample."""
    idx = np.random.default_rng(seed).integers(0, k, size=(resamples, k))
    return np.stack([np.bincount(row, minlength=k) for row in idx]).astype(np.float64)


def bootstrap_batches(gram: np.ndarray, batch_cos: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Every statistic of `ConflictStats.summary` on each bootstrap resample of the batches.

    `gram` (K, T, K, T): dot products <g(batch k, task a), g(batch l, task c)>; `batch_cos` (K, T, T) per-batch
    cosines (NaN where undefined); `weights` (B, K) draw counts. A resample's accumulated gradient of task a is
    sum_k w_k g_ka, so its dot products are w^T G_ac w. Returns {statistic: (B, T, T)} and "mean_grad_norm" (B, T).
    """
    dots = np.einsum("bk,kalc,bl->bac", weights, gram, weights)
    sq = np.clip(np.einsum("baa->ba", dots), 0.0, None)
    norm = np.sqrt(sq)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.clip(dots / (norm[:, :, None] * norm[:, None, :]), -1.0, 1.0)
        denom = sq[:, :, None] + sq[:, None, :]
        mag = np.where(denom > 0, 2.0 * norm[:, :, None] * norm[:, None, :] / np.where(denom > 0, denom, 1.0), np.nan)
        defined = np.isfinite(batch_cos)
        count = np.einsum("bk,kac->bac", weights, defined.astype(np.float64))
        mean_cos = np.einsum("bk,kac->bac", weights, np.where(defined, batch_cos, 0.0)) / count
        conflict = np.einsum("bk,kac->bac", weights, (np.where(defined, batch_cos, 0.0) < 0).astype(np.float64)) / count
    return {
        "cosine": cos,
        "mean_batch_cosine": mean_cos,
        "conflict_frequency": conflict,
        "magnitude_similarity": mag,
        "mean_grad_norm": norm / weights.sum(1, keepdims=True),
    }


def _matrix_intervals(values: np.ndarray, level: float = 0.95) -> list[list[list[float] | None]]:
    """(B, T, T) bootstrap values -> T x T of [lo, hi] (None on the diagonal, fixed by definition)."""
    t = values.shape[1]
    return [[None if a == c else percentile_interval(values[:, a, c], level) for c in range(t)] for a in range(t)]


class ConflictStats:
    """Streaming statistics over batches: running gradient sums per task and per-batch cosine matrices per scope,
    plus what the bootstrap over batches needs (each batch's gradients per component, exact or count-sketched).

    `segments` maps a component name to its (start, end) slice of the flattened gradient; "overall" is the whole
    vector. Held: the T running sums and, per batch and component, T vectors of at most `sketch_dim` floats.
    """

    def __init__(
        self, tasks: Sequence[str], segments: Mapping[str, tuple[int, int]], sketch_dim: int = SKETCH_DIM, seed: int = 0
    ):
        self.tasks = list(tasks)
        end = max(e for _, e in segments.values()) if segments else 0
        self.segments = {"overall": (0, end), **segments}
        self.sums: dict[str, torch.Tensor] = {}
        self.batch_cos: dict[str, list[np.ndarray]] = {s: [] for s in self.segments}
        self.batches = 0
        # the overall Gram matrix is the sum of the components' when they tile the vector; else it is kept itself
        tiles = sorted(segments.values())
        covered = (
            bool(tiles)
            and tiles[0][0] == 0
            and all(a[1] == b[0] for a, b in zip(tiles, tiles[1:]))
            and tiles[-1][1] == end
        )
        self._kept_scopes = list(segments) if covered else list(self.segments)
        self._kept: dict[str, list[torch.Tensor]] = {s: [] for s in self._kept_scopes}
        self._sketch: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        g = torch.Generator().manual_seed(seed)
        for scope in self._kept_scopes:
            a, b = self.segments[scope]
            if b - a > sketch_dim:
                self._sketch[scope] = (
                    torch.randint(0, sketch_dim, (b - a,), generator=g),
                    torch.randint(0, 2, (b - a,), generator=g, dtype=torch.bool),
                )
        self.sketch_dim = sketch_dim

    def update(self, grads: Mapping[str, torch.Tensor]) -> None:
        missing = set(self.tasks) - set(grads)
        if missing:
            raise ValueError(f"batch lacks gradients for tasks {sorted(missing)}")
        for t in self.tasks:
            g = grads[t].detach().to("cpu", torch.float32).flatten()
            self.sums[t] = g.clone() if t not in self.sums else self.sums[t].add_(g)
        for scope, (a, b) in self.segments.items():
            self.batch_cos[scope].append(cosine_matrix([grads[t].flatten()[a:b] for t in self.tasks]))
        for scope in self._kept_scopes:
            a, b = self.segments[scope]
            v = torch.stack([grads[t].detach().to("cpu", torch.float32).flatten()[a:b] for t in self.tasks])
            if scope in self._sketch:
                bucket, negative = self._sketch[scope]
                v = torch.zeros(len(self.tasks), self.sketch_dim).index_add_(1, bucket, torch.where(negative, -v, v))
            self._kept[scope].append(v)
        self.batches += 1

    def gram(self, scope: str) -> np.ndarray:
        """(K, T, K, T) dot products between every (batch, task) gradient of one scope (sketched where marked)."""
        scopes = [scope] if scope in self._kept else self._kept_scopes
        k, t = self.batches, len(self.tasks)
        total = np.zeros((k * t, k * t))
        for sc in scopes:
            x = torch.cat(self._kept[sc]).double()
            total += (x @ x.T).numpy()
        return total.reshape(k, t, k, t)

    def summary(self, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
        out = {}
        weights = batch_weights(self.batches, resamples, seed) if resamples > 0 and self.batches else None
        for scope, (a, b) in self.segments.items():
            acc = [self.sums[t][a:b] for t in self.tasks]
            out[scope] = {
                "cosine": cosine_matrix(acc),
                "mean_batch_cosine": nanmean_stack(self.batch_cos[scope]),
                "conflict_frequency": conflict_frequency_from_cosines(self.batch_cos[scope]),
                "magnitude_similarity": magnitude_similarity_matrix(acc),
                "mean_grad_norm": {t: float(v.double().norm()) / max(1, self.batches) for t, v in zip(self.tasks, acc)},
                "n_params": b - a,
                "sketched": scope in self._sketch or (scope not in self._kept and bool(self._sketch)),
            }
            if weights is not None:
                boot = bootstrap_batches(self.gram(scope), np.stack(self.batch_cos[scope]), weights)
                ci = {
                    m: _matrix_intervals(boot[m])
                    for m in ("cosine", "mean_batch_cosine", "conflict_frequency", "magnitude_similarity")
                }
                ci["mean_grad_norm"] = {
                    t: percentile_interval(boot["mean_grad_norm"][:, i]) for i, t in enumerate(self.tasks)
                }
                out[scope]["ci"] = ci
        return out


# ------------------------------------------------------------------------------------------- the model run
def shared_parameters(model) -> tuple[list[tuple[str, torch.nn.Parameter]], dict[str, tuple[int, int]]]:
    """Trainable parameters shared by all tasks, grouped by component, and each component's flat slice."""
    shared = set(model.shared_components())
    by_comp: dict[str, list] = {}
    for name, p in model.named_parameters():
        comp = model.component(name)
        if p.requires_grad and comp in shared:
            by_comp.setdefault(comp, []).append((name, p))
    params, segments, offset = [], {}, 0
    for comp, items in by_comp.items():
        start = offset
        for item in items:
            params.append(item)
            offset += item[1].numel()
        segments[comp] = (start, offset)
    if not params:
        raise ValueError("the model has no shared trainable parameter: nothing to measure")
    return params, segments


def fixed_batches(n: int, batch_size: int, k: int, seed: int, salt: int) -> list[list[int]]:
    """K batches of indices from one seeded permutation (disjoint while K * batch_size <= n, then wrapping)."""
    if n == 0:
        return []
    perm = np.random.default_rng([seed, salt]).permutation(n)
    return [[int(perm[(b * batch_size + i) % n]) for i in range(min(batch_size, n))] for b in range(k)]


def run_gradconf(
    model, config, out_dir, batches: int = DEFAULT_BATCHES, progress: bool = True, resamples: int = RESAMPLES
) -> GradconfResult:
    """Per-task gradients over `batches` fixed multi-task batches -> gradconf.json, gradconf.md, gradconf.png, each
    statistic with a 95 % percentile bootstrap interval over the batches (`resamples` resamples; 0: none)."""
    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    params, segments = shared_parameters(model)
    data = _gradconf_data(model, config, batches)
    stats, losses = _measure(model, config, data, [p for _, p in params], segments, batches, progress)
    result = _gradconf_result(model, config, data, stats.summary(resamples), losses, segments, batches, resamples, t0)
    return _write_gradconf(result, out_dir, batches)


@dataclass
class _Batches:
    """The tasks with training data, their datasets and loss weights, and each task's K fixed batches of indices."""

    datasets: dict
    tasks: list
    weights: dict
    plan: dict  # task -> K lists of sample indices
    report: SkipReport


def _gradconf_data(model, config, batches: int) -> _Batches:
    """The training sets and their fixed batches; with a feature cache, only the samples in a batch are cached."""
    report = SkipReport(config.data.on_bad_sample)
    cache, input_fn = sample_inputs(model, config)
    datasets = build_task_datasets(config, model.tasks, "train", input_fn, report)
    datasets = {k: v for k, v in datasets.items() if len(v) > 0}
    if len(datasets) < 2:
        raise ValueError(f"gradient conflict needs at least two tasks with training data, got {sorted(datasets)}")
    tasks = list(datasets)
    weights = {td.task: td.loss_weight for td in config.data.tasks}
    plan = {
        t: fixed_batches(len(ds), config.train.batch_size, batches, config.train.seed, i)
        for i, (t, ds) in enumerate(datasets.items())
    }
    if cache is not None:
        needed = {t: [datasets[t].samples[i] for i in sorted({i for b in plan[t] for i in b})] for t in tasks}
        for t in tasks:
            cache.warm(needed[t], report, desc=f"caching features ({t})")
    return _Batches(datasets, tasks, weights, plan, report)


def _measure(model, config, data: _Batches, tensors: list, segments: dict, batches: int, progress: bool):
    """(ConflictStats over the K batches, each task's loss per batch)."""
    stats = ConflictStats(data.tasks, segments, seed=config.train.seed)
    losses = {t: [] for t in data.tasks}
    # eval mode: no dropout, so the gradients are a deterministic function of (weights, batches)
    model.eval()
    bar = tqdm(total=batches * len(data.tasks), desc="gradconf", disable=not progress, dynamic_ncols=True)
    for k in range(batches):
        grads = {}
        for t in data.tasks:
            ds = data.datasets[t]
            batch = collate([ds[i] for i in data.plan[t][k]], ds.task)
            model.zero_grad(set_to_none=True)
            if batch is None:
                raise ValueError(
                    f"task {t}: batch {k} has no usable sample (see the skip report: {data.report.summary()})"
                )
            try:
                out = task_backward(model, batch, data.weights.get(t, 1.0), model.device, config.train.precision)
            except NonFiniteLoss as err:
                raise ValueError(f"batch {k}: {err}") from None
            grads[t] = flat_grad(tensors).cpu()  # the statistics are kept on the CPU
            losses[t].append(float(out["loss"].detach()))
            bar.update(1)
        stats.update(grads)
        del grads
    bar.close()
    model.zero_grad(set_to_none=True)
    return stats, losses


def _gradconf_result(
    model, config, data: _Batches, summary: dict, losses: dict, segments: dict, batches: int, resamples: int, t0
) -> dict:
    """gradconf.json's content, less the figure and the tables: the statistics overall, per component, per pair."""
    tasks = data.tasks
    loss_ci = {}
    if resamples > 0:
        w = batch_weights(batches, resamples)
        loss_ci = {t: percentile_interval(w @ np.asarray(v) / w.sum(1)) for t, v in losses.items()}
    result = {
        "tasks": tasks,
        "batches": batches,
        "batch_size": config.train.batch_size,
        "seed": config.train.seed,
        "loss_weights": {t: data.weights.get(t, 1.0) for t in tasks},
        "mean_loss": {t: float(np.mean(v)) for t, v in losses.items()},
        "mean_loss_ci": loss_ci,
        "intervals": interval_info(resamples, SEED, over="batches") if resamples > 0 else None,
        "components": {c: b - a for c, (a, b) in segments.items()},
        "excluded_components": sorted(
            {model.component(n) for n, p in model.named_parameters() if p.requires_grad} - set(segments)
        ),
        "overall": summary.pop("overall"),
        "per_component": summary,
        "pairs": [],
        "skips": data.report.to_dict(),
        "seconds": time.perf_counter() - t0,
    }
    ov = result["overall"]
    for i, a in enumerate(tasks):
        for j in range(i + 1, len(tasks)):
            pair = {"a": a, "b": tasks[j], **{m: ov[m][i, j] for m in STATISTICS}}
            if "ci" in ov:
                pair["ci"] = {m: ov["ci"][m][i][j] for m in STATISTICS}
            result["pairs"].append(pair)
    return result


def _write_gradconf(result: dict, out_dir: Path, batches: int) -> GradconfResult:
    """The heatmaps, the captions and tables into `result`, then gradconf.json and gradconf.md."""
    ov = result["overall"]
    ci = ov.get("ci", {})
    matrix_heatmaps(
        [
            ("cosine of accumulated task gradients", ov["cosine"].tolist(), (-1.0, 1.0), "RdBu", ci.get("cosine")),
            (
                f"conflict frequency (cos < 0, {batches} batches)",
                ov["conflict_frequency"].tolist(),
                (0.0, 1.0),
                "Reds",
                ci.get("conflict_frequency"),
            ),
        ],
        result["tasks"],
        out_dir / "gradconf.png",
    )
    result["figures"] = [str(out_dir / "gradconf.png")]
    result["captions"] = {"gradconf": gradconf_caption(batches)}
    result["markdown"] = pairs_table(result)
    typed = GradconfResult.from_dict(result, "gradconf.json")
    typed.save(out_dir / "gradconf.json")
    (out_dir / "gradconf.md").write_text(markdown(result))
    return typed


STATISTICS = ("cosine", "mean_batch_cosine", "conflict_frequency", "magnitude_similarity")


def pairs_table(result: dict) -> str:
    """The overall statistics per task pair as one markdown table (value [95 % interval]), for embedding in reports."""
    lines = [
        "| pair | cosine | mean batch cosine | conflict frequency | magnitude similarity |",
        "|---|---|---|---|---|",
    ]
    for r in result["pairs"]:
        ci = r.get("ci") or {}
        lines.append(f"| {r['a']} / {r['b']} | " + " | ".join(fmt_ci(r[m], ci.get(m), 3) for m in STATISTICS) + " |")
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    tasks = result["tasks"]
    lines = [
        "# Gradient conflict between tasks",
        "",
        f"{result['batches']} fixed multi-task batches of {result['batch_size']} samples per task (seed "
        f"{result['seed']}); gradients of each task's loss on the shared trainable parameters "
        f"({', '.join(f'{c}: {n:,}' for c, n in result['components'].items())}; excluded: "
        f"{', '.join(result['excluded_components'])}). Brackets: 95 % percentile bootstrap intervals over the batches"
        + (f" ({result['intervals']['resamples']} resamples)." if result.get("intervals") else " (none computed)."),
        "",
        "## Overall cosine similarity of the accumulated task gradients",
        "",
        "| | " + " | ".join(tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    ov = result["overall"]
    for i, a in enumerate(tasks):
        lines.append(f"| {a} | " + " | ".join(fmt(ov["cosine"][i, j], 3) for j in range(len(tasks))) + " |")
    lines += [
        "",
        "## Task pairs",
        "",
        "| pair | scope | cosine | mean batch cosine | conflict frequency | magnitude similarity |",
        "|---|---|---|---|---|---|",
    ]
    scopes = {"overall": ov, **result["per_component"]}
    for i, a in enumerate(tasks):
        for j in range(i + 1, len(tasks)):
            for scope, s in scopes.items():
                ci = s.get("ci") or {}
                cells = [
                    fmt_ci(s[m][i, j], (ci.get(m) or [[None] * len(tasks)] * len(tasks))[i][j], 3) for m in STATISTICS
                ]
                lines.append(f"| {a} / {tasks[j]} | {scope} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Cosine < 0 means the two tasks pull the shared parameters in conflicting directions; a conflict frequency "
        "near 1 means they do so on almost every batch. "
        "A magnitude similarity far below 1 means one task's gradient dominates.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = add_console_options(
        argparse.ArgumentParser(
            prog="socialfusion gradconf",
            description="Gradient conflict between tasks on the shared trainable parameters.",
        )
    )
    p.add_argument(
        "args",
        nargs="*",
        help="CONFIG [overrides key.sub=value] (preset or YAML), or only overrides with --ckpt; anywhere on the line",
    )
    p.add_argument("--ckpt", help="a checkpoint directory (e.g. RUN/checkpoints/last); its config is used")
    p.add_argument("--out", required=True, help="output folder (gradconf.json, gradconf.md, heatmap)")
    p.add_argument("--tasks", help="comma-separated subset of the config's tasks (at least two)")
    p.add_argument(
        "--batches",
        type=int,
        default=DEFAULT_BATCHES,
        help=f"K multi-task batches (default {DEFAULT_BATCHES}; the intervals are over them)",
    )
    p.add_argument(
        "--resamples",
        type=int,
        default=RESAMPLES,
        help="bootstrap resamples of the batches for the intervals (0: none)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (the best available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    # config, overrides and data roots are checked before a model is built; their errors (UserError) go to the
    # dispatcher, one line, exit 2
    if args.ckpt:
        config = apply_overrides(read_checkpoint_config(args.ckpt)[0], args.args)
    elif not args.args:
        p.error("give a CONFIG (preset or YAML) or --ckpt DIR")
    else:
        config = load_config(args.args[0], args.args[1:])
    config = narrow_to_tasks(config, split_list(args.tasks))
    if args.ckpt:
        model = load_model(args.ckpt)[0]
    else:
        # through the module: tests replace factory.build_model to check that no model is built before the data check
        model = model_factory.build_model(config.model, tasks=tasks_from_config(config))
    model.to(resolve_device(args.device))
    result = run_gradconf(
        model, config, args.out, batches=args.batches, progress=not args.no_progress, resamples=args.resamples
    )
    print((Path(args.out) / "gradconf.md").read_text())
    return 0 if result else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

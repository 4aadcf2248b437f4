"""`socialfusion gradconf`: gradient conflict between tasks (the paper's "compatibility" analysis).

Over K fixed multi-task batches (batch k holds, for every task, that task's k-th fixed batch of train.batch_size
training samples), the gradient of each task's loss (times its configured loss weight) on the *shared* trainable
parameters (connector, box embedding, LoRA, and the encoder when it is trainable; the task-specific gaze head is
left out) is flattened on the CPU. From these we report, per parameter component and overall:

- `cosine`: the cosine similarity of the task gradients accumulated over the K batches (T x T);
- `mean_batch_cosine`: the mean over batches of the per-batch cosine;
- `conflict_frequency`: the fraction of batches in which two tasks' gradients have cosine < 0 (as in PCGrad);
- `magnitude_similarity`: 2|g1||g2| / (|g1|^2 + |g2|^2) of the accumulated gradients (1 = equal norms).

Memory: per task one running sum and one current-batch vector (float32, CPU), whatever K is. The math is in
pure functions (`cosine_matrix`, `conflict_frequency`, `magnitude_similarity`) tested on toy problems.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from . import fmt, write_json



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


class ConflictStats:
    """Streaming statistics over batches: running gradient sums per task and per-batch cosine matrices per scope.

    `segments` maps a component name to its (start, end) slice of the flattened gradient; "overall" is the whole
    vector. Only the T running sums (and the caller's T current vectors) are ever held.
    """

    def __init__(self, tasks: Sequence[str], segments: Mapping[str, tuple[int, int]]):
        self.tasks = list(tasks)
        self.segments = {"overall": (0, max(e for _, e in segments.values()) if segments else 0), **segments}
        self.sums: dict[str, torch.Tensor] = {}
        self.batch_cos: dict[str, list[np.ndarray]] = {s: [] for s in self.segments}
        self.batches = 0

    def update(self, grads: Mapping[str, torch.Tensor]) -> None:
        missing = set(self.tasks) - set(grads)
        if missing:
            raise ValueError(f"batch lacks gradients for tasks {sorted(missing)}")
        for t in self.tasks:
            g = grads[t].detach().to("cpu", torch.float32).flatten()
            self.sums[t] = g.clone() if t not in self.sums else self.sums[t].add_(g)
        for scope, (a, b) in self.segments.items():
            self.batch_cos[scope].append(cosine_matrix([grads[t].flatten()[a:b] for t in self.tasks]))
        self.batches += 1

    def summary(self) -> dict:
        out = {}
        for scope, (a, b) in self.segments.items():
            acc = [self.sums[t][a:b] for t in self.tasks]
            out[scope] = {
                "cosine": cosine_matrix(acc),
                "mean_batch_cosine": nanmean_stack(self.batch_cos[scope]),
                "conflict_frequency": conflict_frequency_from_cosines(self.batch_cos[scope]),
                "magnitude_similarity": magnitude_similarity_matrix(acc),
                "mean_grad_norm": {t: float(v.double().norm()) / max(1, self.batches) for t, v in zip(self.tasks, acc)},
                "n_params": b - a,
            }
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


def flat_grad(params) -> torch.Tensor:
    """The current .grad of `params` flattened into one float32 CPU vector (zeros where a parameter got none)."""
    parts = [(p.grad.detach().float().flatten().cpu() if p.grad is not None else torch.zeros(p.numel())) for _, p in params]
    return torch.cat(parts)


def fixed_batches(n: int, batch_size: int, k: int, seed: int, salt: int) -> list[list[int]]:
    """K batches of indices from one seeded permutation (disjoint while K * batch_size <= n, then wrapping)."""
    if n == 0:
        return []
    perm = np.random.default_rng([seed, salt]).permutation(n)
    return [[int(perm[(b * batch_size + i) % n]) for i in range(min(batch_size, n))] for b in range(k)]


def run_gradconf(model, config, out_dir, batches: int = 8, progress: bool = True) -> dict:
    """Per-task gradients over `batches` fixed multi-task batches -> gradconf.json, gradconf.md, gradconf.png."""
    from tqdm.auto import tqdm

    from ..data.pipeline import build_task_datasets, collate
    from ..data.skips import SkipReport
    from ..features.inputs import sample_inputs
    from ..train.step import NonFiniteLoss, task_backward
    from .plots import matrix_heatmaps

    if batches < 1:
        raise ValueError(f"batches must be >= 1, got {batches}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    device = model.device
    params, segments = shared_parameters(model)
    report = SkipReport(config.data.on_bad_sample)
    cache, input_fn = sample_inputs(model, config)
    datasets = build_task_datasets(config, model.tasks, "train", input_fn, report)
    datasets = {k: v for k, v in datasets.items() if len(v) > 0}
    if len(datasets) < 2:
        raise ValueError(f"gradient conflict needs at least two tasks with training data, got {sorted(datasets)}")
    tasks = list(datasets)
    weights = {td.task: td.loss_weight for td in config.data.tasks}
    plan = {t: fixed_batches(len(ds), config.train.batch_size, batches, config.train.seed, i) for i, (t, ds) in enumerate(datasets.items())}
    if cache is not None:
        needed = {t: [datasets[t].samples[i] for i in sorted({i for b in plan[t] for i in b})] for t in tasks}
        for t in tasks:
            cache.warm(needed[t], report, desc=f"caching features ({t})")
    stats = ConflictStats(tasks, segments)
    losses = {t: [] for t in tasks}
    # eval mode: no dropout, so the gradients are a deterministic function of (weights, batches)
    model.eval()
    bar = tqdm(total=batches * len(tasks), desc="gradconf", disable=not progress, dynamic_ncols=True)
    for k in range(batches):
        grads = {}
        for t in tasks:
            ds = datasets[t]
            batch = collate([ds[i] for i in plan[t][k]], ds.task)
            model.zero_grad(set_to_none=True)
            if batch is None:
                raise ValueError(f"task {t}: batch {k} has no usable sample (see the skip report: {report.summary()})")
            try:
                out = task_backward(model, batch, weights.get(t, 1.0), device, config.train.precision)
            except NonFiniteLoss as err:
                raise ValueError(f"batch {k}: {err}") from None
            grads[t] = flat_grad(params)
            losses[t].append(float(out["loss"].detach()))
            bar.update(1)
        stats.update(grads)
        del grads
    bar.close()
    model.zero_grad(set_to_none=True)
    summary = stats.summary()
    result = {
        "tasks": tasks,
        "batches": batches,
        "batch_size": config.train.batch_size,
        "seed": config.train.seed,
        "loss_weights": {t: weights.get(t, 1.0) for t in tasks},
        "mean_loss": {t: float(np.mean(v)) for t, v in losses.items()},
        "components": {c: b - a for c, (a, b) in segments.items()},
        "excluded_components": sorted({model.component(n) for n, p in model.named_parameters() if p.requires_grad} - set(segments)),
        "overall": summary.pop("overall"),
        "per_component": summary,
        "pairs": [],
        "skips": report.to_dict(),
        "seconds": time.perf_counter() - t0,
    }
    ov = result["overall"]
    for i, a in enumerate(tasks):
        for j in range(i + 1, len(tasks)):
            result["pairs"].append({"a": a, "b": tasks[j], **{m: ov[m][i, j] for m in ("cosine", "mean_batch_cosine", "conflict_frequency", "magnitude_similarity")}})
    matrix_heatmaps(
        [
            ("cosine of accumulated task gradients", ov["cosine"].tolist(), (-1.0, 1.0), "RdBu"),
            (f"conflict frequency (cos < 0, {batches} batches)", ov["conflict_frequency"].tolist(), (0.0, 1.0), "Reds"),
        ],
        tasks,
        out_dir / "gradconf.png",
    )
    result["figures"] = [str(out_dir / "gradconf.png")]
    result["markdown"] = pairs_table(result)
    write_json(result, out_dir / "gradconf.json")
    (out_dir / "gradconf.md").write_text(markdown(result))
    return result


def pairs_table(result: dict) -> str:
    """The overall statistics per task pair as one markdown table, for embedding in reports."""
    lines = ["| pair | cosine | mean batch cosine | conflict frequency | magnitude similarity |", "|---|---|---|---|---|"]
    for r in result["pairs"]:
        lines.append(f"| {r['a']} / {r['b']} | {fmt(r['cosine'], 3)} | {fmt(r['mean_batch_cosine'], 3)} | {fmt(r['conflict_frequency'], 3)} | {fmt(r['magnitude_similarity'], 3)} |")
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    tasks = result["tasks"]
    lines = [
        "# Gradient conflict between tasks",
        "",
        f"{result['batches']} fixed multi-task batches of {result['batch_size']} samples per task (seed {result['seed']}); "
        f"gradients of each task's loss on the shared trainable parameters ({', '.join(f'{c}: {n:,}' for c, n in result['components'].items())}; "
        f"excluded: {', '.join(result['excluded_components'])}).",
        "",
        "## Overall cosine similarity of the accumulated task gradients",
        "",
        "| | " + " | ".join(tasks) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    ov = result["overall"]
    for i, a in enumerate(tasks):
        lines.append(f"| {a} | " + " | ".join(fmt(ov["cosine"][i, j], 3) for j in range(len(tasks))) + " |")
    lines += ["", "## Task pairs", "", "| pair | scope | cosine | mean batch cosine | conflict frequency | magnitude similarity |", "|---|---|---|---|---|---|"]
    scopes = {"overall": ov, **result["per_component"]}
    for i, a in enumerate(tasks):
        for j in range(i + 1, len(tasks)):
            for scope, s in scopes.items():
                lines.append(
                    f"| {a} / {tasks[j]} | {scope} | {fmt(s['cosine'][i, j], 3)} | {fmt(s['mean_batch_cosine'][i, j], 3)} | "
                    f"{fmt(s['conflict_frequency'][i, j], 3)} | {fmt(s['magnitude_similarity'][i, j], 3)} |"
                )
    lines += ["", "Cosine < 0 means the two tasks pull the shared parameters in conflicting directions; a conflict frequency near 1 "
              "means they do so on almost every batch. A magnitude similarity far below 1 means one task's gradient dominates.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="socialfusion gradconf", description="Gradient conflict between tasks on the shared trainable parameters.")
    p.add_argument("args", nargs="*", help="CONFIG [overrides] (preset or YAML), or only overrides with --ckpt")
    p.add_argument("--ckpt", help="a checkpoint directory (e.g. RUN/checkpoints/last); its config is used")
    p.add_argument("--out", required=True)
    p.add_argument("--batches", type=int, default=8, help="K multi-task batches (default 8)")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    from ..config import ConfigError
    from ..runtime import resolve_device
    from ..config import apply_overrides, load_config

    try:
        if args.ckpt:
            from ..models.checkpoint import load_model

            model, config = load_model(args.ckpt)
            config = apply_overrides(config, args.args)
        else:
            if not args.args:
                p.error("give a CONFIG (preset or YAML) or --ckpt DIR")
            config = load_config(args.args[0], args.args[1:])
            from ..models.factory import build_model
            from ..tasks import tasks_from_config

            model = build_model(config.model, tasks=tasks_from_config(config))
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    model.to(resolve_device(args.device))
    result = run_gradconf(model, config, args.out, batches=args.batches, progress=not args.no_progress)
    print((Path(args.out) / "gradconf.md").read_text())
    return 0 if result else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

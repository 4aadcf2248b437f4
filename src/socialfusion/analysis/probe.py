"""`socialfusion probe`: linear probing of frozen encoder features (the paper's "decodability" analysis).

Encoders: the config's, a preset's, a Hugging Face id or local directory of a CLIP/SigLIP/DINOv2 vision model, or
`vlm:<id-or-path>` (the vision tower of a VLM). Each image is encoded once; the chosen hidden layers are pooled
(`cls` first token when the model has one, `mean` of patches, `box` mean over the subject's box cells, `pair` the
two people's box pools concatenated, relation only) and kept in memory, keyed by encoder and layer. Probes:
classification: standardised features -> LogisticRegression (lbfgs, softmax), C picked on the validation split by
the primary metric, scored with `task.evaluate` on the test split if configured, else on the validation split
(optimistic by the C selection); gaze: a linear patch-feature -> logit map, softmax over patches, KL to the Gaussian
target, Adam, logits upsampled bilinearly to 64 x 64 as in the gaze head, scored with `gazefollow_metrics`.
Every score carries a 95 % percentile bootstrap interval over the evaluation samples (`ci`, through the task's own
`resampler`, i.e. its official metric recomputed per resample); the task's chance level is drawn in the figure.
Outputs: probe.json, probe.md and probe.png (metric by layer, one line per encoder, one panel per task).
The probes have no seed to repeat over: logistic regression (lbfgs) is a convex fit with one optimum, and the gaze
probe trains full-batch up to 1024 samples, so the evaluation samples are the noise that matters.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm
from transformers import AutoConfig

from ..config import ConfigError, EncoderConfig, load_config, resolve_config_path, split_list
from ..core.images import load_image
from ..core.intervals import bootstrap_intervals, interval_info
from ..core.results import ProbeResult
from ..core.schema import DataError
from ..data.pipeline import build_task_datasets, narrow_to_tasks
from ..data.skips import SkipReport
from ..errors import add_console_options
from ..models.box_mask import box_cell_mask
from ..models.encoder import VisionEncoder
from ..models.loading import resolve_pretrained
from ..runtime import autocast, resolve_device
from ..tasks import tasks_from_config
from ..tasks.gaze import gaze_target
from .plots import probe_caption, probe_figure, probe_markdown, probe_table

POOLS = ("cls", "mean", "box", "pair")
DEFAULT_LAYERS = (-1, -2, -4, -8, -12, -16, -24)
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


# ------------------------------------------------------------------------------------------- probes (pure)
def full_probs(clf, X: np.ndarray, num_classes: int) -> np.ndarray:
    """predict_proba spread over all classes (classes absent from the training set get probability 0)."""
    probs = np.zeros((len(X), num_classes))
    probs[:, clf.classes_.astype(int)] = clf.predict_proba(X)
    return probs


def fit_linear_probe(
    X_train,
    y_train,
    X_val,
    y_val,
    num_classes: int,
    score_fn=None,
    primary: str = "accuracy",
    Cs=C_GRID,
    X_test=None,
    y_test=None,
    seed: int = 0,
) -> dict:
    """Standardise, fit multinomial logistic regression for each C, keep the C best on (X_val, y_val).

    `score_fn(labels, probs) -> metrics dict` (default: accuracy) and `primary` its key to maximise. Returns
    {"C", "val" (metrics), "test" (metrics or None), "per_C" ({C: val primary}), "val_probs", "test_probs" (the
    chosen probe's class probabilities, for intervals; None without a test split)}.
    """
    score_fn = score_fn or (lambda y, p: {"accuracy": float(np.mean(np.asarray(p).argmax(1) == np.asarray(y)))})
    X_train, X_val = np.asarray(X_train, dtype=np.float64), np.asarray(X_val, dtype=np.float64)
    y_train = np.asarray(y_train, dtype=np.int64)
    scaler = StandardScaler().fit(X_train)
    Xt, Xv = scaler.transform(X_train), scaler.transform(X_val)
    Xs = scaler.transform(np.asarray(X_test, dtype=np.float64)) if X_test is not None else None
    if len(np.unique(y_train)) < 2:  # nothing to separate: predict the one class seen
        return _one_class_probe(int(y_train[0]), num_classes, score_fn, Xv, y_val, Xs, y_test)
    best, per_c = None, {}
    # ascending C with warm starts: each fit starts from the more regularised solution (same optimum, fewer steps)
    clf = LogisticRegression(max_iter=1000, random_state=seed, warm_start=True)
    for C in sorted(Cs):
        clf.set_params(C=C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", message="The number of unique classes")  # small probe sets, many classes
            clf.fit(Xt, y_train)
        val_probs = full_probs(clf, Xv, num_classes)
        metrics = score_fn(y_val, val_probs)
        value = metrics.get(primary, float("nan"))
        per_c[C] = value
        value = value if value is not None and math.isfinite(value) else -math.inf
        if best is None or value > best[0]:
            best = (value, C, copy.deepcopy(clf), metrics, val_probs)
    _, C, clf, val_metrics, val_probs = best
    test_probs = full_probs(clf, Xs, num_classes) if Xs is not None else None
    test = score_fn(y_test, test_probs) if Xs is not None else None
    return {"C": C, "val": val_metrics, "test": test, "per_C": per_c, "val_probs": val_probs, "test_probs": test_probs}


def _one_class_probe(label: int, num_classes: int, score_fn, Xv, y_val, Xs, y_test) -> dict:
    """`fit_linear_probe`'s result when the training split holds one class: LogisticRegression refuses to fit it."""
    const = lambda X: np.eye(num_classes)[np.full(len(X), label)]  # noqa: E731
    test = score_fn(y_test, const(Xs)) if Xs is not None else None
    return {
        "C": None,
        "val": score_fn(y_val, const(Xv)),
        "test": test,
        "per_C": {},
        "degenerate": "one class in the training split",
        "val_probs": const(Xv),
        "test_probs": const(Xs) if Xs is not None else None,
    }


def patch_targets(T64, grid: tuple[int, int]) -> torch.Tensor:
    """(N, 64, 64) target heatmaps -> (N, h*w) distributions over the patch cells (area-averaged, renormalised)."""
    T = torch.as_tensor(np.asarray(T64), dtype=torch.float32)
    t = F.adaptive_avg_pool2d(T[:, None], grid).flatten(1)
    return t / t.sum(1, keepdim=True).clamp_min(1e-12)


def heatmaps_from_logits(logits: torch.Tensor, grid: tuple[int, int], size: int = 64) -> torch.Tensor:
    """(N, h*w) patch logits -> (N, size, size) distributions: bilinear upsampling then softmax, as the gaze head."""
    up = F.interpolate(logits.view(-1, 1, *grid), size=(size, size), mode="bilinear", align_corners=False)
    return F.softmax(up.flatten(1), dim=-1).view(-1, size, size)


def fit_gaze_probe(
    F_train,
    T_train,
    grid: tuple[int, int],
    F_eval,
    steps: int = 300,
    lr: float = 0.05,
    weight_decay: float = 1e-4,
    batch: int = 1024,
    seed: int = 0,
) -> np.ndarray:
    """A linear map from each patch feature to a logit; returns the eval heatmaps (M, 64, 64).

    F_train (N, P, d) patch features (P = h*w), T_train (N, 64, 64) normalised Gaussian targets, F_eval (M, P, d).
    Training: softmax over the P patches, KL to the target area-averaged onto the patch grid, Adam on
    standardised features (minibatches above `batch` samples). Prediction: logits upsampled to 64 x 64, softmax.
    """
    g = torch.Generator().manual_seed(seed)
    X = torch.as_tensor(np.asarray(F_train))
    n, p, d = X.shape
    if p != grid[0] * grid[1]:
        raise ValueError(f"{p} patches for a {grid} grid")
    T = patch_targets(T_train, grid)
    mean, std = X.reshape(-1, d).float().mean(0), X.reshape(-1, d).float().std(0).clamp_min(1e-6)
    w = torch.zeros(d, requires_grad=True)  # a bias would cancel in the softmax
    opt = torch.optim.Adam([w], lr=lr, weight_decay=weight_decay)
    H = (T * torch.log(T.clamp_min(1e-12))).sum(1)  # -entropy of the targets: KL = H - sum(T * log p)
    Xs = (X.float() - mean) / std if n <= batch else None  # small sets: standardise once, full batch
    for _ in range(steps):
        idx = torch.arange(n) if Xs is not None else torch.randperm(n, generator=g)[:batch]
        xb = Xs if Xs is not None else (X[idx].float() - mean) / std
        loss = (H[idx] - (T[idx] * F.log_softmax(xb @ w, dim=-1)).sum(1)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        E = torch.as_tensor(np.asarray(F_eval))
        out = [
            heatmaps_from_logits(((E[i : i + batch].float() - mean) / std) @ w, grid) for i in range(0, len(E), batch)
        ]
    return torch.cat(out).numpy() if out else np.zeros((0, 64, 64), dtype=np.float32)


# ------------------------------------------------------------------------------------------- encoders
def resolve_encoder(spec: str | None, config):
    """(label, EncoderConfig) for the config's encoder (None/'config'), a preset or YAML, `vlm:<src>`, an HF id or
    path."""
    if spec in (None, "", "config"):
        enc = _encoder_of(config)
        return (enc.pretrained or f"{config.name}:random-init"), enc
    if spec.startswith("vlm:"):
        return spec, EncoderConfig(pretrained=spec[4:], from_vlm=True)
    try:
        resolve_config_path(spec)
    except ConfigError:  # not a preset or a YAML file: a hub id or a local model directory
        return spec, EncoderConfig(pretrained=spec, from_vlm=_looks_like_vlm(spec))
    return spec, _encoder_of(load_config(spec))


def _encoder_of(config) -> EncoderConfig:
    """A config's image encoder: SocialFusion's, or a VLM baseline's vision tower read out of its checkpoint."""
    if config.model.type != "vlm":
        return copy.deepcopy(config.model.encoder)
    if config.model.pretrained is None:
        raise ConfigError(f"{config.name}: a random-init VLM baseline has no vision tower to probe (set `pretrained`)")
    return EncoderConfig(pretrained=config.model.pretrained, from_vlm=True)


def _looks_like_vlm(source: str) -> bool:
    """A checkpoint whose config nests a vision_config but is not a CLIP/SigLIP dual encoder (e.g. LLaVA)."""
    try:
        cfg = AutoConfig.from_pretrained(resolve_pretrained(source))
    except Exception:  # noqa: BLE001 - unknown: let the encoder loader report the real problem
        return False
    return hasattr(cfg, "vision_config") and cfg.model_type not in ("clip", "siglip", "siglip2")


def hidden_states(encoder, pixel_values: torch.Tensor) -> tuple:
    """All hidden states (embeddings, layer 1, ..., layer L) of a VisionEncoder's model, as its forward reads them."""
    kwargs = {"output_hidden_states": True}
    if encoder.model_type in ("clip_vision_model", "siglip_vision_model", "dinov2") and encoder.cfg.image_size:
        kwargs["interpolate_pos_encoding"] = True
    return encoder.model(pixel_values=pixel_values, **kwargs).hidden_states


def valid_layers(layers, num_layers: int) -> tuple[list[int], list[int]]:
    """(kept, dropped): hidden-state indices must lie in [-(L+1), L] (index 0 / -(L+1) = the patch embeddings)."""
    kept = [x for x in dict.fromkeys(layers) if -(num_layers + 1) <= x <= num_layers]
    return kept, [x for x in layers if x not in kept]


def pool_one(hidden: torch.Tensor, num_patches: int, grid, boxes, pools, num_roles: int, gaze: bool) -> dict:
    """Pooled vectors of one sample from its image's (S, d) hidden state; `boxes` are (xyxy, role) pairs."""
    extra = hidden.shape[0] - num_patches
    patches = hidden[extra:]
    out = {}
    if gaze:
        out["patch"] = patches.to(torch.float16).numpy()
        return out

    def role_pool(role: int) -> torch.Tensor:
        rb = [b for b, r in boxes if r == role]
        if not rb:
            return patches.mean(0)
        mask = box_cell_mask(torch.tensor(rb, dtype=torch.float32), grid).any(0).flatten()
        return patches[mask].mean(0)

    for pool in pools:
        if pool == "cls" and extra >= 1:
            out["cls"] = hidden[0].numpy()
        elif pool == "mean":
            out["mean"] = patches.mean(0).numpy()
        elif pool == "box":
            out["box"] = role_pool(0).numpy()
        elif pool == "pair" and num_roles >= 2:
            out["pair"] = torch.cat([role_pool(0), role_pool(1)]).numpy()
    return out


@torch.no_grad()
def extract(
    encoder,
    samples: dict,
    tasks: dict,
    layers,
    pools,
    batch_size: int,
    device,
    precision: str,
    report,
    progress: bool = True,
) -> dict:
    """{(task, split): {"feats": {(layer, pool): array}, "samples": [the samples whose image loaded],
    "sizes": [(W, H)]}}. Each image is encoded once (images shared by several samples, e.g. PISC pairs, are not
    re-encoded)."""
    refs = _image_refs(samples, report)
    store, paths = {key: {} for key in samples}, list(refs)
    for start in tqdm(range(0, len(paths), batch_size), desc="probe features", disable=not progress, leave=False):
        images, ok = _load_images(paths[start : start + batch_size], refs, samples, report)
        if not images:
            continue
        with autocast(device, precision):
            hs = hidden_states(encoder, encoder.preprocess(images).to(device))
        chosen = {layer: hs[layer].float().cpu() for layer in layers}
        for b, path in enumerate(ok):
            for key, i in refs[path]:
                sample_layers = {layer: chosen[layer][b] for layer in layers}
                feats = _sample_features(encoder, sample_layers, samples[key][i], tasks[key[0]], pools)
                store[key][i] = (feats, images[b].size)
    return _stacked(store, samples)


def _image_refs(samples: dict, report) -> dict:
    """image path -> the (key, index) of every sample on it, so that an image shared by samples is encoded once."""
    refs: dict = {}
    for key, items in samples.items():
        for i, s in enumerate(items):
            try:
                refs.setdefault(s.image_path(), []).append((key, i))
            except DataError as err:
                report.skip(f"{s.image} (sample {s.id})", str(err).split(": ")[-1])
    return refs


def _load_images(paths: list, refs: dict, samples: dict, report) -> tuple[list, list]:
    """(images, their paths) of the paths whose image decodes; an unusable one is reported as its first sample."""
    images, ok = [], []
    for path in paths:
        try:
            images.append(load_image(path))
            ok.append(path)
        except DataError as err:
            key, i = refs[path][0]
            report.skip(
                f"{samples[key][i].image} (sample {samples[key][i].id})",
                f"unusable image: {str(err).split(': ')[-1]}",
            )
    return images, ok


def _sample_features(encoder, sample_layers: dict, sample, task, pools) -> dict:
    """{(layer, pool): vector} of one sample from its image's hidden state at each layer."""
    boxes = [(list(x.xyxy), x.role) for x in sample.boxes]
    return {
        (layer, pool): v
        for layer, hidden in sample_layers.items()
        for pool, v in pool_one(
            hidden, encoder.num_patches, encoder.grid, boxes, pools, task.num_roles, task.readout == "heatmap"
        ).items()
    }


def _stacked(store: dict, samples: dict) -> dict:
    """`extract`'s result from the per-sample features, in sample order (the samples whose image failed left out)."""
    out = {}
    for key, found in store.items():
        keep = sorted(found)
        feats = {k: np.stack([found[i][0][k] for i in keep]) for k in (found[keep[0]][0] if keep else {})}
        out[key] = {"feats": feats, "samples": [samples[key][i] for i in keep], "sizes": [found[i][1] for i in keep]}
    return out


# ------------------------------------------------------------------------------------------- the run
def _cap(value: int | None, limit: int | None) -> int | None:
    return min(value or limit, limit) if limit else value


def _scalars(metrics: dict | None) -> dict:
    return {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _with_ci(task, out: dict, samples: list, predictions: list, metrics: dict | None, resamples: int) -> dict:
    """The probe's result with its scalar metrics and their bootstrap intervals (`ci`: {metric: [lo, hi]}), and the
    primary metric's interval as `ci` of the row."""
    scalars = _scalars(metrics)
    ci = {}
    if scalars and samples and resamples > 0:
        bounds = bootstrap_intervals(task.resampler(samples, predictions), len(samples), resamples)
        ci = {k: bounds.get(k) for k in scalars if k in bounds}
    return {**out, "metrics": scalars, "metric_ci": ci, "ci": ci.get(task.primary_metric)}


def _probe_task(
    task,
    data: dict,
    splits: dict,
    layer: int,
    pool: str,
    grid,
    gaze_sigma: float,
    gaze_steps: int,
    seed: int,
    resamples: int = 1000,
) -> dict | None:
    """One probe; `data` maps split name -> extracted entry, `splits` role ('train', 'val', 'test') -> split name."""
    k = (layer, pool)
    tr, va = data[splits["train"]], data[splits["val"]]
    te = data.get(splits["test"]) if splits.get("test") else None
    te = te if te is not None and k in te["feats"] else None  # report on the test split when there is one
    if k not in tr["feats"] or k not in va["feats"]:
        return None
    out = {"split": splits["test"] if te is not None else splits["val"], "C": None}
    # a probe per readout: a heatmap task's probe maps each patch to a logit, an answer task's is a linear
    # classifier on a pooled vector; each is scored with the task's own metrics
    if task.readout == "heatmap":
        return _gaze_probe_task(
            task, out, tr, te if te is not None else va, k, grid, gaze_sigma, gaze_steps, seed, resamples
        )
    return _linear_probe_task(task, out, tr, va, te, k, seed, resamples)


def _gaze_probe_task(
    task, out: dict, tr: dict, ev: dict, k: tuple, grid, gaze_sigma: float, gaze_steps: int, seed: int, resamples: int
) -> dict | None:
    """The heatmap probe, trained on the samples whose gaze target is in the frame (the others have no heatmap)."""
    use = [j for j, s in enumerate(tr["samples"]) if s.inout == 1 and s.points]
    if not use:
        return None
    targets = np.stack([gaze_target(tr["samples"][j].points, sigma=gaze_sigma).numpy() for j in use])
    heat = fit_gaze_probe(tr["feats"][k][use], targets, grid, ev["feats"][k], steps=gaze_steps, seed=seed)
    predictions = [{"heatmap": h, "image_size": size} for h, size in zip(heat, ev["sizes"])]
    metrics = task.evaluate(ev["samples"], predictions)
    return _with_ci(
        task,
        {**out, "n_train": len(use), "n_eval": len(ev["samples"])},
        ev["samples"],
        predictions,
        metrics,
        resamples,
    )


def _linear_probe_task(task, out: dict, tr: dict, va: dict, te: dict | None, k: tuple, seed: int, resamples: int):
    """The classifier probe: C selected on the validation split, scored on the test split when there is one."""
    labels = lambda e: np.array([s.label for s in e["samples"]])  # noqa: E731
    res = fit_linear_probe(
        tr["feats"][k],
        labels(tr),
        va["feats"][k],
        labels(va),
        task.num_classes,
        score_fn=task.metrics,
        primary=task.primary_metric,
        X_test=te["feats"][k] if te is not None else None,
        y_test=labels(te) if te is not None else None,
        seed=seed,
    )
    ev, probs = (te, res["test_probs"]) if te is not None else (va, res["val_probs"])
    predictions = [{"probs": p, "index": int(p.argmax())} for p in probs]
    return _with_ci(
        task,
        {
            **out,
            "C": res["C"],
            "selection_value": res["per_C"].get(res["C"]),
            "n_train": len(tr["samples"]),
            "n_eval": len(ev["samples"]),
        },
        ev["samples"],
        predictions,
        res["test"] if te is not None else res["val"],
        resamples,
    )


def run_probe(
    config,
    out_dir,
    encoders=None,
    layers=None,
    pools=None,
    progress: bool = True,
    device: str = "auto",
    max_samples: int | None = None,
    tasks=None,
    gaze_steps: int = 300,
    gaze_max_train: int | None = 2000,
    resamples: int = 1000,
) -> ProbeResult:
    """Probe every (encoder, layer, task, pool); write probe.json, probe.md, probe.png; return the result.
    Each score has a 95 % bootstrap interval over the evaluation samples (`resamples` resamples; 0: none).

    `max_samples` caps every task's splits; `gaze_max_train` the gaze training set (its patch features are kept for
    every layer: N x h*w x d float16 each)."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pools = list(pools or POOLS)
    unknown = sorted(set(pools) - set(POOLS))
    if unknown:
        raise ValueError(f"unknown pooling {unknown}; choose from {list(POOLS)}")
    data = _probe_data(config, tasks, max_samples, gaze_max_train)
    dev = resolve_device(device)
    specs = list(encoders) if encoders else [None]
    result = {
        "config": data.config.name,
        "pools": pools,
        "encoders": {},
        "results": [],
        "n_samples": {f"{t}/{s}": len(v) for (t, s), v in data.samples.items()},
    }
    for spec in specs:
        _probe_encoder(data, spec, result, layers, pools, dev, progress, gaze_steps, resamples)
    return _write_probe(result, data, out_dir, resamples, t0)


@dataclass
class _ProbeData:
    """What the probes of every encoder share: the narrowed config, its tasks, the samples of each (task, split)
    and the skip report that extraction adds to."""

    config: object
    task_defs: dict
    report: SkipReport
    split_names: dict  # task -> {"train", "val", "test"} -> split name
    samples: dict  # (task, split name) -> samples
    task_names: list  # the tasks with samples in both their train and val splits


def _probe_data(config, tasks, max_samples: int | None, gaze_max_train: int | None) -> _ProbeData:
    """The config narrowed to `tasks` with the sample caps applied, and every split's samples (no inputs built:
    extraction encodes the images itself)."""
    config = copy.deepcopy(config)
    if tasks:
        config.data.tasks = [td for td in config.data.tasks if td.task in tasks]
    task_defs = tasks_from_config(config)
    for td in config.data.tasks:
        gaze_cap = gaze_max_train if task_defs[td.task].readout == "heatmap" else None
        td.max_train_samples = _cap(_cap(td.max_train_samples, max_samples), gaze_cap)
        td.max_eval_samples = _cap(td.max_eval_samples, max_samples)
    report = SkipReport(config.data.on_bad_sample)
    split_names = {
        td.task: {"train": td.train_split, "val": td.val_split, "test": td.test_split} for td in config.data.tasks
    }
    samples = {}
    for which in ("train", "val", "test"):
        for name, ds in build_task_datasets(config, task_defs, which, lambda s: {}, report).items():
            samples[(name, split_names[name][which])] = ds.samples
    task_names = [
        td.task
        for td in config.data.tasks
        if (td.task, td.train_split) in samples and (td.task, td.val_split) in samples
    ]
    return _ProbeData(config, task_defs, report, split_names, samples, task_names)


def _probe_encoder(
    data: _ProbeData, spec, result: dict, layers, pools, dev, progress: bool, gaze_steps: int, resamples: int
) -> None:
    """One encoder into `result`: its features extracted once, then every task probed at each layer and pooling
    (the encoder and its features are freed on return, before the next encoder loads)."""
    config = data.config
    label, enc_cfg = resolve_encoder(spec, config)
    while label in result["encoders"]:
        label += "'"
    torch.manual_seed(config.model.seed)  # a random-init encoder is then the one the model would build
    encoder = VisionEncoder(enc_cfg).to(dev).eval()
    enc_layers, dropped = valid_layers(layers if layers else [*DEFAULT_LAYERS, enc_cfg.layer], encoder.num_layers)
    if not layers:
        enc_layers = sorted(enc_layers, reverse=True)
    if progress:
        print(f"[probe] {label}: layers {enc_layers}, grid {encoder.grid}, d={encoder.hidden_size}", file=sys.stderr)
    feats = extract(
        encoder,
        data.samples,
        data.task_defs,
        enc_layers,
        pools,
        config.train.eval_batch_size,
        dev,
        config.train.precision,
        data.report,
        progress,
    )
    result["encoders"][label] = {
        "spec": spec,
        "identity": encoder.identity(),
        "num_layers": encoder.num_layers,
        "grid": list(encoder.grid),
        "hidden_size": encoder.hidden_size,
        "layers": enc_layers,
        "skipped_layers": dropped,
    }
    for task_name in data.task_names:
        rows = _probe_rows(data, task_name, feats, label, enc_layers, pools, encoder.grid, gaze_steps, resamples)
        result["results"].extend(rows)


def _probe_rows(
    data: _ProbeData, task_name: str, feats: dict, label: str, enc_layers, pools, grid, gaze_steps: int, resamples: int
) -> list[dict]:
    """The result rows of one task and encoder: a heatmap task is probed on the patches, the others per pooling."""
    config = data.config
    task = data.task_defs[task_name]
    split_feats = {s: feats[(task_name, s)] for (t, s) in data.samples if t == task_name}
    rows = []
    for layer in enc_layers:
        for pool in ["patch"] if task.readout == "heatmap" else pools:
            res = _probe_task(
                task,
                split_feats,
                data.split_names[task_name],
                layer,
                pool,
                grid,
                config.model.gaze.sigma,
                gaze_steps,
                config.train.seed,
                resamples,
            )
            if res is None:
                continue
            rows.append(
                {
                    "encoder": label,
                    "layer": layer,
                    "task": task_name,
                    "pool": pool,
                    "metric": task.primary_metric,
                    "value": res["metrics"].get(task.primary_metric),
                    **res,
                }
            )
    return rows


def _write_probe(result: dict, data: _ProbeData, out_dir: Path, resamples: int, t0: float) -> ProbeResult:
    """The run-wide fields (skips, intervals, chance levels, figure, tables), then probe.json and probe.md."""
    result["skips"] = data.report.to_dict()
    result["intervals"] = interval_info(resamples) if resamples > 0 else None
    eval_split = {r["task"]: r["split"] for r in result["results"]}
    result["chance"] = {
        t: data.task_defs[t].chance(data.samples[(t, split)])
        for t, split in eval_split.items()
        if data.samples.get((t, split))
    }
    probe_figure(result, out_dir / "probe.png", {name: task.probe_pools[0] for name, task in data.task_defs.items()})
    result["figures"] = [str(out_dir / "probe.png")]
    result["captions"] = {"probe": probe_caption(result)}
    result["markdown"] = probe_table(result)
    result["seconds"] = time.perf_counter() - t0
    typed = ProbeResult.from_dict(result, "probe.json")
    typed.save(out_dir / "probe.json")
    (out_dir / "probe.md").write_text(probe_markdown(result))
    return typed


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--layers" in argv[:-1]:  # `--layers -1,-4` would read as an unknown option to argparse: glue the value on
        i = argv.index("--layers")
        argv[i : i + 2] = [f"--layers={argv[i + 1]}"]
    p = add_probe_options(
        add_console_options(
            argparse.ArgumentParser(
                prog="socialfusion probe",
                description="Linear probes of frozen encoder features, per layer and pooling.",
            )
        )
    )
    args = p.parse_intermixed_args(argv)
    config = load_config(args.config, args.overrides)  # a ConfigError goes to the dispatcher (one line, exit 2)
    try:
        layers = split_list(args.layers, int)
    except ValueError as err:
        raise ConfigError(f"--layers {args.layers!r}: {err}") from err
    config = narrow_to_tasks(config, split_list(args.tasks))
    run_probe(
        config,
        args.out,
        encoders=args.encoders,
        layers=layers,
        pools=split_list(args.pools),
        progress=not args.no_progress,
        device=args.device,
        max_samples=args.max_samples,
        tasks=split_list(args.tasks),
        gaze_steps=args.gaze_steps,
        gaze_max_train=args.gaze_max_train or None,
        resamples=args.resamples,
    )
    print((Path(args.out) / "probe.md").read_text())
    return 0


def add_probe_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "config", help="preset name (tiny, default, paper) or YAML file (gives the data and the default encoder)"
    )
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value, anywhere on the line")
    p.add_argument("--out", required=True, help="output folder (probe.json, probe.md, plots)")
    p.add_argument(
        "--encoders",
        nargs="+",
        help="presets, YAML configs, HF ids or local paths (vlm:<id-or-path> "
        "for a VLM's vision tower); default: the config's",
    )
    p.add_argument(
        "--layers",
        help="comma-separated hidden-state indices, e.g. -1,-4,-8 (default: -1,-2,-4,-8,... within the depth)",
    )
    p.add_argument(
        "--pool", "--pools", dest="pools", help=f"comma-separated subset of {','.join(POOLS)} (default: all)"
    )
    p.add_argument("--tasks", help="comma-separated subset of the config's tasks")
    p.add_argument("--max-samples", type=int, help="at most N samples per task and split")
    p.add_argument("--limit", type=int, dest="max_samples", help=argparse.SUPPRESS)  # eval's former name for it
    p.add_argument("--gaze-steps", type=int, default=300, help="Adam steps of the gaze probe")
    p.add_argument("--gaze-max-train", type=int, default=2000, help="cap on gaze training samples (0: none)")
    p.add_argument(
        "--resamples",
        type=int,
        default=1000,
        help="bootstrap resamples of the evaluation samples for the intervals (0: none)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (the best available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

#!/usr/bin/env python
"""How far an answer moves when the same image and boxes are computed in another grouping, in fp32 and in bf16:
the measurements behind the batching promise (docs/USAGE.md) and `socialfusion.numerics.TOLERANCES`.

    nice -n 10 .venv/bin/python benchmarks/batching.py --json benchmarks/results/batching.json
    .venv/bin/python benchmarks/batching.py --smoke      # tiny preset, two images: does it still run? (tested)

Per preset (`tiny`, random init; `default`, the bundled SmolLM2-135M and DINOv2 ViT-S/14 with an untrained
connector) and precision, on N random images that each carry a face, head, hand and two person boxes (the box
embedding given random values, so boxes matter as they do once trained):

* `tasks`: all five tasks in one call (packed on their shared prefix) against each task alone;
* `images`: the N images in one call (one batch) against each image alone;
* `precision`: the bf16 answer against the fp32 one (context: how big bf16's own error is).

Reported: the largest absolute difference of a class (or in/out) probability and of a heatmap cell, and how many
answers changed their label. The machine's precision facts are recorded with them (`numerics.precision_facts`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from harness.stats import table_head
from PIL import Image

from socialfusion.api import SocialFusion
from socialfusion.config import split_list
from socialfusion.numerics import TOLERANCES, precision_facts


def _scene(seed: int) -> tuple[Image.Image, list[dict]]:
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(160, 400)), int(rng.integers(160, 400))
    face = sorted(rng.uniform(0.05, 0.5, 2)) + sorted(rng.uniform(0.05, 0.5, 2))
    kinds = [{"xyxy": [face[0], face[2], face[1] + 0.1, face[3] + 0.1], "kind": k} for k in ("face", "head")]
    kinds.append({"xyxy": [0.6, 0.55, 0.8, 0.9], "kind": "hand"})
    kinds += [{"xyxy": [0.0, 0.0, 0.5, 1.0], "kind": "person"}, {"xyxy": [0.5, 0.1, 1.0, 1.0], "kind": "person"}]
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)), kinds


def _answers(result: dict) -> dict[str, np.ndarray]:
    """task -> its probabilities (classes, or in/out) and, for gaze, 'gaze:heatmap' -> the heatmap."""
    out = {}
    for task, t in result["tasks"].items():
        if "probs" in t:
            out[task] = np.array(list(t["probs"].values()))
        elif "heatmap" in t:
            out[task] = np.array([t["inout"]])
            out[f"{task}:heatmap"] = np.asarray(t["heatmap"], dtype=np.float64)
    return out


def _labels(result: dict) -> dict[str, str]:
    return {task: t["label"] for task, t in result["tasks"].items() if "label" in t}


def _compare(pairs: list[tuple[dict, dict]]) -> dict:
    prob = heat = 0.0
    flips = total = 0
    for a, b in pairs:
        ra, rb = _answers(a), _answers(b)
        for key in ra:
            d = float(np.abs(ra[key] - rb[key]).max())
            heat, prob = (max(heat, d), prob) if key.endswith(":heatmap") else (heat, max(prob, d))
        la, lb = _labels(a), _labels(b)
        flips += sum(la[t] != lb[t] for t in la)
        total += len(la)
    return {"max_probability_diff": prob, "max_heatmap_cell_diff": heat, "label_changes": flips, "labels": total}


def _load(preset: str) -> SocialFusion:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained preset's warning: the numerics are what is measured
        base = SocialFusion.from_pretrained(preset, device="cpu")
    with torch.no_grad():
        emb = base.model.box_embed.embedding
        emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(1)) * emb.shape[-1] ** -0.5 * 4)
    return base


def measure(preset: str, n_images: int) -> dict:
    base = _load(preset)
    scenes = [_scene(seed) for seed in range(n_images)]
    images, boxes = [s[0] for s in scenes], [s[1] for s in scenes]
    out, together_by = {"preset": preset, "images": n_images}, {}
    for precision in ("fp32", "bf16"):
        sf = SocialFusion(base.model, base.config, device="cpu", precision=precision)
        t0 = time.perf_counter()
        alone = [sf.predict(im, boxes=b, tasks="all")[0] for im, b in zip(images, boxes)]
        single_task = []
        for im, b, full in zip(images, boxes, alone):
            merged = {"tasks": {}}
            for task in full["tasks"]:
                merged["tasks"].update(sf.predict(im, boxes=b, tasks=[task])[0]["tasks"])
            single_task.append(merged)
        together = sf.predict(images, boxes=boxes, tasks="all", batch_size=n_images)
        together_by[precision] = together
        out[precision] = {
            "tasks": _compare(list(zip(alone, single_task))),
            "images": _compare(list(zip(alone, together))),
            "seconds": round(time.perf_counter() - t0, 1),
            "tolerance": TOLERANCES[precision].__dict__,
        }
    out["precision"] = _compare(list(zip(together_by["fp32"], together_by["bf16"])))
    return out


def render(report: dict) -> str:
    f = report["machine"]
    lines = [
        f"Machine: {f['cpu']} ({f['cpu_cores']} cores), native bf16: {f['cpu_native_bf16']} {f['cpu_bf16_flags']}, "
        f"precision auto -> {f['cpu_auto_precision']}; torch {torch.__version__}.",
        "",
        *table_head(
            "preset",
            "precision",
            "grouping",
            "max prob diff",
            "max heatmap cell diff",
            "label changes",
            "tolerance (prob, cell)",
        ),
    ]
    for row in report["rows"]:
        for precision in ("fp32", "bf16"):
            tol = row[precision]["tolerance"]
            for grouping in ("tasks", "images"):
                c = row[precision][grouping]
                lines.append(
                    f"| {row['preset']} | {precision} | {grouping} | {c['max_probability_diff']:.2e} | "
                    f"{c['max_heatmap_cell_diff']:.2e} | {c['label_changes']}/{c['labels']} "
                    f"| {tol['probability']:g}, {tol['heatmap']:g} |"
                )
        c = row["precision"]
        lines.append(
            f"| {row['preset']} | bf16 vs fp32 | | {c['max_probability_diff']:.2e} | "
            f"{c['max_heatmap_cell_diff']:.2e} | {c['label_changes']}/{c['labels']} | |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=8, help="random scenes per preset")
    p.add_argument("--presets", default="tiny,default")
    p.add_argument(
        "--smoke", action="store_true", help="tiny preset, 2 images (a check that it runs, not a measurement)"
    )
    p.add_argument("--json", help="also write the report here (and the table next to it as .md)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    presets, n = (["tiny"], 2) if args.smoke else (split_list(args.presets) or [], args.images)
    report = {
        "command": " ".join(["benchmarks/batching.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": precision_facts(),
        "torch": torch.__version__,
        "rows": [measure(preset, n) for preset in presets],
    }
    table = render(report)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
        Path(args.json).with_suffix(".md").write_text(f"Run: `{report['command']}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

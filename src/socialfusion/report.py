"""The demo report: report.md and a self-contained report.html (figures embedded) from the demo's results."""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from pathlib import Path

import numpy as np


def chance_levels(val_sets: dict) -> dict[str, dict]:
    """What a model that ignores the image scores on each validation split, for the primary metric.

    Accuracy: always predicting the majority class. mAP: random scores give each class an AP equal to its
    prevalence, so chance is the mean prevalence (LAM's two-class mAP: 0.5). Gaze AUC: 0.5.
    """
    out = {}
    for name, ds in val_sets.items():
        task = ds.task
        if task.kind == "heatmap":
            out[name] = {"metric": "auc", "chance": 0.5}
            continue
        counts = Counter(s.label for s in ds.samples)
        n = sum(counts.values())
        if task.primary_metric == "accuracy":
            out[name] = {"metric": "accuracy", "chance": max(counts.values()) / n}
        else:
            present = [c / n for c in counts.values()]
            out[name] = {"metric": "map", "chance": 0.5 if name == "lam" else float(np.mean(present + [0.0] * (task.num_classes - len(present))))}
    return out


def confusion_png(matrix, classes, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix, dtype=float)
    m = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = max(4, 0.28 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def gaze_examples_png(model, dataset, path: Path, k: int = 4) -> Path:
    """Predicted heatmaps over k validation images, with the head box, the annotated and predicted points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from .data.images import load_image
    from .data.pipeline import collate

    items = [dataset[i] for i in range(min(k, len(dataset)))]
    batch = collate(items, dataset.task)
    with torch.no_grad():
        heat = model.predict_heatmap(batch)["heatmap"].float().cpu().numpy()
    fig, axes = plt.subplots(1, len(items), figsize=(3.2 * len(items), 3.4))
    for ax, s, h in zip(np.atleast_1d(axes), batch["samples"], heat):
        img = load_image(s.image_path())
        w, hgt = img.size
        ax.imshow(img)
        ax.imshow(h, extent=(0, w, hgt, 0), alpha=0.5, cmap="jet")
        x1, y1, x2, y2 = s.boxes[0].xyxy
        ax.add_patch(plt.Rectangle((x1 * w, y1 * hgt), (x2 - x1) * w, (y2 - y1) * hgt, fill=False, color="white", lw=1.5))
        r, c = np.unravel_index(int(np.argmax(h)), h.shape)
        px, py = c / 64 * w, r / 64 * hgt
        ax.annotate("", xy=(px, py), xytext=((x1 + x2) / 2 * w, (y1 + y2) / 2 * hgt), arrowprops={"arrowstyle": "->", "color": "white", "lw": 1.5})
        for gx, gy in s.points or []:
            ax.plot(gx * w, gy * hgt, "g+", ms=10, mew=2)
        ax.plot(px, py, "rx", ms=10, mew=2)
        ax.set_axis_off()
    fig.suptitle("gaze: heatmap, head box, annotated (+) and predicted (x) target")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _img_tag(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" style="max-width:100%">'


def _md_to_html(md: str) -> str:
    """Markdown with tables and plain paragraphs (what our analyses write) -> HTML, one <table> per table."""
    parts, block = [], []
    for line in md.strip().splitlines() + [""]:
        if line.strip().startswith("|"):
            block.append(line)
            continue
        if block:
            parts.append(_md_to_html_table("\n".join(block)))
            block = []
        if line.strip():
            parts.append(f"<p>{html.escape(line.strip().lstrip('#').strip())}</p>")
    return "".join(parts)


def _md_to_html_table(md: str) -> str:
    rows = [r.strip().strip("|").split("|") for r in md.strip().splitlines() if r.strip().startswith("|")]
    rows = [r for r in rows if not all(set(c.strip()) <= set("-: ") for c in r)]
    if not rows:
        return f"<pre>{html.escape(md)}</pre>"
    head, *body = rows
    th = "".join(f"<th>{html.escape(c.strip())}</th>" for c in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><tr>{th}</tr>{trs}</table>"


def write_report(out: Path, config, model, transfer: dict, probe: dict, gradconf: dict, data_summary: dict, timings: dict) -> dict:
    from .config import dump_yaml
    from .data.pipeline import build_task_datasets, pixel_input
    from .data.skips import SkipReport
    from .train.loop import input_function

    out = Path(out)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    report = SkipReport()
    cache = input_function(model, config, model.device)
    input_fn = cache.input_fn() if cache is not None else pixel_input(model.encoder)
    val_sets = build_task_datasets(config, model.tasks, "val", input_fn, report)
    chance = chance_levels(val_sets)
    joint = transfer["runs"]["socialfusion"]["joint"]["metrics"]
    rows, ok = [], True
    for name, ch in chance.items():
        value = (joint.get(name) or {}).get(ch["metric"], float("nan"))
        above = bool(value > ch["chance"])
        ok &= above
        rows.append({"task": name, "metric": ch["metric"], "value": value, "chance": ch["chance"], "above_chance": above, "n": (joint.get(name) or {}).get("n")})
    figures = {}
    for name, m in joint.items():
        if m and "confusion_matrix" in m:
            figures[f"confusion_{name}"] = confusion_png(m["confusion_matrix"], model.tasks[name].classes, figs / f"confusion_{name}.png", f"{name} (joint model, val)")
    if "gaze" in val_sets and len(val_sets["gaze"]):
        model.eval()
        figures["gaze_examples"] = gaze_examples_png(model, val_sets["gaze"], figs / "gaze_examples.png")
    for key, res in (("transfer", transfer), ("probe", probe), ("gradconf", gradconf)):
        for f in res.get("figures", []) if isinstance(res, dict) else []:
            figures[Path(f).stem] = Path(f)

    metric_md = "| task | primary metric | joint model (val) | chance | above chance | n |\n|---|---|---|---|---|---|\n"
    metric_md += "".join(f"| {r['task']} | {r['metric']} | {r['value']:.4f} | {r['chance']:.4f} | {'yes' if r['above_chance'] else 'NO'} | {r['n']} |\n" for r in rows)
    sections = [
        ("Per-task metrics of the joint five-task model (official metrics, held-out split)", metric_md),
        ("Transfer: single-task vs joint training", transfer.get("markdown", "")),
        ("Linear probes of the frozen encoder (decodability)", probe.get("markdown", "")),
        ("Gradient conflict between tasks (compatibility)", gradconf.get("markdown", "")),
        ("Synthetic benchmark", "```\n" + json.dumps(data_summary, indent=1, default=str) + "\n```\n"),
        ("Timings (seconds)", "| stage | s |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in timings.items())),
        ("Skipped records", report.summary() + "\n"),
    ]
    md = ["# SocialFusion demo report\n"]
    for title, body in sections:
        md.append(f"## {title}\n\n{body}\n")
    md.append("## Figures\n\n" + "".join(f"![{k}]({Path(v).relative_to(out) if Path(v).is_relative_to(out) else v})\n\n" for k, v in figures.items()))
    md.append("## Config\n\n```yaml\n" + dump_yaml(config) + "```\n")
    (out / "report.md").write_text("\n".join(md))

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>SocialFusion demo</title><style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:14px}pre{background:#f6f6f6;padding:.5em;overflow:auto}</style></head><body><h1>SocialFusion demo report</h1>"]
    for title, body in sections:
        inner = f"<pre>{html.escape(body.strip('`'))}</pre>" if body.lstrip().startswith("```") else _md_to_html(body)
        parts.append(f"<h2>{html.escape(title)}</h2>{inner}")
    parts.append("<h2>Figures</h2>" + "".join(f"<h3>{html.escape(k)}</h3>{_img_tag(v)}" for k, v in figures.items()))
    parts.append(f"<h2>Config</h2><pre>{html.escape(dump_yaml(config))}</pre></body></html>")
    (out / "report.html").write_text("".join(parts))
    summary = {"metrics": rows, "all_above_chance": ok, "timings": timings}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    text = "\n".join(f"{r['task']:<11} {r['metric']:<9} {r['value']:.4f}  (chance {r['chance']:.4f}) {'above' if r['above_chance'] else 'NOT above'} chance" for r in rows)
    return {**summary, "summary_text": text}

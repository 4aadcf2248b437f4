"""The demo report: report.md and a self-contained report.html (figures embedded) from the demo's results."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import torch


def chance_levels(val_sets: dict) -> dict[str, dict]:
    """What a model that ignores the image scores on each validation split, for the primary metric (`Task.chance`)."""
    return {name: {"metric": ds.task.primary_metric, "chance": ds.task.chance(ds.samples)} for name, ds in val_sets.items()}


def example_predictions(model, dataset, k: int = 4) -> tuple[list, list]:
    """The model's predictions on the first k samples of a dataset (the figures' examples)."""
    from .data.pipeline import collate

    batch = collate([dataset[i] for i in range(min(k, len(dataset)))], dataset.task)
    if batch is None:
        return [], []
    model.eval()
    with torch.no_grad():
        predictions = model.predict(batch)[dataset.task.name]
    return batch["samples"], predictions


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
    from .data.pipeline import build_task_datasets
    from .data.skips import SkipReport
    from .features.inputs import sample_inputs

    out = Path(out)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    report = SkipReport()
    _, input_fn = sample_inputs(model, config)
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
    for name, ds in val_sets.items():
        samples, predictions = example_predictions(model, ds)
        figures.update(ds.task.figures(joint.get(name), samples, predictions, figs))
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

"""Figures and tables of the analyses: matplotlib with the non-interactive Agg backend (files only, no windows),
and the markdown tables of the probe report.

Every figure shows its numbers' 95 % intervals (error bars, or "[lo, hi]" under a cell's value), a dashed chance
line where the metric has a chance level, and comes with a caption (`*_caption`) that the report prints under it.
Labels are words, never emoji (the report's browser may lack an emoji font).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..core.intervals import fmt_ci
from . import fmt

POSITIVE = "#2e9e44"  # green: positive transfer
NEGATIVE = "#d1392b"  # red: negative transfer
NEUTRAL = "#8c8c8c"
HATCHES = ("", "//", "..", "xx", "\\\\", "++")


def pyplot():
    """matplotlib.pyplot on the Agg backend (safe on servers and in tests)."""
    # imported here, not at the top: the backend must be chosen before pyplot's first import, and the commands and
    # the server that import the analyses without drawing a figure do not pay for loading matplotlib
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def save(fig, path: str | Path, dpi: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def _err(value: float, ci, scale: float = 1.0):
    """Error-bar half-lengths [[below], [above]] of `value` for an interval (None: no bar)."""
    if not ci or ci[0] is None or ci[1] is None:
        return None
    return [[max(0.0, scale * (value - ci[0]))], [max(0.0, scale * (ci[1] - value))]]


def transfer_bars(
    tasks: Sequence[str], families: dict[str, dict[str, dict | float | None]], path: str | Path, title: str = ""
) -> Path:
    """Figure-1-style bars: per task, the relative change (%) of the primary metric, joint vs single-task.

    `families` maps a model family to {task: transfer row} (`analysis.transfer.transfer_row`: "relative",
    "relative_ci", "transfer") or {task: relative change}; one bar per family and task with its 95 % interval as
    an error bar, green for positive transfer, red for negative, grey within noise (the interval contains zero),
    hatch per family; a missing value is drawn as an empty slot marked "n/a".
    """
    plt = pyplot()
    names = list(families)
    n = max(1, len(names))
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(tasks) * max(1, n) ** 0.5 + 1.5), 3.8))
    extent = [0.0]
    for j, fam in enumerate(names):
        for i, task in enumerate(tasks):
            row = families[fam].get(task)
            row = row if isinstance(row, dict) else {"relative": row}
            extent += _transfer_bar(ax, i - 0.4 + width * (j + 0.5), width, HATCHES[j % len(HATCHES)], row)
    ax.axhline(0, color="black", linewidth=0.8)
    lo, hi = min(extent), max(extent)
    pad = 0.15 * ((hi - lo) or 1.0)  # room for the value labels on both sides of zero
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlim(-0.6, len(tasks) - 0.4)
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks)
    ax.set_ylabel("relative change, joint vs single (%)")
    ax.set_title(title or "Transfer: joint multi-task vs single-task training")
    ax.legend(handles=_transfer_legend(names), fontsize=7, loc="best")
    return save(fig, path)


def _transfer_bar(ax, x: float, width: float, hatch: str, row: dict) -> list[float]:
    """One family's bar for one task, coloured by its transfer call, with its value written at the end of the error
    bar; returns the bar's [top, bottom] for the axis limits ([] when the value is missing: "n/a")."""
    rel, ci = row.get("relative"), row.get("relative_ci")
    if not _finite(rel):
        ax.text(x, 0, "n/a", ha="center", va="bottom", fontsize=7, color=NEUTRAL, rotation=90)
        return []
    pct = 100.0 * rel
    call = row.get("transfer")
    color = POSITIVE if call == "positive" else NEGATIVE if call == "negative" else NEUTRAL
    err = _err(rel, ci, 100.0)
    ax.bar(
        x,
        pct,
        width * 0.92,
        color=color,
        hatch=hatch,
        edgecolor="black",
        linewidth=0.6,
        yerr=err,
        capsize=3,
        error_kw={"elinewidth": 0.8},
    )
    top = pct + (err[1][0] if err else 0.0)
    bottom = pct - (err[0][0] if err else 0.0)
    ax.text(
        x,
        top if pct >= 0 else bottom,
        f"{pct:+.1f}",
        ha="center",
        va="bottom" if pct >= 0 else "top",
        fontsize=7,
    )
    return [top, bottom]


def _transfer_legend(names: list[str]) -> list:
    """The colours' meanings, and with several families the hatch of each."""
    # imported here, not at the top: matplotlib loads only when a figure is drawn, after `pyplot()` chose Agg
    from matplotlib.patches import Patch

    handles = [
        Patch(facecolor=POSITIVE, label="positive transfer"),
        Patch(facecolor=NEGATIVE, label="negative transfer"),
        Patch(facecolor=NEUTRAL, label="within noise"),
    ]
    if len(names) > 1:
        handles += [
            Patch(facecolor="white", edgecolor="black", hatch=HATCHES[j % len(HATCHES)], label=fam)
            for j, fam in enumerate(names)
        ]
    return handles


def transfer_caption(interval: str) -> str:
    return (
        "Relative change of each task's primary metric, joint five-task model vs the single-task model, per model "
        f"family. Error bars: 95 % intervals ({interval}). Green: positive transfer, red: negative transfer (the "
        "interval excludes zero); grey: within noise (the interval contains zero)."
    )


def matrix_heatmaps(panels: list[tuple], labels: Sequence[str], path: str | Path) -> Path:
    """Square heatmaps with each cell's value written in it, and its 95 % interval under it when given.

    `panels` is a list of (title, matrix, (vmin, vmax), colormap name[, intervals]), `intervals` a matrix of
    [lo, hi] (or None) per cell; `labels` names rows and columns.
    """
    plt = pyplot()
    k = len(labels)
    size = 1.0 + 0.65 * k
    fig, axes = plt.subplots(1, len(panels), figsize=(size * len(panels) * 1.25 + 1.0, size * 1.1), squeeze=False)
    for ax, (title, matrix, (vmin, vmax), cmap, *rest) in zip(axes[0], panels):
        intervals = rest[0] if rest else None
        m = np.array([[np.nan if not _finite(v) else float(v) for v in row] for row in matrix], dtype=float)
        im = ax.imshow(m, vmin=vmin, vmax=vmax, cmap=cmap)
        for r in range(k):
            for c in range(k):
                v = m[r, c]
                text = "-" if not math.isfinite(v) else f"{v:.2f}"
                ci = intervals[r][c] if intervals is not None and r != c else None
                if math.isfinite(v) and ci and ci[0] is not None and ci[1] is not None:
                    text += f"\n[{ci[0]:.2f}, {ci[1]:.2f}]"
                # white text where the colour is dark (the far ends of the scale)
                strong = math.isfinite(v) and abs((v - vmin) / max(1e-12, vmax - vmin) - (0.5 if vmin < 0 else 0.0)) > (
                    0.35 if vmin < 0 else 0.7
                )
                ax.text(
                    c,
                    r,
                    text,
                    ha="center",
                    va="center",
                    fontsize=8 if "\n" not in text else 6,
                    color="white" if strong else "black",
                )
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels(labels, rotation=45, ha="right")
        ax.set_yticklabels(labels)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return save(fig, path)


def metric_by_layer(
    panels: dict[str, dict[str, list[tuple]]],
    ylabels: dict[str, str],
    path: str | Path,
    line_labels: dict[str, dict[str, str]] | None = None,
    chance: dict[str, float | None] | None = None,
) -> Path:
    """One panel per task; in each, one line per encoder of the metric against the layer index.

    `panels` maps task -> {encoder: [(layer, value[, [lo, hi]]), ...]} (the interval drawn as error bars);
    `ylabels` task -> metric name; `line_labels` optionally task -> {encoder: legend text}; `chance` task -> the
    metric's chance level (a dashed line).
    """
    plt = pyplot()
    tasks = list(panels)
    cols = min(3, max(1, len(tasks)))
    rows = max(1, math.ceil(len(tasks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for i, task in enumerate(tasks):
        ax = axes[i // cols][i % cols]
        xs = sorted({p[0] for points in panels[task].values() for p in points})
        if xs:
            ax.set_xticks(xs)
        for enc, points in panels[task].items():
            pts = sorted((p[0], p[1], p[2] if len(p) > 2 else None) for p in points if _finite(p[1]))
            if not pts:
                continue
            label = (line_labels or {}).get(task, {}).get(enc, enc)
            errs = [_err(v, ci) or [[0.0], [0.0]] for _, v, ci in pts]
            ax.errorbar(
                [p[0] for p in pts],
                [p[1] for p in pts],
                yerr=[[e[0][0] for e in errs], [e[1][0] for e in errs]],
                marker="o",
                capsize=3,
                label=label,
            )
        level = (chance or {}).get(task)
        if _finite(level):
            ax.axhline(level, color="black", linestyle="dashed", linewidth=1.0, label="chance")
        ax.set_title(task)
        ax.set_xlabel("encoder layer (hidden-state index)")
        ax.set_ylabel(ylabels.get(task, "metric"))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    for j in range(len(tasks), rows * cols):
        axes[j // cols][j % cols].axis("off")
    return save(fig, path)


def probe_figure(result: dict, path: str | Path, preferred: dict[str, str]) -> Path:
    """probe.png: per task, the metric by layer with its 95 % interval, one line per encoder (its preferred pooling
    for the task, else the first pooling probed: box for single-subject tasks, pair for relation, patch for gaze),
    and the task's chance level (`result["chance"]`) as a dashed line."""
    pools = result["pools"]
    panels, labels, ylabels = {}, {}, {}
    for r in result["results"]:
        ylabels[r["task"]] = r["metric"]
    for task_name in ylabels:
        panels[task_name], labels[task_name] = {}, {}
        for enc in result["encoders"]:
            have = [r for r in result["results"] if r["encoder"] == enc and r["task"] == task_name]
            avail = [p for p in [preferred.get(task_name, "box"), *pools] if any(r["pool"] == p for r in have)]
            if avail:
                panels[task_name][enc] = [(r["layer"], r["value"], r.get("ci")) for r in have if r["pool"] == avail[0]]
                labels[task_name][enc] = f"{enc} ({avail[0]})"
    return metric_by_layer(panels, ylabels, path, labels, chance=result.get("chance"))


def probe_caption(result: dict) -> str:
    return (
        "Linear-probe score of each task's primary metric on frozen encoder features, by encoder layer (one line per "
        "encoder and its pooling). Error bars: 95 % percentile bootstrap intervals over the evaluation samples; dashed "
        "line: the chance level (a probe that ignores the features)."
    )


def gradconf_caption(batches: int) -> str:
    return (
        f"Left: cosine similarity of the task gradients accumulated over {batches} fixed batches; right: fraction of "
        "batches in which two tasks' gradients conflict (cosine < 0). Bracketed under each value: its 95 % percentile "
        "bootstrap interval over the batches. The diagonal is 1 (left) and 0 (right) by definition."
    )


def probe_table(result: dict) -> str:
    """All probes in one markdown table (rows: encoder, task, layer; columns: poolings), for embedding in reports."""
    pools = list(dict.fromkeys(r["pool"] for r in result["results"]))
    lines = [
        "| encoder | task | metric | layer | " + " | ".join(pools) + " |",
        "|---|---|---|---|" + "---|" * len(pools),
    ]
    cells: dict = {}
    for r in result["results"]:
        cells.setdefault((r["encoder"], r["task"], r["metric"], r["layer"]), {})[r["pool"]] = (r["value"], r.get("ci"))
    for (enc, task, metric, layer), vals in cells.items():
        lines.append(
            f"| {enc} | {task} | {metric} | {layer} | "
            + " | ".join(fmt_ci(*vals.get(p, (None, None))) for p in pools)
            + " |"
        )
    return "\n".join(lines) + "\n"


def probe_markdown(result: dict) -> str:
    lines = [
        "# Linear probes of frozen encoder features",
        "",
        "Each cell: the task's primary metric of a linear probe on frozen features of that layer and pooling "
        "(classification: logistic regression, C chosen on the validation split; gaze: linear patch -> heatmap map), "
        "with its 95 % percentile bootstrap interval over the evaluation samples in brackets.",
        "",
    ]
    if result.get("chance"):
        lines += [
            "Chance level (a probe that ignores the features): "
            + ", ".join(f"{t} {fmt(v)}" for t, v in result["chance"].items())
            + ".",
            "",
        ]
    by_task: dict = {}
    for r in result["results"]:
        by_task.setdefault(r["task"], []).append(r)
    for task, rows in by_task.items():
        pools = list(dict.fromkeys(r["pool"] for r in rows))
        split = rows[0]["split"]
        lines += [
            f"## {task} ({rows[0]['metric']}, {split} split)",
            "",
            "| encoder | layer | " + " | ".join(pools) + " |",
            "|---|---|" + "---|" * len(pools),
        ]
        cells: dict = {}
        for r in rows:
            cells.setdefault((r["encoder"], r["layer"]), {})[r["pool"]] = (r["value"], r.get("ci"))
        for (enc, layer), vals in cells.items():
            lines.append(f"| {enc} | {layer} | " + " | ".join(fmt_ci(*vals.get(p, (None, None))) for p in pools) + " |")
        lines.append("")
    lines += [
        "## Best probe per encoder and task",
        "",
        "| encoder | task | metric | best | layer | pool |",
        "|---|---|---|---|---|---|",
    ]
    for enc in result["encoders"]:
        for task, rows in by_task.items():
            mine = [r for r in rows if r["encoder"] == enc and r["value"] is not None and math.isfinite(r["value"])]
            if mine:
                b = max(mine, key=lambda r: r["value"])
                lines.append(
                    f"| {enc} | {task} | {b['metric']} | "
                    f"{fmt_ci(b['value'], b.get('ci'))} | {b['layer']} | {b['pool']} |"
                )
    lines.append("")
    return "\n".join(lines)

"""The study report (`socialfusion study`, `demo`): report.md and a self-contained report.html (figures embedded),
opening with the question, what was run and the answer per task against the paper's claim."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

import torch

from .config import dump_yaml
from .core.intervals import fmt_ci
from .data.pipeline import build_task_datasets, collate
from .data.skips import SkipReport
from .features.inputs import sample_inputs


def chance_levels(val_sets: dict) -> dict[str, dict]:
    """What a model that ignores the image scores on each evaluated split, for the primary metric (`Task.chance`)."""
    return {
        name: {"metric": ds.task.primary_metric, "chance": ds.task.chance(ds.samples)} for name, ds in val_sets.items()
    }


def example_predictions(model, dataset, k: int = 4) -> tuple[list, list]:
    """The model's predictions on the first k samples of a dataset (the figures' examples)."""
    batch = collate([dataset[i] for i in range(min(k, len(dataset)))], dataset.task)
    if batch is None:
        return [], []
    model.eval()
    with torch.no_grad():
        predictions = model.predict(batch)[dataset.task.name]
    return batch["samples"], predictions


def metric_bars(rows: list[dict], path: Path, title: str) -> Path:
    """One bar per task: its primary metric with the 95 % interval as an error bar, the chance level as a dashed
    line across the bar and, where a row has one, the best linear probe of the frozen features as a dotted line
    (drawn here: the report sits beside the analyses, not above their plotting module)."""
    # imported here, not at the top: Agg must be chosen before pyplot's first import, and matplotlib loads only
    # when a report is drawn (analysis.plots.pyplot does the same; the report may not import the analyses)
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(rows) + 1.5), 3.4))
    for i, r in enumerate(rows):
        v, ci = r.get("value"), r.get("ci")
        if v is None or not math.isfinite(v):
            ax.text(i, 0, "n/a", ha="center", va="bottom", fontsize=7)
            continue
        err = [[max(0.0, v - ci[0])], [max(0.0, ci[1] - v)]] if ci else None
        ax.bar(i, v, 0.6, color="#4c72b0", yerr=err, capsize=4, error_kw={"elinewidth": 0.8})
        ax.text(i + 0.05, (ci[1] if ci else v) + 0.01, f"{v:.3f}", ha="left", va="bottom", fontsize=7)
        if r.get("chance") is not None and math.isfinite(r["chance"]):
            ax.hlines(r["chance"], i - 0.4, i + 0.4, colors="black", linestyles="dashed", linewidth=1.2)
        if r.get("probe") is not None and math.isfinite(r["probe"]):
            ax.hlines(r["probe"], i - 0.4, i + 0.4, colors="#c44e52", linestyles="dotted", linewidth=1.6)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['task']}\n({r['metric']})" for r in rows], fontsize=8)
    ax.set_ylim(0, 1.2)
    ax.set_ylabel("primary metric")
    ax.set_title(title)
    handles = [Line2D([0], [0], color="black", linestyle="dashed", label="chance level")]
    if any(r.get("probe") is not None for r in rows):
        handles.append(Line2D([0], [0], color="#c44e52", linestyle="dotted", label="best linear probe"))
    ax.legend(handles=handles, fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _above_words(row: dict) -> str:
    if row["clearly_above_chance"]:
        return "yes"
    return "within noise" if row["above_chance"] else "no"


def _task_figure_caption(name: str) -> str:
    """Captions of the figures the tasks draw (`Task.figures`), by the figure's name."""
    if name.startswith("confusion_"):
        return (
            f"Row-normalised confusion matrix of the joint model on the {name.removeprefix('confusion_')} validation "
            "split (rows: true class, columns: predicted class; darker = larger share of the row)."
        )
    if name.startswith("gaze"):
        return (
            "Gaze predictions of the joint model on validation images: predicted heatmap (overlay), head box (white), "
            "annotated gaze targets (green +) and the predicted target (red x, arrow from the head)."
        )
    return f"{name}: drawn by its task from the joint model's validation predictions."


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
            text = html.escape(line.strip().lstrip("#").strip())
            parts.append("<p>" + re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text) + "</p>")
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


def training_losses(log: str | Path) -> dict[str, list[tuple[float, float]]]:
    """{task: [(fraction of the run, loss)]} from a run's log.jsonl: each logged step's loss under the task its
    batch held (a step that mixed tasks through accumulation is left out: its loss belongs to no one task)."""
    rows = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    steps = [
        r
        for r in rows
        if isinstance(r.get("loss"), (int, float)) and math.isfinite(r["loss"]) and len(set(r.get("tasks") or [])) == 1
    ]
    last = max((r["step"] for r in steps), default=1)
    out: dict[str, list[tuple[float, float]]] = {}
    for r in steps:
        out.setdefault(r["tasks"][0], []).append((r["step"] / last, r["loss"]))
    return out


def loss_curves(single: dict[str, str | Path], joint: str | Path, path: str | Path) -> Path:
    """One panel per task: the training loss of its single-task run and the joint run's loss on that task's
    batches, against the fraction of each run done (the runs have different lengths)."""
    # here, not at the top: as in metric_bars
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    tasks = list(single)
    joint_losses = training_losses(joint)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 2.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for label, points, style in (
            ("single-task", training_losses(single[task]).get(task, []), "-"),
            ("joint", joint_losses.get(task, []), "--"),
        ):
            if points:
                ax.plot(*zip(*points), style, marker=".", label=label)
        ax.set_title(task)
        ax.set_xlabel("fraction of the run")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def loss_curves_caption(log_every: int) -> str:
    return (
        f"Training loss per task, logged every {log_every} steps: the single-task run (solid) and the joint run on "
        "that task's batches (dashed), against the fraction of each run done. Losses of a task's own logged steps "
        "only; the joint run logs whichever task its logged step drew, so its curve has fewer points."
    )


def selection_curves(
    runs: dict, tasks: list[str], primary: dict[str, str], probe_floor: dict[str, float], path: str | Path
) -> Path:
    """One panel per task: its primary metric on the selection split during training, for its single-task run and
    for the joint run, against the batches of that task seen (the joint run's steps / number of tasks, which is
    what a uniform sampler gives each task), a marker at each run's selected step, and the best linear probe of the
    frozen features (on the report split) as a dotted line."""
    # here, not at the top: as in metric_bars
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 2.9), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for name, style, scale in ((f"single-{task}", "-", 1), ("joint", "--", len(tasks))):
            run = runs.get(name)
            points = _eval_points(Path(run["dir"]) / "log.jsonl", task, primary[task]) if run else []
            if not points:
                continue
            xs, ys = [p[0] / scale for p in points], [p[1] for p in points]
            (line,) = ax.plot(xs, ys, style, marker=".", label="single-task" if scale == 1 else "joint")
            best = (run.get("fit") or {}).get("best_step")
            if best is not None and best in [p[0] for p in points]:
                ax.plot(best / scale, dict(points)[best], "o", ms=9, mfc="none", color=line.get_color())
        if probe_floor.get(task) is not None:
            ax.axhline(probe_floor[task], color="#c44e52", linestyle="dotted", label="best linear probe")
        ax.set_title(task)
        ax.set_xlabel("batches of this task")
        ax.set_ylabel(f"{primary[task]} (selection split)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def _eval_points(log: Path, task: str, metric: str) -> list[tuple[int, float]]:
    """(step, the task's primary metric) of every evaluation in a run's log.jsonl."""
    if not log.exists():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    points = {}
    for r in rows:
        value = ((r.get("eval") or {}).get(task) or {}).get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            points[r["step"]] = value  # a resumed run repeats an evaluation: the last one counts
    return sorted(points.items())


SELECTION_CAPTION = (
    "Learning curves: each task's primary metric on its selection split at every evaluation, the "
    "single-task run (solid) and the joint run (dashed, against its steps / number of tasks: the batches "
    "of this task it has seen); circled: the step each model was selected at (its best evaluation), whose "
    "weights are scored on the report split. Dotted: the best linear probe of the frozen encoder on the "
    "report split, the floor a trained model should reach."
)


def probe_floor(probe: dict, encoder: str | None = None) -> dict[str, float]:
    """{task: the best probe value of the config's encoder over layers and poolings} (the probe's first encoder)."""
    results = (probe or {}).get("results") or []
    encoder = encoder or next(iter((probe or {}).get("encoders") or {}), None)
    out: dict[str, float] = {}
    for r in results:
        v = r.get("value")
        if r.get("encoder") == encoder and isinstance(v, (int, float)) and math.isfinite(v):
            out[r["task"]] = max(out.get(r["task"], -math.inf), v)
    return out


PAPER_CLAIM = (
    "The paper (Tahboub et al., arXiv 2512.01148) reports positive transfer on all five tasks for SocialFusion "
    "(frozen encoder, connector, box mask, LoRA) and negative transfer for VLMs trained on the same tasks."
)
QUESTION = (
    "Does training one model on all five social tasks make each task better (positive transfer) or worse (negative "
    "transfer) than a model trained on that task alone?"
)


def _run_counts(transfer: dict) -> dict[str, dict[str, int]]:
    """{task: {"train": n, "selection": n, "report": n, "synthetic": bool}}: training and selection samples from the
    joint run's manifest.json (what it read), reported samples from its metrics."""
    joint = transfer["runs"]["socialfusion"]["joint"]
    path = Path(joint["dir"]) / "manifest.json"
    out: dict[str, dict] = {}
    for key, rec in (json.loads(path.read_text()) if path.exists() else {}).items():
        task, split = key.split("/", 1)
        if split == "train":
            out.setdefault(task, {}).update(train=rec.get("n"), synthetic=rec.get("synthetic"))
        elif split == "val":
            out.setdefault(task, {})["selection"] = rec.get("n")
    for task, m in (joint.get("metrics") or {}).items():
        out.setdefault(task, {})["report"] = (m or {}).get("n")
    return out


def _training_words(transfer: dict, seeds: list) -> str:
    """How the models were trained and scored: the budget, and per run how long it trained and why it stopped."""
    steps = transfer.get("families", {}).get("socialfusion", {}).get("steps", {})
    runs = transfer.get("runs", {}).get("socialfusion", {})
    if transfer.get("budget") == "plateau":
        fits = "; ".join(
            f"{name} {(r.get('fit') or {}).get('steps')} steps (selected at {(r.get('fit') or {}).get('best_step')}, "
            f"{((r.get('fit') or {}).get('stop_reason') or '?').split(':')[0]})"
            for name, r in runs.items()
        )
        how = (
            "each model trained until its mean primary metric on the selection split stopped improving (at most "
            f"{steps.get('single')} steps per single-task model, {steps.get('joint')} for the joint one), "
            f"scored at its best evaluation; seed {seeds[0] if seeds else '?'}: {fits}"
        )
    else:
        how = (
            f"{steps.get('single')} steps per single-task model, "
            f"{steps.get('joint')} for the joint one, scored at the last step"
        )
    return (
        f"Training: config `{transfer.get('config')}`, budget `{transfer.get('budget')}`: {how}. {len(seeds)} seed(s) "
        f"({', '.join(map(str, seeds))}); scores on each task's report split, which no choice has seen, with the "
        f"official protocols; intervals: {transfer.get('interval', '95 %')}."
    )


def _what_was_run(transfer: dict, counts: dict, synthetic: bool, seeds: list, plan: dict | None) -> list[str]:
    """The overview's "What was run" lines: the data and its splits, the training, other families, the analyses."""
    data = (
        "synthetic social scenes in the five official layouts (labels decidable from the pixels)"
        if synthetic
        else "the datasets at the config's roots"
    )
    splits = transfer.get("splits") or {}
    sizes = "; ".join(
        f"{t} {c.get('train', '?')} train / {c.get('selection', '?')} selection "
        f"({(splits.get(t) or {}).get('selection', '?')}) / {c.get('report', '?')} "
        f"report ({(splits.get(t) or {}).get('report', '?')})"
        for t, c in counts.items()
    )
    fams = transfer.get("families", {})
    lines = [f"**What was run.** Data: {data}" + (f" ({sizes})." if sizes else ".")]
    lines.append(_training_words(transfer, seeds))
    others = [
        f"`{name}` ({'joint run only: ' if f.get('joint_variant_of') else ''}{', '.join(f['overrides'])})"
        for name, f in fams.items()
        if name != "socialfusion"
    ]
    if others:
        lines.append("Also run through the same protocol: " + "; ".join(others) + ".")
    if plan:
        lines.append(
            f"Analyses: gradient conflict over {plan.get('gradconf_batches')} batches; linear probes of "
            f"{', '.join(plan.get('encoders') or ['the config encoder'])}."
        )
    return lines


def _answer_table(transfer: dict) -> list[str]:
    """The overview's table: per family, each task's relative change [interval] and its call, and the counts."""
    tasks = transfer.get("tasks") or []
    lines = ["| family | " + " | ".join(tasks) + " | positive / negative / within noise |"]
    lines.append("|---|" + "---|" * (len(tasks) + 1))
    for name, fam in transfer.get("families", {}).items():
        cells = []
        for t in tasks:
            r = fam["tasks"].get(t) or {}
            rel = fmt_ci(r.get("relative"), r.get("relative_ci"), digits=1, scale=100.0, signed=True)
            cells.append(f"{rel} % {r.get('transfer') or 'n/a'}" if rel != "-" else "n/a")
        lines.append(
            f"| {name} | "
            + " | ".join(cells)
            + f" | {fam.get('n_positive', 0)} / {fam.get('n_negative', 0)} / {fam.get('n_within_noise', 0)} |"
        )
    return lines


def _verdict(transfer: dict, synthetic: bool) -> str:
    """The overview's last line: SocialFusion's counts against the paper's claim."""
    main = transfer.get("families", {}).get("socialfusion", {})
    n = len(transfer.get("tasks") or [])
    verdict = (
        f"Against the paper's claim: SocialFusion here shows positive transfer on {main.get('n_positive', 0)} of {n} "
        f"tasks, negative on {main.get('n_negative', 0)}, and no difference beyond noise on "
        f"{main.get('n_within_noise', 0)} (the paper: positive on all five)."
    )
    if synthetic:
        verdict += (
            " These are synthetic scenes at a CPU scale, not the paper's datasets and scale: they test that the "
            "protocol measures transfer, not the paper's numbers."
        )
    return verdict


def study_overview(transfer: dict, plan: dict | None = None) -> str:
    """The report's opening: the question, what was run, the answer per task with its interval, and how it compares
    with the paper's claim (markdown)."""
    counts = _run_counts(transfer)
    synthetic = bool(counts) and all(c.get("synthetic") for c in counts.values())
    seeds = transfer.get("families", {}).get("socialfusion", {}).get("seeds") or []
    lines = [f"**Question.** {QUESTION} {PAPER_CLAIM}", ""]
    lines += _what_was_run(transfer, counts, synthetic, seeds, plan)
    lines += [
        "",
        "**Answer.** Relative change of each task's primary metric, joint minus single-task, over the single-task "
        "value [95 % interval]; a transfer is called positive or "
        "negative only when the interval of the change excludes zero.",
        "",
    ]
    lines += _answer_table(transfer)
    lines.append("")
    lines.append(_verdict(transfer, synthetic))
    return "\n".join(lines) + "\n"


def _metric_rows(chance: dict, joint: dict, floor: dict) -> tuple[list[dict], bool]:
    """One row per evaluated task: the joint model's primary metric and interval against chance and the probe floor;
    and whether every task is above chance."""
    rows, ok = [], True
    for name, ch in chance.items():
        m = joint.get(name) or {}
        value = m.get(ch["metric"], float("nan"))
        ci = (m.get("ci") or {}).get(ch["metric"])
        above = bool(value > ch["chance"])
        ok &= above
        rows.append(
            {
                "task": name,
                "metric": ch["metric"],
                "value": value,
                "ci": ci,
                "chance": ch["chance"],
                "above_chance": above,
                # "clearly": the whole 95 % interval lies above chance, not just the point estimate
                "clearly_above_chance": bool(ci and ci[0] > ch["chance"]),
                "n": m.get("n"),
                "probe": floor.get(name),
            }
        )
    return rows, ok


METRICS_CAPTION = (
    "Primary metric of the joint five-task model on each task's report split, at its selected step. Error bars: "
    "95 % percentile bootstrap intervals over the report samples; dashed line: the chance level (a model that "
    "ignores the image); dotted line: the best linear probe of the frozen encoder's features on the same split."
)


def _curve_figures(config, transfer: dict, val_sets: dict, floor: dict, figs: Path) -> tuple[dict, dict]:
    """The learning curves (where a run recorded its fit) and the loss curves (where every log exists)."""
    figures, captions = {}, {}
    family = transfer["runs"]["socialfusion"]
    if any((run.get("fit") or {}).get("curve") for run in family.values()):
        primary = {name: ds.task.primary_metric for name, ds in val_sets.items()}
        figures["learning_curves"] = selection_curves(
            family, list(val_sets), primary, floor, figs / "learning_curves.png"
        )
        captions["learning_curves"] = SELECTION_CAPTION
    single_logs = {t: Path(family[f"single-{t}"]["dir"]) / "log.jsonl" for t in val_sets if f"single-{t}" in family}
    if (
        single_logs
        and all(p.exists() for p in single_logs.values())
        and (Path(family["joint"]["dir"]) / "log.jsonl").exists()
    ):
        figures["loss_curves"] = loss_curves(
            single_logs, Path(family["joint"]["dir"]) / "log.jsonl", figs / "loss_curves.png"
        )
        captions["loss_curves"] = loss_curves_caption(config.train.log_every)
    return figures, captions


def _report_figures(config, model, results: tuple, val_sets: dict, rows: list, floor: dict, figs: Path):
    """Every figure of the report and its caption: the metric bars, the curves, the tasks' own figures from the
    joint model's predictions, and the analyses' figures (`results`: transfer, probe, gradconf)."""
    transfer = results[0]
    joint = transfer["runs"]["socialfusion"]["joint"]["metrics"]
    figures, captions = {}, {}
    figures["metrics"] = metric_bars(rows, figs / "metrics.png", "Joint five-task model on the report split")
    captions["metrics"] = METRICS_CAPTION
    curves, curve_captions = _curve_figures(config, transfer, val_sets, floor, figs)
    figures.update(curves)
    captions.update(curve_captions)
    for name, ds in val_sets.items():
        samples, predictions = example_predictions(model, ds)
        figures.update(ds.task.figures(joint.get(name), samples, predictions, figs))
    for res in results:
        for f in res.get("figures", []) if isinstance(res, dict) else []:
            figures[Path(f).stem] = Path(f)
        captions.update(res.get("captions", {}) if isinstance(res, dict) else {})
    return figures, {k: captions.get(k) or _task_figure_caption(k) for k in figures}


def _metric_table(rows: list[dict]) -> str:
    """The per-task metrics section (markdown): the table and what its intervals and words mean."""
    metric_md = (
        "| task | primary metric | joint model (report split) [95 % interval] | best "
        "linear probe | chance | above chance | n |\n|---|---|---|---|---|---|---|\n"
    )
    metric_md += "".join(
        f"| {r['task']} | {r['metric']} | {fmt_ci(r['value'], r['ci'])} | "
        f"{fmt_ci(r['probe'], None)} | {r['chance']:.4f} | {_above_words(r)} | {r['n']} |\n"
        for r in rows
    )
    metric_md += (
        '\nIntervals: 95 % percentile bootstrap over the report split\'s samples. "yes": the whole interval lies above '
        'chance; "within noise": the value is above chance but the interval reaches it; "no": at or below chance.\n'
    )
    return metric_md


def _report_sections(
    transfer: dict, probe: dict, gradconf: dict, data_summary, timings: dict, plan, metric_md: str, skips: str
) -> list[tuple[str, str]]:
    """(title, markdown body) of each text section, in the report's order."""
    return [
        ("The question and the answer", study_overview(transfer, plan)),
        ("Per-task metrics of the joint five-task model (official metrics, report split)", metric_md),
        ("Transfer: single-task vs joint training", transfer.get("markdown", "")),
        ("Linear probes of the frozen encoder (decodability)", probe.get("markdown", "")),
        ("Gradient conflict between tasks (compatibility)", gradconf.get("markdown", "")),
        *(
            [("Synthetic benchmark", "```\n" + json.dumps(data_summary, indent=1, default=str) + "\n```\n")]
            if data_summary
            else []
        ),
        ("Timings (seconds)", "| stage | s |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in timings.items())),
        ("Skipped records", skips + "\n"),
    ]


def _report_markdown(out: Path, sections: list, figures: dict, captions: dict, config_yaml: str) -> str:
    """report.md: the sections, the figures (linked relative to OUT where they lie under it) and the config."""
    md = ["# SocialFusion study report\n"]
    for title, body in sections:
        md.append(f"## {title}\n\n{body}\n")
    md.append(
        "## Figures\n\n"
        + "".join(
            f"![{k}]({Path(v).relative_to(out) if Path(v).is_relative_to(out) else v})\n\n*Figure: {captions[k]}*\n\n"
            for k, v in figures.items()
        )
    )
    md.append("## Config\n\n```yaml\n" + config_yaml + "```\n")
    return "\n".join(md)


HTML_HEAD = (
    "<!doctype html><html><head><meta charset='utf-8'><title>SocialFusion study</title><style>"
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}figure{margin:0 0 1.5em}"
    "figcaption{font-size:13px;color:#333;margin-top:.3em}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;font-size:14px}pre{background:#f6f6f6;padding:.5em;overflow:auto}"
    "</style></head><body><h1>SocialFusion study report</h1>"
)


def _report_html(sections: list, figures: dict, captions: dict, config_yaml: str) -> str:
    """report.html: the same sections, figures embedded, and the config, in one self-contained page."""
    parts = [HTML_HEAD]
    for title, body in sections:
        inner = f"<pre>{html.escape(body.strip('`'))}</pre>" if body.lstrip().startswith("```") else _md_to_html(body)
        anchor_id = "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")
        parts.append(f"<h2 id='{anchor_id}'>{html.escape(title)}</h2>{inner}")
    parts.append(
        "<h2>Figures</h2>"
        + "".join(
            f"<h3>{html.escape(k)}</h3><figure>{_img_tag(v)}"
            f"<figcaption>{html.escape(captions[k])}</figcaption></figure>"
            for k, v in figures.items()
        )
    )
    parts.append(f"<h2>Config</h2><pre>{html.escape(config_yaml)}</pre></body></html>")
    return "".join(parts)


def write_report(
    out: Path,
    config,
    model,
    transfer: dict,
    probe: dict,
    gradconf: dict,
    data_summary: dict | None,
    timings: dict,
    plan: dict | None = None,
) -> dict:
    out = Path(out)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    report = SkipReport()
    _, input_fn = sample_inputs(model, config)
    val_sets = build_task_datasets(
        config, model.tasks, "test", input_fn, report
    )  # the report split (transfer.REPORT_ROLE)
    floor = probe_floor(probe)
    rows, ok = _metric_rows(chance_levels(val_sets), transfer["runs"]["socialfusion"]["joint"]["metrics"], floor)
    figures, captions = _report_figures(config, model, (transfer, probe, gradconf), val_sets, rows, floor, figs)
    sections = _report_sections(
        transfer, probe, gradconf, data_summary, timings, plan, _metric_table(rows), report.summary()
    )
    (out / "report.md").write_text(_report_markdown(out, sections, figures, captions, dump_yaml(config)))
    (out / "report.html").write_text(_report_html(sections, figures, captions, dump_yaml(config)))
    summary = {"metrics": rows, "all_above_chance": ok, "timings": timings}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    text = "\n".join(
        f"{r['task']:<11} {r['metric']:<9} {fmt_ci(r['value'], r['ci'])}  (chance {r['chance']:.4f}) {_above_words(r)}"
        for r in rows
    )
    return {**summary, "summary_text": text}

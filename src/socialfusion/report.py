"""The study report (`socialfusion study`, `demo`): report.md and a self-contained report.html (figures embedded),
opening with the question, what was run and the answer per task against the paper's claim."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path
from typing import NamedTuple

import jinja2
import torch

from .config import dump_yaml
from .core.intervals import fmt_ci
from .core.results import Fit, GradconfResult, ProbeResult, Steps, TaskMetrics, TransferResult, TransferRun
from .data.pipeline import build_task_datasets, collate
from .data.skips import SkipReport
from .features.inputs import sample_inputs

# report.md and report.html are rendered from the package's templates (src/socialfusion/templates); the markdown is
# plain text, so nothing is escaped unless a template asks (`html`: html.escape, as the page always escaped)
TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("socialfusion", "templates"),
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)
TEMPLATES.filters["html"] = html.escape
TEMPLATES.globals["fmt_ci"] = fmt_ci


def render(template: str, **context) -> str:
    """A template of src/socialfusion/templates rendered with `context`."""
    return TEMPLATES.get_template(template).render(**context)


class Section(NamedTuple):
    """One text section of the report: its title and markdown body, and what report.html shows of it."""

    title: str
    body: str

    @property
    def anchor(self) -> str:
        return "".join(c if c.isalnum() else "-" for c in self.title.lower()).strip("-")

    @property
    def html(self) -> str:
        # a fenced block (the synthetic benchmark's JSON) stays preformatted text; the rest is tables and paragraphs
        if self.body.lstrip().startswith("```"):
            return f"<pre>{html.escape(self.body.strip('`'))}</pre>"
        return _md_to_html(self.body)


class Figure(NamedTuple):
    """One figure of the report: its name, where the image lies and its caption."""

    name: str
    path: Path
    caption: str

    def link(self, out: Path) -> str:
        """report.md's link: relative to OUT where the image lies under it."""
        path = Path(self.path)
        return str(path.relative_to(out) if path.is_relative_to(out) else self.path)

    @property
    def img(self) -> str:
        return _img_tag(self.path)


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
    runs: dict[str, TransferRun],
    tasks: list[str],
    primary: dict[str, str],
    probe_floor: dict[str, float],
    path: str | Path,
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
            points = _eval_points(Path(run.dir) / "log.jsonl", task, primary[task]) if run else []
            if not points:
                continue
            xs, ys = [p[0] / scale for p in points], [p[1] for p in points]
            (line,) = ax.plot(xs, ys, style, marker=".", label="single-task" if scale == 1 else "joint")
            best = (run.fit or Fit()).best_step
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


def probe_floor(probe: ProbeResult | dict | None, encoder: str | None = None) -> dict[str, float]:
    """{task: the best probe value of the config's encoder over layers and poolings} (the probe's first encoder)."""
    probe = ProbeResult.from_json(probe or {})
    encoder = encoder or next(iter(probe.encoders), None)
    out: dict[str, float] = {}
    for r in probe.results:
        v = r.value
        if r.encoder == encoder and isinstance(v, (int, float)) and math.isfinite(v):
            out[r.task] = max(out.get(r.task, -math.inf), v)
    return out


PAPER_CLAIM = (
    "The paper (Tahboub et al., arXiv 2512.01148) reports positive transfer on all five tasks for SocialFusion "
    "(frozen encoder, connector, box mask, LoRA) and negative transfer for VLMs trained on the same tasks."
)
QUESTION = (
    "Does training one model on all five social tasks make each task better (positive transfer) or worse (negative "
    "transfer) than a model trained on that task alone?"
)


def _run_counts(transfer: TransferResult) -> dict[str, dict[str, int]]:
    """{task: {"train": n, "selection": n, "report": n, "synthetic": bool}}: training and selection samples from the
    joint run's manifest.json (what it read), reported samples from its metrics."""
    joint = transfer.run("socialfusion", "joint")
    path = Path(joint.dir) / "manifest.json"
    out: dict[str, dict] = {}
    for key, rec in (json.loads(path.read_text()) if path.exists() else {}).items():
        task, split = key.split("/", 1)
        if split == "train":
            out.setdefault(task, {}).update(train=rec.get("n"), synthetic=rec.get("synthetic"))
        elif split == "val":
            out.setdefault(task, {})["selection"] = rec.get("n")
    for task, m in joint.metrics.items():
        out.setdefault(task, {})["report"] = m.n if m else None
    return out


def _training_words(transfer: TransferResult, seeds: list) -> str:
    """How the models were trained and scored: the budget, and per run how long it trained and why it stopped."""
    steps = transfer.family("socialfusion").steps or Steps()
    runs = transfer.runs["socialfusion"] if "socialfusion" in transfer.runs else {}
    fits = {name: r.fit or Fit() for name, r in runs.items()}
    if transfer.budget == "plateau":
        fits = "; ".join(
            f"{name} {fit.steps} steps (selected at {fit.best_step}, {(fit.stop_reason or '?').split(':')[0]})"
            for name, fit in fits.items()
        )
        how = (
            "each model trained until its mean primary metric on the selection split stopped improving (at most "
            f"{steps.single} steps per single-task model, {steps.joint} for the joint one), "
            f"scored at its best evaluation; seed {seeds[0] if seeds else '?'}: {fits}"
        )
    else:
        how = f"{steps.single} steps per single-task model, {steps.joint} for the joint one, scored at the last step"
    return (
        f"Training: config `{transfer.config}`, budget `{transfer.budget}`: {how}. {len(seeds)} seed(s) "
        f"({', '.join(map(str, seeds))}); scores on each task's report split, which no choice has seen, with the "
        f"official protocols; intervals: {transfer.interval}."
    )


def _what_was_run(transfer: TransferResult, counts: dict, synthetic: bool, seeds: list, plan: dict | None) -> list[str]:
    """The overview's "What was run" lines: the data and its splits, the training, other families, the analyses."""
    data = (
        "synthetic social scenes in the five official layouts (labels decidable from the pixels)"
        if synthetic
        else "the datasets at the config's roots"
    )
    sizes = "; ".join(
        f"{t} {c.get('train', '?')} train / {c.get('selection', '?')} selection "
        f"({transfer.split_roles(t).selection}) / {c.get('report', '?')} "
        f"report ({transfer.split_roles(t).report})"
        for t, c in counts.items()
    )
    fams = transfer.families
    lines = [f"**What was run.** Data: {data}" + (f" ({sizes})." if sizes else ".")]
    lines.append(_training_words(transfer, seeds))
    others = [
        f"`{name}` ({'joint run only: ' if f.joint_variant_of else ''}{', '.join(f.overrides)})"
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


def _answer_cells(transfer: TransferResult) -> list[dict]:
    """The overview table's rows: per family, each task's relative change [interval] and its call, and the counts."""
    rows = []
    for name, fam in transfer.families.items():
        cells = []
        for t in transfer.tasks:
            r = fam.row(t)
            rel = fmt_ci(r.relative, r.relative_ci, digits=1, scale=100.0, signed=True)
            cells.append(f"{rel} % {r.transfer or 'n/a'}" if rel != "-" else "n/a")
        counts = {"n_positive": fam.n_positive, "n_negative": fam.n_negative, "n_within_noise": fam.n_within_noise}
        rows.append({"name": name, "cells": cells, **counts})
    return rows


def _verdict(transfer: TransferResult, synthetic: bool) -> str:
    """The overview's last line: SocialFusion's counts against the paper's claim."""
    main = transfer.family("socialfusion")
    verdict = (
        f"Against the paper's claim: SocialFusion here shows positive transfer on {main.n_positive} of "
        f"{len(transfer.tasks)} tasks, negative on {main.n_negative}, and no difference beyond noise on "
        f"{main.n_within_noise} (the paper: positive on all five)."
    )
    if synthetic:
        verdict += (
            " These are synthetic scenes at a CPU scale, not the paper's datasets and scale: they test that the "
            "protocol measures transfer, not the paper's numbers."
        )
    return verdict


def study_overview(transfer: TransferResult | dict, plan: dict | None = None) -> str:
    """The report's opening: the question, what was run, the answer per task with its interval, and how it compares
    with the paper's claim (markdown)."""
    transfer = TransferResult.from_json(transfer)
    counts = _run_counts(transfer)
    synthetic = bool(counts) and all(c.get("synthetic") for c in counts.values())
    seeds = transfer.family("socialfusion").seeds
    return render(
        "overview.md.j2",
        question=QUESTION,
        claim=PAPER_CLAIM,
        what_was_run=_what_was_run(transfer, counts, synthetic, seeds, plan),
        tasks=transfer.tasks,
        families=_answer_cells(transfer),
        verdict=_verdict(transfer, synthetic),
    )


def _metric_rows(chance: dict, joint: dict[str, TaskMetrics | None], floor: dict) -> tuple[list[dict], bool]:
    """One row per evaluated task: the joint model's primary metric and interval against chance and the probe floor;
    and whether every task is above chance."""
    rows, ok = [], True
    for name, ch in chance.items():
        m = joint.get(name) or TaskMetrics({})
        value = m.value(ch["metric"], float("nan"))
        ci = m.interval(ch["metric"])
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
                "n": m.n,
                "probe": floor.get(name),
            }
        )
    return rows, ok


METRICS_CAPTION = (
    "Primary metric of the joint five-task model on each task's report split, at its selected step. Error bars: "
    "95 % percentile bootstrap intervals over the report samples; dashed line: the chance level (a model that "
    "ignores the image); dotted line: the best linear probe of the frozen encoder's features on the same split."
)


def _curve_figures(config, transfer: TransferResult, val_sets: dict, floor: dict, figs: Path) -> tuple[dict, dict]:
    """The learning curves (where a run recorded its fit) and the loss curves (where every log exists)."""
    figures, captions = {}, {}
    family = transfer.runs["socialfusion"]
    if any((run.fit or Fit()).curve for run in family.values()):
        primary = {name: ds.task.primary_metric for name, ds in val_sets.items()}
        figures["learning_curves"] = selection_curves(
            family, list(val_sets), primary, floor, figs / "learning_curves.png"
        )
        captions["learning_curves"] = SELECTION_CAPTION
    single_logs = {t: Path(family[f"single-{t}"].dir) / "log.jsonl" for t in val_sets if f"single-{t}" in family}
    joint_log = Path(transfer.run("socialfusion", "joint").dir) / "log.jsonl"
    if single_logs and all(p.exists() for p in single_logs.values()) and joint_log.exists():
        figures["loss_curves"] = loss_curves(single_logs, joint_log, figs / "loss_curves.png")
        captions["loss_curves"] = loss_curves_caption(config.train.log_every)
    return figures, captions


def _report_figures(config, model, results: tuple, val_sets: dict, rows: list, floor: dict, figs: Path):
    """Every figure of the report and its caption: the metric bars, the curves, the tasks' own figures from the
    joint model's predictions, and the analyses' figures (`results`: transfer, probe, gradconf)."""
    transfer = results[0]
    joint = transfer.run("socialfusion", "joint").metrics
    figures, captions = {}, {}
    figures["metrics"] = metric_bars(rows, figs / "metrics.png", "Joint five-task model on the report split")
    captions["metrics"] = METRICS_CAPTION
    curves, curve_captions = _curve_figures(config, transfer, val_sets, floor, figs)
    figures.update(curves)
    captions.update(curve_captions)
    for name, ds in val_sets.items():
        samples, predictions = example_predictions(model, ds)
        metrics = joint[name] if name in joint else None
        figures.update(ds.task.figures(metrics.root if metrics else None, samples, predictions, figs))
    for res in results:
        for f in res.figures:
            figures[Path(f).stem] = Path(f)
        captions.update(res.captions)
    return figures, {k: captions.get(k) or _task_figure_caption(k) for k in figures}


def _metric_table(rows: list[dict]) -> str:
    """The per-task metrics section (markdown): the table and what its intervals and words mean."""
    return render("metric_table.md.j2", rows=rows, above_words=_above_words)


def _report_sections(
    transfer: TransferResult,
    probe: ProbeResult,
    gradconf: GradconfResult,
    data_summary,
    timings: dict,
    plan,
    metric_md: str,
    skips: str,
) -> list[tuple[str, str]]:
    """(title, markdown body) of each text section, in the report's order."""
    return [
        ("The question and the answer", study_overview(transfer, plan)),
        ("Per-task metrics of the joint five-task model (official metrics, report split)", metric_md),
        ("Transfer: single-task vs joint training", transfer.markdown),
        ("Linear probes of the frozen encoder (decodability)", probe.markdown),
        ("Gradient conflict between tasks (compatibility)", gradconf.markdown),
        *(
            [
                (
                    "Synthetic benchmark",
                    render("benchmark.md.j2", summary_json=json.dumps(data_summary, indent=1, default=str)),
                )
            ]
            if data_summary
            else []
        ),
        ("Timings (seconds)", render("timings.md.j2", timings=timings)),
        ("Skipped records", skips + "\n"),
    ]


def _report_markdown(out: Path, sections: list, figures: dict, captions: dict, config_yaml: str) -> str:
    """report.md: the sections, the figures (linked relative to OUT where they lie under it) and the config."""
    return render(
        "report.md.j2",
        sections=[Section(*s) for s in sections],
        figures=[Figure(k, v, captions[k]) for k, v in figures.items()],
        out=out,
        config_yaml=config_yaml,
    )


def _report_html(sections: list, figures: dict, captions: dict, config_yaml: str) -> str:
    """report.html: the same sections, figures embedded, and the config, in one self-contained page."""
    return render(
        "report.html.j2",
        sections=[Section(*s) for s in sections],
        figures=[Figure(k, v, captions[k]) for k, v in figures.items()],
        config_yaml=config_yaml,
    )


def write_report(
    out: Path,
    config,
    model,
    transfer: TransferResult | dict,
    probe: ProbeResult | dict,
    gradconf: GradconfResult | dict,
    data_summary: dict | None,
    timings: dict,
    plan: dict | None = None,
) -> dict:
    """report.md, report.html and summary.json into OUT from the analyses' results (the types, or the dicts of
    their JSON files) and the joint model's predictions on each task's report split."""
    out = Path(out)
    transfer = TransferResult.from_json(transfer)
    probe, gradconf = ProbeResult.from_json(probe), GradconfResult.from_json(gradconf)
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    report = SkipReport()
    _, input_fn = sample_inputs(model, config)
    val_sets = build_task_datasets(
        config, model.tasks, "test", input_fn, report
    )  # the report split (transfer.REPORT_ROLE)
    floor = probe_floor(probe)
    rows, ok = _metric_rows(chance_levels(val_sets), transfer.run("socialfusion", "joint").metrics, floor)
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

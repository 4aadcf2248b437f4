"""`socialfusion transfer`: single-task vs joint multi-task training (the paper's positive/negative transfer).

For every model family (the configured model, plus any `--baseline NAME=override,...`, e.g. the VLM-style
baseline with a trainable encoder) it trains one single-task model per configured task and one joint model with a
comparable budget, evaluates each on the validation split with the official metrics (`evaluate_model`), and
writes transfer.json, transfer.md and transfer.png (Figure-1 style: per task, the relative change of the primary
metric joint vs single with its 95 % interval; one bar per family).

Noise: the validation sets are small (~100 samples in the demo), so every difference comes with a 95 % interval.
With one seed it is a *paired* percentile bootstrap over the validation samples (each resample scores both models
on the same samples, `core/intervals.py`); with `seeds` K >= 2 every run is repeated with K seeds (model and
training seed + 0..K-1) and the interval is a Student-t interval of the per-seed differences, which also covers
the training noise the bootstrap cannot see. A transfer is called "positive" or "negative" only when its interval
excludes zero, otherwise "within noise".

Splits: every model is *selected* on each task's val_split and *reported* once on its test_split (docs/DATASETS.md
"Splits"; for Ego4D LAM, AffectNet and GazeFollow the selection split is a holdout carved from train and the report
split the official val / test), so no reported score comes from a split any choice has seen.

Budgets: `plateau` (default): each model trains until its mean primary metric on the selection split stops
improving (evaluation every train.eval_every steps, stop after train.early_stop_patience evaluations without a new
best, at most train.steps) and is reported at its best evaluation (checkpoints/best); the joint model's cap is the
sum of the single-task caps (train.steps x tasks) and it evaluates every train.eval_every x tasks steps, i.e. after
as many batches of each task as a single-task model between its evaluations. `equal-steps-per-task`: each
single-task run gets train.steps, the joint run train.steps x number of tasks (it sees each task about as often as
its single-task model did, under a uniform sampler), no early stopping, the last checkpoint reported (the paper's
alternative reading). `equal-total-steps`: every run gets train.steps, last checkpoint reported.

Runs live in OUT/<family>/single-<task>/ and OUT/<family>/joint/ (each a normal training run directory with its
checkpoints, fit.json and eval/results.json; OUT/<family>/seed-<s>/... with several seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from ..config import (
    ConfigError,
    absolute_paths,
    apply_overrides,
    config_from_dict,
    dump_yaml,
    load_config,
    select_tasks,
    split_list,
)
from ..core.intervals import (
    RESAMPLES,
    SEED,
    excludes_zero,
    fmt_ci,
    interval_info,
    paired_difference,
    percentile_interval,
    t_interval,
)
from ..core.results import TransferResult
from ..data.pipeline import check_root
from ..errors import add_console_options
from ..eval.evaluate import evaluate_model
from ..models.checkpoint import load_model
from ..runtime import resolve_device
from ..tasks import tasks_from_config
from ..train.loop import train
from .plots import transfer_bars, transfer_caption

BUDGETS = ("plateau", "equal-steps-per-task", "equal-total-steps")
REPORT_ROLE = "test"  # the split role every transfer score is reported on (TaskDataConfig.test_split)
MAIN_FAMILY = "socialfusion"
# the VLM-style family: the same model with its visual encoder trained (at train.lr_encoder) from pixels, as VLMs are
VLM_STYLE = ["model.trainable.encoder=full", "train.feature_cache=off"]


# ------------------------------------------------------------------------------------------- pure helpers
def parse_baseline(text: str, flag: str = "--baseline") -> tuple[str, list[str]]:
    """'NAME=key.a=v,key.b=w' -> ('NAME', ['key.a=v', 'key.b=w']); commas inside values (lists) are kept."""
    if "=" not in text:
        raise ValueError(f"{flag} {text!r} must look like NAME=key.sub=value[,key.sub=value...]")
    name, rest = text.split("=", 1)
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ValueError(f"{flag} name {name!r}: use letters, digits, '_', '-', '.'")
    overrides = [o.strip() for o in re.split(r",(?=\s*[A-Za-z_][\w.\-]*=)", rest) if o.strip()]
    if not overrides or any("=" not in o for o in overrides):
        raise ValueError(f"{flag} {text!r}: expected key.sub=value overrides after the name")
    return name, overrides


def normalise_baselines(baselines, flag: str = "--baseline") -> dict[str, list[str]]:
    """None, a mapping name -> overrides, or a list of 'NAME=override,...' strings -> {name: [overrides]}
    (also the joint-run variants, `flag` "--variant")."""
    if not baselines:
        return {}
    if isinstance(baselines, dict):
        out = {str(k): ([v] if isinstance(v, str) else list(v)) for k, v in baselines.items()}
    else:
        out = {}
        for text in baselines:
            name, overrides = parse_baseline(text, flag)
            if name in out:
                raise ValueError(f"{flag} {name!r} given twice")
            out[name] = overrides
    if MAIN_FAMILY in out:
        raise ValueError(f"{MAIN_FAMILY!r} names the configured model; pick another baseline name")
    return out


def add_family_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`--baseline` and `--variant` (repeatable NAME=OVERRIDE[,OVERRIDE...]), read by `normalise_baselines`; shared
    by `transfer`, `study` and `demo`."""
    for flag, what in (
        (
            "--baseline",
            "another model family through the same protocol, "
            "e.g. vlm_style=model.trainable.encoder=full,train.feature_cache=off",
        ),
        (
            "--variant",
            "another way to train the joint model, compared with the same single-task models, "
            "e.g. mixed=data.sampler=round_robin,train.grad_accum=5",
        ),
    ):
        p.add_argument(
            flag,
            action="append",
            default=[],
            metavar="NAME=OVERRIDE[,OVERRIDE...]",
            help=f"{what} (repeat the flag for more)",
        )
    return p


def budget_steps(steps: int, n_tasks: int, budget: str) -> dict[str, int]:
    """The step count (under `plateau`: the cap) of a single-task run and of the joint run."""
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}")
    return {"single": steps, "joint": steps * n_tasks if budget != "equal-total-steps" else steps}


def check_protocol(config, budget: str) -> None:
    """Every task has a report split apart from its selection split, and `plateau` has what it stops on."""
    missing = [td.task for td in config.data.tasks if td.test_split is None]
    if missing:
        raise ConfigError(
            f"task(s) {', '.join(missing)} have no report split (data.tasks.<task>.test_split): a transfer reports "
            "every model on a split that nothing was selected on",
            hint="for a dataset without public test labels report on its val and select on a "
            "holdout carved from train: data.tasks.<task>.val_split=holdout data.tasks.<task>.test_split=val",
        )
    if budget == "plateau" and not (config.train.eval_every >= 1 and config.train.early_stop_patience >= 1):
        raise ConfigError(
            "budget plateau stops on the selection split: it needs train.eval_every >= 1 and "
            f"train.early_stop_patience >= 1 (got {config.train.eval_every} and {config.train.early_stop_patience})",
            hint="or use --budget equal-steps-per-task",
        )


def run_configs(config, tasks: list[str], steps: dict, budget: str) -> list[tuple[str, object]]:
    """(run name, config) of one seed's single-task runs and its joint run under `budget`."""
    n = len(tasks)
    if budget == "plateau":
        t = config.train
        single = [f"train.steps={steps['single']}"]
        joint = [f"train.steps={steps['joint']}", f"train.eval_every={t.eval_every * n}"]
    else:  # a fixed number of steps, reported at the last one
        single = [f"train.steps={steps['single']}", "train.early_stop_patience=0"]
        joint = [f"train.steps={steps['joint']}", "train.early_stop_patience=0"]
    plan = [(f"single-{t}", apply_overrides(select_tasks(config, [t]), single)) for t in tasks]
    return plan + [("joint", apply_overrides(config, joint))]


CALLS = {1: "positive", -1: "negative", 0: "within noise"}


def transfer_row(metric: str, single: dict | None, joint: dict | None, paired: dict | None = None) -> dict:
    """Primary-metric comparison of one task (all primary metrics are higher-is-better).

    `paired`: `paired_difference` of the two models on the same validation samples ({"delta": [lo, hi],
    "relative": [lo, hi], "n"}). The call is "positive" / "negative" only when the delta's interval excludes zero;
    without an interval nothing is shown to differ, so it is "within noise". None when a metric is missing.
    """
    s = None if not single else single.get(metric)
    j = None if not joint else joint.get(metric)
    ok = lambda v: isinstance(v, (int, float)) and math.isfinite(v)  # noqa: E731
    delta = j - s if ok(s) and ok(j) else None
    rel = delta / abs(s) if delta is not None and s != 0 else None
    paired = paired or {}
    ci = lambda m: ((m or {}).get("ci") or {}).get(metric)  # noqa: E731
    return {
        "metric": metric,
        "single": s,
        "single_ci": ci(single),
        "joint": j,
        "joint_ci": ci(joint),
        "delta": delta,
        "delta_ci": paired.get("delta") if delta is not None else None,
        "relative": rel,
        "relative_ci": paired.get("relative") if rel is not None else None,
        "transfer": None if delta is None else CALLS[excludes_zero(paired.get("delta"))],
        "n": paired.get("n"),
        "interval": "paired bootstrap over report-split samples" if paired.get("delta") else None,
    }


def seeds_row(rows: list[dict]) -> dict:
    """One task's rows from K seeds -> means and Student-t intervals across seeds; the call follows the delta's
    t-interval. The per-seed rows are kept under "per_seed"."""
    stats = {k: t_interval([r.get(k) for r in rows]) for k in ("single", "joint", "delta", "relative")}
    delta = stats["delta"]
    return {
        "metric": rows[0]["metric"],
        **{k: v["mean"] for k, v in stats.items()},
        **{f"{k}_ci": v["ci"] for k, v in stats.items()},
        "transfer": None if delta["mean"] is None else CALLS[excludes_zero(delta["ci"])],
        "n": rows[0].get("n"),
        "seeds": delta["k"],
        "interval": f"t over {delta['k']} seeds",
        "per_seed": rows,
    }


def mean_relative(
    rows: dict[str, dict], relative_samples: dict[str, np.ndarray] | None = None
) -> tuple[float | None, list[float] | None]:
    """The mean relative change over tasks and its interval: bootstrap over the tasks' (independent) validation
    sets when their per-resample relative changes are given, else None."""
    rels = {t: r["relative"] for t, r in rows.items() if r["relative"] is not None}
    if not rels:
        return None, None
    point = sum(rels.values()) / len(rels)
    samples = [relative_samples[t] for t in rels if relative_samples and t in relative_samples]
    if len(samples) != len(rels):
        return point, None
    stacked = np.stack(samples)
    ok = np.isfinite(stacked)
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample where no task defines it: NaN, left out
        means = np.where(ok, stacked, 0.0).sum(0) / ok.sum(0)
    return point, percentile_interval(means)


# ------------------------------------------------------------------------------------------- runs
def _train_and_evaluate(
    config, run_dir: Path, progress: bool, device: str, resume: bool, resamples: int
) -> tuple[dict, dict, dict]:
    """Train (unless `resume` finds this run finished with the same config) and evaluate its selected checkpoint
    (best under early stopping, else last) on the report split: (metrics with intervals, {task: (sample ids,
    bootstrap statistic)} for the paired comparison, the run's fit record with the checkpoint evaluated)."""
    results_path = run_dir / "eval" / "results.json"
    cfg_path = run_dir / "config.yaml"
    # a run saves its config with absolute paths (train.loop), so a relative --out must compare the same way
    finished = resume and results_path.exists() and cfg_path.exists() and _same_config(cfg_path, absolute_paths(config))
    if not finished:
        train(config, run_dir, resume=resume, progress=progress, device=device)
    fit = json.loads((run_dir / "fit.json").read_text())
    selected = (
        "best"
        if config.train.early_stop_patience and (run_dir / "checkpoints" / "best" / "COMPLETE").exists()
        else "last"
    )
    fit["checkpoint"] = str(run_dir / "checkpoints" / selected)
    # a finished run is evaluated again (no training): the paired bootstrap needs its per-sample predictions
    model, _ = load_model(Path(fit["checkpoint"]))
    dev = resolve_device(device)
    model.to(dev)
    results = evaluate_model(
        model,
        config,
        run_dir / "eval",
        split=REPORT_ROLE,
        device=dev,
        progress=progress,
        resamples=resamples,
        keep_resamplers=True,
    )
    return results["metrics"], results["resamplers"], fit


def _same_config(saved: Path, config) -> bool:
    """Whether a run's saved config is `config`; read back through the config schema, so that a field added to the
    schema since (with its default) does not make a finished run look different."""
    text = saved.read_text()
    if text == dump_yaml(config):
        return True
    try:
        return dump_yaml(config_from_dict(yaml.safe_load(text))) == dump_yaml(config)
    except Exception:  # noqa: BLE001 - an unreadable or outdated config is simply not the same run
        return False


def seed_list(config, seeds: int) -> list[int]:
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    return [config.train.seed + k for k in range(seeds)]


def _with_seed(config, k: int):
    """The config of the k-th repeat: model initialisation and training order both move by k."""
    return (
        config
        if k == 0
        else apply_overrides(config, [f"model.seed={config.model.seed + k}", f"train.seed={config.train.seed + k}"])
    )


def _run(name: str, cfg, out_dir: Path, progress: bool, device: str, resume: bool, resamples: int) -> tuple[dict, dict]:
    run_dir = out_dir / name
    t0 = time.perf_counter()
    metrics, stats, fit = _train_and_evaluate(cfg, run_dir, progress, device, resume, resamples)
    run = {
        "dir": str(run_dir),
        "checkpoint": fit.pop("checkpoint"),
        "steps": fit["steps"],
        "cap": cfg.train.steps,
        "seed": cfg.train.seed,
        "metrics": metrics,
        "fit": fit,
        "seconds": time.perf_counter() - t0,
    }
    return run, stats


def _compare(tasks: list[str], task_defs: dict, runs: dict, stats: dict, resamples: int) -> dict:
    """The transfer rows of one seed from its single-task runs and its joint run (names single-<task>, joint)."""
    single = {t: runs[f"single-{t}"]["metrics"].get(t) for t in tasks}
    joint = {t: runs["joint"]["metrics"].get(t) for t in tasks}
    rows, rel_samples = {}, {}
    for i, t in enumerate(tasks):
        metric, paired = task_defs[t].primary_metric, None
        a, b = stats[f"single-{t}"].get(t), stats["joint"].get(t)
        if a is not None and b is not None and resamples > 0:
            # the ids pair the two models' samples; a seed per task keeps the tasks' resamples independent, as their
            # validation sets are (the mean relative change combines them resample by resample)
            paired = paired_difference(a[1], a[0], b[1], b[0], metric, resamples, SEED + i, keep_samples=True)
            rel_samples[t] = paired.pop("samples")["relative"]
        rows[t] = transfer_row(metric, single[t], joint[t], paired)
    mean, mean_ci = mean_relative(rows, rel_samples)
    return {
        "tasks": rows,
        "single_metrics": single,
        "joint_metrics": joint,
        "mean_relative": mean,
        "mean_relative_ci": mean_ci,
        "runs": runs,
    }


def _one_seed(
    config,
    out_dir: Path,
    tasks: list[str],
    steps: dict,
    budget: str,
    task_defs: dict,
    progress: bool,
    device: str,
    resume: bool,
    resamples: int,
    variants: dict[str, list[str]],
) -> dict:
    """One seed of a family: its single-task runs, its joint run, and the joint run of every variant (compared with
    the same single-task runs). {"family": rows..., "variants": {name: rows...}}."""
    plan = run_configs(config, tasks, steps, budget)
    runs, stats = {}, {}
    for name, cfg in plan:
        runs[name], stats[name] = _run(name, cfg, out_dir, progress, device, resume, resamples)
    out = {"family": _compare(tasks, task_defs, runs, stats, resamples), "variants": {}}
    for vname, overrides in variants.items():
        cfg = apply_overrides(plan[-1][1], overrides)
        v_runs, v_stats = dict(runs), dict(stats)
        v_runs["joint"], v_stats["joint"] = _run(f"joint-{vname}", cfg, out_dir, progress, device, resume, resamples)
        out["variants"][vname] = _compare(tasks, task_defs, v_runs, v_stats, resamples)
    return out


def _summarise(per_seed: dict, tasks: list[str], steps: dict) -> dict:
    """A family's (or variant's) result over its seeds: the rows of the one seed, or means and t-intervals."""
    first = next(iter(per_seed.values()))
    if len(per_seed) == 1:
        rows, mean, mean_ci = first["tasks"], first["mean_relative"], first["mean_relative_ci"]
    else:
        rows = {t: seeds_row([res["tasks"][t] for res in per_seed.values()]) for t in tasks}
        across = t_interval([res["mean_relative"] for res in per_seed.values()])
        mean, mean_ci = across["mean"], across["ci"]
    out = {
        "steps": steps,
        "seeds": list(per_seed),
        "tasks": rows,
        "single_metrics": first["single_metrics"],
        "joint_metrics": first["joint_metrics"],
        "mean_relative": mean,
        "mean_relative_ci": mean_ci,
        **_counts(rows),
        "runs": first["runs"],
    }
    if len(per_seed) > 1:
        out["runs_by_seed"] = {s: res["runs"] for s, res in per_seed.items()}
    return out


def _counts(rows: dict) -> dict:
    return {f"n_{k.replace(' ', '_')}": sum(r["transfer"] == k for r in rows.values()) for k in CALLS.values()}


def run_family(
    config,
    out_dir: Path,
    budget: str,
    progress: bool = True,
    device: str = "auto",
    resume: bool = False,
    seeds: int = 1,
    resamples: int = RESAMPLES,
    variants: dict[str, list[str]] | None = None,
) -> dict:
    """Single-task runs for every configured task and one joint run of one model family, for each seed; plus the
    joint run of each variant (its overrides applied to the joint config only) against the same single-task runs.
    Returns the family's result, with the variants' results under "variants"."""
    tasks = [td.task for td in config.data.tasks]
    steps = budget_steps(config.train.steps, len(tasks), budget)
    task_defs = tasks_from_config(config)
    variants = variants or {}
    per_seed = {}
    for k, seed in enumerate(seed_list(config, seeds)):
        seed_dir = out_dir if seeds == 1 else out_dir / f"seed-{seed}"
        per_seed[seed] = _one_seed(
            _with_seed(config, k),
            seed_dir,
            tasks,
            steps,
            budget,
            task_defs,
            progress,
            device,
            resume,
            resamples,
            variants,
        )
    out = _summarise({s: r["family"] for s, r in per_seed.items()}, tasks, steps)
    out["variants"] = {}
    for vname in variants:
        v = _summarise({s: r["variants"][vname] for s, r in per_seed.items()}, tasks, steps)
        v["steps"] = {"single": steps["single"], "joint": v["runs"]["joint"]["steps"]}
        out["variants"][vname] = v
    return out


def run_transfer(
    config,
    out_dir,
    budget: str = "plateau",
    baselines=None,
    progress: bool = True,
    device: str = "auto",
    resume: bool = False,
    seeds: int = 1,
    resamples: int = RESAMPLES,
    variants=None,
) -> TransferResult:
    """Train and evaluate every family's single-task and joint models; write transfer.json/.md/.png; return the result.

    `baselines`: None, {name: [overrides]} or ['NAME=override,override', ...]; each is applied to `config` to make
    a second model family (e.g. {'vlm_style': ['model.trainable.encoder=full', 'train.feature_cache=off']}).
    With `resume`, runs whose directory already holds the same config and an evaluation are reused (re-evaluated,
    not retrained). `seeds`: repeats per run (K >= 2: t-intervals across seeds); `resamples`: bootstrap resamples.
    `variants` (same forms as `baselines`): ways to train the configured model's *joint* run (e.g. {'mixed':
    ['data.sampler=round_robin', 'train.grad_accum=5', 'train.steps=90']}); each is compared with the same
    single-task runs and reported as the family "socialfusion:NAME".
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    families, variants = _families(config, budget, baselines, seeds, variants)
    t0 = time.perf_counter()
    result = _transfer_header(config, budget, seeds, resamples)
    for name, (cfg, overrides) in families.items():
        if progress:
            print(
                f"[transfer] family {name}: {len(result['tasks'])} single-task runs + 1 joint run, {seeds} seed(s)",
                file=sys.stderr,
            )
        fam = run_family(
            cfg,
            out_dir / name,
            budget,
            progress,
            device,
            resume,
            seeds,
            resamples,
            variants if name == MAIN_FAMILY else None,
        )
        _add_family(result, name, overrides, fam, variants)
    result["seconds"] = time.perf_counter() - t0
    return _write_transfer(result, out_dir, budget)


def _families(config, budget: str, baselines, seeds: int, variants) -> tuple[dict, dict]:
    """({family: (config, overrides)}, {variant: overrides}), every option checked before anything trains."""
    budget_steps(config.train.steps, 1, budget)  # validate early
    check_protocol(config, budget)
    seed_list(config, seeds)
    families = {MAIN_FAMILY: (config, [])}
    for name, overrides in normalise_baselines(baselines).items():
        families[name] = (apply_overrides(config, overrides), overrides)
    variants = normalise_baselines(variants, "--variant")
    for overrides in variants.values():
        apply_overrides(config, overrides)  # validate early
    return families, variants


def _transfer_header(config, budget: str, seeds: int, resamples: int) -> dict:
    """transfer.json's protocol fields, with empty families and runs for the families to fill."""
    interval = (
        "paired percentile bootstrap over the report split's samples"
        if seeds == 1
        else f"Student-t across {seeds} seeds"
    ) + ", 95 %"
    splits = {
        td.task: {"train": td.train_split, "selection": td.val_split, "report": td.test_split}
        for td in config.data.tasks
    }
    return {
        "config": config.name,
        "budget": budget,
        "split": "report",
        "splits": splits,
        "tasks": [td.task for td in config.data.tasks],
        "seeds": seeds,
        "interval": interval,
        "bootstrap": interval_info(resamples, SEED),
        "families": {},
        "runs": {},
    }


def _add_family(result: dict, name: str, overrides: list, fam: dict, variants: dict) -> None:
    """A family's result, and each of its joint-run variants as a family of its own, into `result`."""
    entries = [(name, overrides, fam)] + [(f"{name}:{v}", variants[v], res) for v, res in fam.pop("variants").items()]
    for key, ov, res in entries:
        result["runs"][key] = res.pop("runs")
        if "runs_by_seed" in res:
            result.setdefault("runs_by_seed", {})[key] = res.pop("runs_by_seed")
        result["families"][key] = {"overrides": ov, **({"joint_variant_of": name} if key != name else {}), **res}


def _write_transfer(result: dict, out_dir: Path, budget: str) -> TransferResult:
    """The figure, caption and tables into `result`, then transfer.json and transfer.md; the typed result."""
    transfer_bars(
        result["tasks"],
        {n: f["tasks"] for n, f in result["families"].items()},
        out_dir / "transfer.png",
        title=f"Transfer (joint vs single-task, {budget}, {result['split']} split)",
    )
    result["figures"] = [str(out_dir / "transfer.png")]
    result["captions"] = {"transfer": transfer_caption(result["interval"])}
    result["markdown"] = main_table(result) + "\n" + splits_line(result) + "\n\n" + fit_table(result)
    typed = TransferResult.from_dict(result, "transfer.json")
    typed.save(out_dir / "transfer.json")
    (out_dir / "transfer.md").write_text(markdown(result))
    return typed


def splits_line(result: dict) -> str:
    """Which split selected and which reported, per task, and how each model's training ended."""
    parts = [
        f"{t}: selected on `{r['selection']}`, reported on `{r['report']}`" for t, r in result.get("splits", {}).items()
    ]
    return "Splits (train / selection / report roles, docs/DATASETS.md): " + "; ".join(parts) + "."


def fit_table(result: dict) -> str:
    """Per run: steps trained, the cap, the selected step and why training stopped (the first seed's runs)."""
    lines = ["| family | run | steps trained / cap | selected at step | stopped because |", "|---|---|---|---|---|"]
    for name, runs in result.get("runs", {}).items():
        for run_name, run in runs.items():
            fit = run.get("fit") or {}
            lines.append(
                f"| {name} | {run_name} | {fit.get('steps', run.get('steps'))} / {run.get('cap', '-')} | "
                f"{fit.get('best_step') if fit.get('best_step') is not None else 'last'} "
                f"| {fit.get('stop_reason', '-')} |"
            )
    return "\n".join(lines) + "\n"


def main_table(result: dict) -> str:
    """The per-task transfer table alone (markdown), for embedding in reports: each value with its 95 % interval."""
    lines = [
        "| family | task | metric | single-task | multi-task | Δ abs | Δ rel | transfer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, fam in result["families"].items():
        for task, r in fam["tasks"].items():
            rel = fmt_ci(r["relative"], r.get("relative_ci"), digits=1, scale=100.0, signed=True)
            rel = rel if rel == "-" else rel.replace(" [", " % [") + ("" if "[" in rel else " %")
            cells = [
                fmt_ci(r["single"], r.get("single_ci")),
                fmt_ci(r["joint"], r.get("joint_ci")),
                fmt_ci(r["delta"], r.get("delta_ci"), signed=True),
                rel,
            ]
            lines.append(f"| {name} | {task} | {r['metric']} | " + " | ".join(cells) + f" | {r['transfer'] or 'n/a'} |")
    return "\n".join(lines) + "\n"


def markdown(result: dict) -> str:
    lines = [
        "# Transfer: joint multi-task vs single-task training",
        "",
        f"Config `{result['config']}`, budget `{result['budget']}`, metrics on the {result['split']} split (official "
        "protocols). Δ = multi-task − single-task on each task's primary metric (higher is better); relative Δ = Δ / "
        f"|single-task|. Brackets: 95 % intervals ({result.get('interval', '')}). A transfer is positive or negative "
        "only when the interval of Δ excludes zero, otherwise within noise.",
        "",
        main_table(result).rstrip("\n"),
        "",
        splits_line(result),
    ]
    lines += [
        "",
        "| family | seeds | steps (single / joint) | positive | "
        "negative | within noise | mean relative Δ | overrides |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, fam in result["families"].items():
        mean = fmt_ci(fam["mean_relative"], fam.get("mean_relative_ci"), digits=1, scale=100.0, signed=True)
        ov = ", ".join(f"`{o}`" for o in fam["overrides"]) or "(the configured model)"
        if fam.get("joint_variant_of"):
            ov = f"joint run only: {ov}"
        seeds = ", ".join(str(s) for s in fam.get("seeds", [])) or "-"
        lines.append(
            f"| {name} | {seeds} | {fam['steps']['single']} / {fam['steps']['joint']} | {fam['n_positive']} | "
            f"{fam['n_negative']} | {fam['n_within_noise']} | {mean} | {ov} |"
        )
    lines += ["", fit_table(result).rstrip("\n"), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = add_transfer_options(
        add_console_options(
            argparse.ArgumentParser(
                prog="socialfusion transfer",
                description="Single-task vs joint training: the transfer table and figure.",
            )
        )
    )
    args = p.parse_intermixed_args(sys.argv[1:] if argv is None else argv)
    try:  # everything is checked before any training; a ConfigError goes to the dispatcher (one line, exit 2)
        config = load_config(args.config, args.overrides)
        if args.tasks:
            config = select_tasks(config, split_list(args.tasks))
        baselines = normalise_baselines(args.baseline)
        variants = normalise_baselines(args.variant, "--variant")
        seed_list(config, args.seeds)
        for overrides in [*baselines.values(), *variants.values()]:
            apply_overrides(config, overrides)
    except ConfigError:
        raise
    except ValueError as err:  # a malformed --baseline or --seeds
        raise ConfigError(str(err)) from err
    for td in config.data.tasks:
        check_root(td)
    run_transfer(
        config,
        args.out,
        budget=args.budget,
        baselines=baselines,
        progress=not args.no_progress,
        device=args.device,
        resume=args.resume,
        seeds=args.seeds,
        resamples=args.resamples,
        variants=variants,
    )
    print((Path(args.out) / "transfer.md").read_text())
    return 0


def add_transfer_options(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("config", help="preset name (tiny, default, paper) or YAML file")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value, anywhere on the line ")
    p.add_argument(
        "--out", required=True, help="output folder (one run folder per model, transfer.json, transfer.md, figure)"
    )
    p.add_argument(
        "--budget",
        default="plateau",
        choices=BUDGETS,
        help="plateau: every model trains until its selection metric stops improving (default); "
        "equal-steps-per-task / equal-total-steps: fixed step counts",
    )
    add_family_options(p)
    p.add_argument("--tasks", help="comma-separated subset of the config's tasks")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse finished runs under --out (same config) and resume interrupted ones",
    )
    p.add_argument(
        "--seeds", type=int, default=1, help="repeat every run with K seeds; K >= 2 gives t-intervals across seeds"
    )
    p.add_argument(
        "--resamples", type=int, default=RESAMPLES, help="bootstrap resamples of the val samples (default 1000)"
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (the best available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

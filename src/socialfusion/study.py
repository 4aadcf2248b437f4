"""`socialfusion study CONFIG`: the paper's study in one command, for any config and dataset roots.

Stages, in order (each writes its own folder under OUT and its result JSON):

1. **transfer** (`analysis/transfer.py`): a single-task model per task and a joint model, for the configured model
   and every `--baseline` family (e.g. a VLM-style model with its encoder trained), every `--variant` of the joint
   run, over `--seeds` seeds. Under `--budget plateau` (the default) every model trains until its metric on the
   selection split (val_split) stops improving and is scored once, at its best step, on the report split
   (test_split) with the official metrics and 95 % intervals; the positive / negative / within-noise call per task.
2. **gradconf** (`analysis/gradconf.py`): gradient conflict between the tasks at the joint model's selected weights,
   over `--gradconf-batches` batches (>= 16 for conflict frequencies that mean something).
3. **probe** (`analysis/probe.py`): linear probes of the frozen features of any `--encoders` (presets, HF ids,
   `vlm:<id>` for a VLM's vision tower; default: the config's encoder), regularisation chosen on each task's
   selection split, scored on its report split.
4. **report** (`report.py`): report.md / report.html, opening with the question, what was run and the answer per
   task against the paper's claim.

Resumable stage by stage: OUT/study.json records each finished stage with the parameters it ran with; running the
same command again reuses finished stages (a stage whose parameters changed runs again), and the transfer stage
reuses every finished training run and resumes an interrupted one from its last checkpoint. `socialfusion demo` is
this study on the synthetic benchmark with the `default` preset.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .analysis.gradconf import run_gradconf
from .analysis.probe import run_probe
from .analysis.transfer import BUDGETS, add_family_options, normalise_baselines, run_transfer
from .config import ConfigError, apply_overrides, dump_yaml, load_config, select_tasks, split_list
from .core.results import GradconfResult, ProbeResult, TransferResult
from .data.pipeline import check_root
from .errors import UserError, add_console_options
from .models.checkpoint import load_model
from .report import write_report
from .runtime import resolve_device

STAGES = ("transfer", "gradconf", "probe", "report")
# the timing labels of the stages (the demo prints them; tests look for them)
LABELS = {
    "transfer": "transfer: single-task and joint training + evaluation",
    "gradconf": "gradient conflict",
    "probe": "linear probes",
    "report": "report",
}


@dataclass
class StudyPlan:
    """What a study runs besides the config: the protocol of each stage."""

    budget: str = "plateau"
    seeds: int = 1
    baselines: dict[str, list[str]] = field(default_factory=dict)
    variants: dict[str, list[str]] = field(default_factory=dict)
    gradconf_batches: int = 16
    encoders: list[str] | None = None
    probe_layers: list[int] | None = None
    probe_pools: list[str] | None = None
    probe_samples: int | None = None
    probe_gaze_steps: int = 300
    resamples: int = 1000

    def stage_params(self, stage: str) -> dict:
        """The parameters a stage's result depends on (besides the config), as recorded in study.json."""
        keys = {
            "transfer": ("budget", "seeds", "baselines", "variants", "resamples"),
            "gradconf": ("gradconf_batches", "resamples"),
            "probe": ("encoders", "probe_layers", "probe_pools", "probe_samples", "probe_gaze_steps", "resamples"),
            "report": (),
        }[stage]
        return {k: v for k, v in asdict(self).items() if k in keys}


class StudyState:
    """OUT/study.json: the finished stages with the config and parameters they ran with, and their timings."""

    def __init__(self, out: Path, config_text: str):
        self.path = out / "study.json"
        self.config_text = config_text
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.data.setdefault("stages", {})
        self.reused: dict[str, bool] = {}  # stage -> reused in this invocation (a stage after a rerun one runs again)

    def done(self, stage: str, params: dict, upstream: list[str]) -> bool:
        """Finished with the same config and parameters, after the stages it depends on (which must all be reused)."""
        rec = self.data["stages"].get(stage)
        return bool(
            rec
            and rec["config"] == self.config_text
            and rec["params"] == json.loads(json.dumps(params))
            and all(self.reused.get(u) for u in upstream)
        )

    def finish(self, stage: str, params: dict, seconds: float, result_file: str | None):
        self.data["stages"][stage] = {
            "config": self.config_text,
            "params": params,
            "seconds": round(seconds, 1),
            "result": result_file,
        }
        self.path.write_text(json.dumps(self.data, indent=2))


# each stage's result file, as its type
RESULT_TYPES = {"transfer": TransferResult, "gradconf": GradconfResult, "probe": ProbeResult}


def run_study(
    config,
    out,
    plan: StudyPlan | None = None,
    progress: bool = True,
    device: str = "auto",
    data_summary: dict | None = None,
    timings: dict | None = None,
    stages=STAGES,
    data_key: dict | None = None,
) -> dict:
    """Run (or reuse) each stage in `stages`; return {"transfer", "gradconf", "probe", "report", "timings"}.

    A stage is reused when study.json records it finished with the same config, parameters and `data_key` (what
    identifies the data beyond the roots in the config, e.g. the synthetic benchmark's n and seed). A dataset
    changed in place under the same root is not detected: use a new OUT."""
    run = _Study(
        config=config,
        out=Path(out),
        plan=plan or StudyPlan(),
        progress=progress,
        device=device,
        data_summary=data_summary,
        timings=dict(timings or {}),
    )
    run.out.mkdir(parents=True, exist_ok=True)
    run.state = StudyState(run.out, dump_yaml(config) + json.dumps(data_key or {}, sort_keys=True))
    for stage in STAGES:
        if _reuse(run, stage, wanted=stage in stages):
            continue
        if stage not in stages:
            run.results[stage] = {}
            continue
        _run_stage(run, stage)
    run.timings["total"] = round(sum(v for k, v in run.timings.items() if k != "total"), 1)
    run.results["timings"] = run.timings
    return run.results


# the stages whose results a stage reads: when one of them runs again, so does the stage
UPSTREAM = {"transfer": [], "gradconf": ["transfer"], "probe": [], "report": ["transfer", "gradconf", "probe"]}


@dataclass
class _Study:
    """What the stages of one `run_study` call share: the inputs, the stage records, each stage's result and the
    joint model (loaded once, for gradconf and the report)."""

    config: object
    out: Path
    plan: StudyPlan
    progress: bool
    device: str
    data_summary: dict | None
    timings: dict
    state: StudyState | None = None
    results: dict = field(default_factory=dict)
    model: object = None

    @property
    def files(self) -> dict[str, Path]:
        return {
            "transfer": self.out / "transfer" / "transfer.json",
            "gradconf": self.out / "gradconf" / "gradconf.json",
            "probe": self.out / "probe" / "probe.json",
        }

    def joint_model(self):
        if self.model is None:
            self.model, _ = load_model(Path(self.results["transfer"].run("socialfusion", "joint").checkpoint))
            self.model.to(resolve_device(self.device))
        return self.model


def _reuse(run: _Study, stage: str, wanted: bool) -> bool:
    """Load the stage's earlier result when it is reusable, or when it is not wanted and a result exists (later
    stages read it); the report is never reused."""
    files = run.files
    reusable = (
        stage != "report"
        and files[stage].exists()
        and run.state.done(stage, run.plan.stage_params(stage), UPSTREAM[stage])
    )
    if not (reusable or (not wanted and stage != "report" and files[stage].exists())):
        return False
    label = LABELS[stage]
    run.results[stage] = RESULT_TYPES[stage].load(files[stage])
    run.state.reused[stage] = reusable
    rec = run.state.data["stages"].get(stage) or {}
    run.timings[label] = rec.get("seconds", 0.0)
    print(f"== {label}: finished earlier with the same config and parameters, reused ({files[stage]})", flush=True)
    return True


def _run_stage(run: _Study, stage: str) -> None:
    """Run one stage, time it and record it in study.json."""
    params = run.plan.stage_params(stage)
    label = LABELS[stage]
    files = run.files
    if stage in ("gradconf", "report") and not run.results.get("transfer"):
        raise UserError(
            f"the {stage} stage needs the transfer stage's joint model, and {files['transfer']} does not exist",
            hint="run the transfer stage first (--stages transfer,...)",
        )
    print(f"== {label}", flush=True)
    t0 = time.perf_counter()
    run.results[stage] = _STAGE_RUNS[stage](run)
    seconds = time.perf_counter() - t0
    run.timings[label] = round(seconds, 1)
    print(f"   {label}: {run.timings[label]} s", flush=True)
    run.state.finish(stage, params, seconds, str(files[stage]) if stage in files else str(run.out / "report.html"))
    run.state.reused[stage] = False


def _transfer_stage(run: _Study) -> TransferResult:
    plan = run.plan
    return run_transfer(
        run.config,
        run.out / "transfer",
        budget=plan.budget,
        baselines=plan.baselines,
        progress=run.progress,
        device=run.device,
        resume=True,
        seeds=plan.seeds,
        resamples=plan.resamples,
        variants=plan.variants,
    )


def _gradconf_stage(run: _Study) -> GradconfResult:
    return run_gradconf(
        run.joint_model(),
        run.config,
        run.out / "gradconf",
        batches=run.plan.gradconf_batches,
        progress=run.progress,
        resamples=run.plan.resamples,
    )


def _probe_stage(run: _Study) -> ProbeResult:
    plan = run.plan
    return run_probe(
        run.config,
        run.out / "probe",
        encoders=plan.encoders,
        layers=plan.probe_layers,
        pools=plan.probe_pools,
        progress=run.progress,
        device=run.device,
        max_samples=plan.probe_samples,
        gaze_steps=plan.probe_gaze_steps,
        resamples=plan.resamples,
    )


def _report_stage(run: _Study) -> dict:
    # the report lists each stage's own time: the total is summed after the report has run
    run.timings = {k: v for k, v in run.timings.items() if k != "total"}
    return write_report(
        run.out,
        config=run.config,
        model=run.joint_model(),
        transfer=run.results["transfer"],
        probe=run.results["probe"],
        gradconf=run.results["gradconf"],
        data_summary=run.data_summary,
        timings=run.timings,
        plan=asdict(run.plan),
    )


_STAGE_RUNS = {"transfer": _transfer_stage, "gradconf": _gradconf_stage, "probe": _probe_stage, "report": _report_stage}


def add_plan_options(p: argparse.ArgumentParser, defaults: StudyPlan) -> argparse.ArgumentParser:
    """The options that fill a StudyPlan (shared by `study` and `demo`); an option left out takes `defaults`' value
    (`plan_from_args`), so the demo can default to its own scale."""
    d = defaults
    p.add_argument(
        "--seeds",
        type=int,
        help=f"repeat every training run with K seeds (K >= 2: t-intervals across seeds; default {d.seeds})",
    )
    p.add_argument(
        "--budget",
        choices=BUDGETS,
        help=f"the joint model's steps against the single-task models' (default {d.budget})",
    )
    add_family_options(p)
    p.add_argument(
        "--gradconf-batches", type=int, help=f"batches of the gradient-conflict analysis (default {d.gradconf_batches})"
    )
    p.add_argument(
        "--encoders",
        nargs="+",
        help="encoders to probe: presets, YAML configs, HF ids or local paths, vlm:<id> (default: the config's)",
    )
    p.add_argument(
        "--probe-layers",
        help="comma-separated hidden-state indices to probe, e.g. "
        f"-1,-6 (default {d.probe_layers or 'the probe verb default'})",
    )
    p.add_argument(
        "--probe-pools", help=f"comma-separated feature poolings to probe (default {d.probe_pools or 'all'})"
    )
    p.add_argument(
        "--probe-samples",
        type=int,
        help=f"at most N samples per task and split for the probes (default {d.probe_samples or 'all'})",
    )
    p.add_argument("--probe-gaze-steps", type=int, help=f"Adam steps of the gaze probe (default {d.probe_gaze_steps})")
    p.add_argument("--resamples", type=int, help=f"bootstrap resamples for every interval (default {d.resamples})")
    p.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated stages to run (default all: {','.join(STAGES)}); finished ones are reused",
    )
    return p


def plan_from_args(args, defaults: StudyPlan) -> StudyPlan:
    pick = lambda value, default: default if value is None else value  # noqa: E731
    try:
        plan = StudyPlan(
            budget=pick(args.budget, defaults.budget),
            seeds=pick(args.seeds, defaults.seeds),
            baselines=normalise_baselines(args.baseline) or dict(defaults.baselines),
            variants=normalise_baselines(args.variant, "--variant") or dict(defaults.variants),
            gradconf_batches=pick(args.gradconf_batches, defaults.gradconf_batches),
            encoders=args.encoders or defaults.encoders,
            probe_layers=split_list(args.probe_layers, int) or defaults.probe_layers,
            probe_pools=split_list(args.probe_pools) or defaults.probe_pools,
            probe_samples=pick(args.probe_samples, defaults.probe_samples),
            probe_gaze_steps=pick(args.probe_gaze_steps, defaults.probe_gaze_steps),
            resamples=pick(args.resamples, defaults.resamples),
        )
        if plan.seeds < 1 or plan.gradconf_batches < 1 or plan.resamples < 0:
            raise ValueError("--seeds and --gradconf-batches must be >= 1, --resamples >= 0")
    except ValueError as err:
        raise ConfigError(str(err)) from err
    unknown = set(split_list(args.stages) or []) - set(STAGES)
    if unknown:
        raise ConfigError(f"unknown stage(s) {sorted(unknown)}; the stages are {', '.join(STAGES)}")
    return plan


def check_plan(config, plan: StudyPlan):
    """Every override of the baselines and variants applies to the config (before anything trains)."""
    for overrides in [*plan.baselines.values(), *plan.variants.values()]:
        apply_overrides(config, overrides)


def main(argv: list[str] | None = None) -> int:
    p = add_console_options(
        argparse.ArgumentParser(
            prog="socialfusion study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
    )
    p.add_argument("config", help="preset name (default, paper, ...) or YAML file with your dataset roots")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value, anywhere on the line")
    p.add_argument("--out", required=True, help="output folder: transfer/, gradconf/, probe/, report.html, study.json")
    p.add_argument("--tasks", help="comma-separated subset of the config's tasks")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (the best available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_plan_options(p, StudyPlan())
    args = p.parse_intermixed_args(sys.argv[1:] if argv is None else argv)

    config = load_config(args.config, args.overrides)
    if args.tasks:
        config = select_tasks(config, split_list(args.tasks))
    plan = plan_from_args(args, StudyPlan())
    check_plan(config, plan)
    for td in config.data.tasks:
        check_root(td)
    res = run_study(
        config, args.out, plan, progress=not args.no_progress, device=args.device, stages=split_list(args.stages) or []
    )
    if res.get("report"):
        print(res["report"]["summary_text"])
        print(f"report: {Path(args.out) / 'report.html'}  (total {res['timings']['total']} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

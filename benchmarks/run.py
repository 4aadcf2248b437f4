#!/usr/bin/env python
"""SocialFusion benchmarks: one command, interleaved measurements, one process per configuration.

    make benchmark                      # full run (~6-7 min on a lightly shared 2-core CPU, ~10 min under heavy load)
    make benchmark ARGS=--quick         # ~2.5 min: tiny + default fp32 training, classification, predict
    make benchmark ARGS=--only=train-default-bf16   # bf16 autocast training (~3-5 min; slow on CPUs without bf16)
    .venv/bin/python benchmarks/run.py --only train-default,classify
    make benchmark-smoke                # ~30 s: does the harness still run? (every worker kind once, tiny preset;
                                        # writes to --out or a temporary directory; tests/integration runs it)

What is measured (see README.md for the definitions and RESULTS.md for the numbers):
  train-tiny / train-default / train-issue9
      one optimiser step (forward, backward, grad-norm clip, AdamW, zero_grad; for SocialFusion the library's own
      `socialfusion.train.step.train_step`) of SocialFusion with the feature cache (the batch carries `features`),
      SocialFusion from pixels (frozen encoder each step) and a reference built from transformers'
      LlavaForConditionalGeneration + PEFT LoRA with the same encoder, LLM, visual token count, LoRA config, prompt
      tokens and batch; fp32 (and bf16 autocast on `default`); plus a
      2048 x 2048 matmul (the machine's peak) interleaved with the steps, for MFU.
  classify
      model.score_classes (trie-constrained verbalizer scoring) against llm.generate(inputs_embeds=<same prefix>)
      + decoding + parsing, on gesture (verbalizers share first tokens: full path) and expression (fast path).
  predict
      SocialFusion.predict(image, boxes, tasks="all") against one predict call per task.

Every configuration runs in its own worker process (clean RSS high-water marks, no shared allocator state);
the parent asks the workers for one measured unit at a time, in rounds (A, B, C, A, B, C, ... with the order
rotated every round), so that load from other processes on the machine hits every configuration alike. Only one
worker computes at any moment. Results: benchmarks/results/<mode>.json, and the generated tables of
benchmarks/RESULTS.md (the text outside the GENERATED markers is kept).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from harness import host
from harness.analysis import analyse
from harness.common import RESULTS_DIR
from harness.host import loadavg, machine_info
from harness.plans import kinds_measured, plan, plan_kinds, run_plan, smoke_plan
from harness.report import render, write_results_md
from harness.workers import worker_main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--quick", action="store_true", help="~2 minutes: fewer rounds, no bf16, no issue9 row, no profiles"
    )
    ap.add_argument(
        "--only",
        default=None,
        help="comma-separated groups: train-tiny,train-default,train-default-bf16,classify,predict,train-issue9",
    )
    ap.add_argument(
        "--extended",
        action="store_true",
        help="also bf16 autocast training (train-default-bf16) and SF without cache at the issue9 size (~+6 min)",
    )
    ap.add_argument("--no-results-md", action="store_true", help="do not rewrite the generated part of RESULTS.md")
    ap.add_argument(
        "--omp-wait-policy",
        default="passive",
        choices=["passive", "active", "default"],
        help="OMP_WAIT_POLICY of the workers (default: passive, see README)",
    )
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads per worker (default: torch's default, the core count)"
    )
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="check that the harness runs (~30-40 s): every worker kind once at the tiny preset; "
        "writes to --out or a new temporary directory, never to results/ or RESULTS.md",
    )
    ap.add_argument(
        "--out",
        default=None,
        help="directory for <mode>.json/.md/-profiles.txt and the worker logs (default: benchmarks/results/)",
    )
    ap.add_argument(
        "--cache-read",
        action="store_true",
        help="feature-cache read throughput (benchmarks/cache_read.py; ~1 min, with --smoke ~5 s); "
        "writes cache-read.json/.md to --out (default results/) and its RESULTS.md section",
    )
    ap.add_argument(
        "--pipeline",
        action="store_true",
        help="input pipeline: training `default` from JPEG files through DataLoader workers vs from "
        "pre-decoded tensors in memory (benchmarks/pipeline.py; ~10 min, with --smoke ~30 s); writes pipeline.json/.md "
        "to --out (default results/) and its RESULTS.md section",
    )
    ap.add_argument("--repeats", type=int, default=3, help="--pipeline: measured rounds (default 3)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.pipeline:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the other benchmarks' workers; before torch loads
        import pipeline

        out_dir = (
            Path(args.out).resolve()
            if args.out
            else (Path(tempfile.mkdtemp(prefix="socialfusion-bench-smoke-")) if args.smoke else RESULTS_DIR)
        )
        command = "benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
        report = pipeline.run(command.strip(), args.smoke, out_dir, machine_info(), repeats=args.repeats)
        text = pipeline.render(report)
        if not args.smoke and not args.no_results_md and out_dir == RESULTS_DIR:
            write_results_md(text, report["mode"])
        print(text)
        print(f"\nwrote {out_dir / (report['mode'] + '.json')}")
        return 0
    if args.cache_read:
        import cache_read

        out_dir = (
            Path(args.out).resolve()
            if args.out
            else (Path(tempfile.mkdtemp(prefix="socialfusion-bench-smoke-")) if args.smoke else RESULTS_DIR)
        )
        command = "benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
        report = cache_read.run(command.strip(), args.smoke, out_dir, machine_info())
        text = cache_read.render(report)
        if not args.smoke and not args.no_results_md and out_dir == RESULTS_DIR:
            write_results_md(text, report["mode"])
        print(text)
        return 0
    if args.worker:
        worker_main(json.loads(args.worker))
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # skip the interpreter's teardown of torch and transformers (~2 s per worker, nothing to save)
    if args.smoke and (args.quick or args.only or args.extended):
        ap.error("--smoke runs its own plan: not with --quick, --only or --extended")
    host.OMP_WAIT_POLICY = None if args.omp_wait_policy == "default" else args.omp_wait_policy.upper()
    host.THREADS = args.threads
    mode = "smoke" if args.smoke else "quick" if args.quick else ("extended" if args.extended else "full")
    from socialfusion.config import split_list

    only = set(split_list(args.only) or []) or None
    if only:
        mode += "-" + "+".join(sorted(only))
    if args.out:
        results_dir = Path(args.out).resolve()
    elif args.smoke:
        results_dir = Path(tempfile.mkdtemp(prefix="socialfusion-bench-smoke-"))
    else:
        results_dir = RESULTS_DIR
    results_dir.mkdir(parents=True, exist_ok=True)
    log_dir = (
        results_dir / "logs"
        if results_dir != RESULTS_DIR
        else Path(os.environ.get("TMPDIR", "/tmp")) / "socialfusion-bench-logs"
    )
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    t0 = time.perf_counter()
    command = "benchmarks/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {
        "command": command.strip(),
        "mode": mode,
        "omp_wait_policy": host.OMP_WAIT_POLICY or "(environment)",
        "threads_requested": host.THREADS,
        "started": started,
        "load_start": loadavg(),
        "machine": machine_info(),
    }
    print(
        f"socialfusion benchmarks ({mode}); load average {report['load_start']}; worker logs in {log_dir}", flush=True
    )
    groups = smoke_plan() if args.smoke else plan(args.quick, args.extended, only)
    report["groups"] = run_plan(groups, log_dir, one_process=args.smoke)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    report["wall_s"] = time.perf_counter() - t0
    report["load_end"] = loadavg()
    report["analysis"] = analyse(report["groups"])
    # the median seconds per worker kind; the smoke run must measure every kind that any other run has
    report["kinds"] = kinds_measured(report["groups"])
    report["kinds_of_every_run"] = plan_kinds(plan(quick=False, extended=True, only=None))
    unmeasured = [
        k
        for k in report["kinds_of_every_run"]
        if not report["kinds"].get(k) or not all(math.isfinite(v) and v > 0 for v in report["kinds"][k].values())
    ]
    profiles = {}
    for g in report["groups"]:
        for key, val in list(g.get("extra", {}).items()):
            if ":profile:" in key:
                profiles[f"{g['name']}.{key}"] = val.pop("table")
    out = results_dir / f"{mode}.json"
    out.write_text(json.dumps(report, indent=1, default=str))
    if profiles:
        (results_dir / f"{mode}-profiles.txt").write_text("\n\n".join(f"=== {k}\n{v}" for k, v in profiles.items()))
    text = render(report)
    (results_dir / f"{mode}.md").write_text(text + "\n")
    if not args.quick and not args.smoke and not args.no_results_md and results_dir == RESULTS_DIR:
        write_results_md(text, mode)
    print("\n" + text)
    print(f"\nwrote {out} ({report['wall_s'] / 60:.1f} min)")
    if args.smoke and unmeasured:
        print(f"smoke: no finite time for worker kind(s) {', '.join(unmeasured)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

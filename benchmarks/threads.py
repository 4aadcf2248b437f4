#!/usr/bin/env python
"""How many CPU threads should `predict` and `serve` use? One prediction timed per thread count and OpenMP wait
policy, on a quiet machine and with other jobs keeping the cores busy.

    nice -n 10 .venv/bin/python benchmarks/threads.py --json benchmarks/results/threads-idle.json
    nice -n 10 .venv/bin/python benchmarks/threads.py --load 2 --json benchmarks/results/threads-loaded.json
    .venv/bin/python benchmarks/threads.py --smoke   # tiny preset, one worker, two rounds: does it still run? (tested)

One worker process per configuration (torch threads 1..cores, each with libgomp's default spin-waiting and with
OMP_WAIT_POLICY=PASSIVE, which only a fresh process can take); each loads the model once, and the parent asks the
workers for one timed prediction at a time in rotating order, so whatever else runs hits every configuration
alike. A prediction: one 640x480 image with a face, head, hand and two person boxes, all five tasks (`predict`'s
work per image after decoding); with the detection extra installed, one `detect` call on the same image too
(LiteRT threads = torch threads). `--load K` starts K busy-looping processes for the duration (another job on
the machine); load averages at the start and end are recorded either way, since other users' jobs count too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness.stats import cpu_model, spread, table_head

HERE = Path(__file__).resolve().parent
BOXES = [
    {"xyxy": [100, 50, 200, 170], "kind": "face"},
    {"xyxy": [80, 20, 220, 190], "kind": "head"},
    {"xyxy": [300, 200, 380, 290], "kind": "hand"},
    {"xyxy": [20, 10, 320, 470], "kind": "person"},
    {"xyxy": [330, 10, 620, 470], "kind": "person"},
]


def _worker(ckpt: str, threads: int) -> None:
    """Child: load, warm up, then one timed prediction (and detection) per line read from stdin."""
    import warnings

    import numpy as np
    from PIL import Image

    from socialfusion import detect as D
    from socialfusion.api import SocialFusion

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an untrained preset's warning: the compute is the same
        model = SocialFusion.from_pretrained(ckpt, device="cpu", threads=threads)
    image = Image.fromarray((np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8))
    can_detect = D.available()
    model.predict(image, boxes=BOXES)
    if can_detect:
        D.detect(image, threads=threads)
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        t0 = time.perf_counter()
        model.predict(image, boxes=BOXES)
        t1 = time.perf_counter()
        if can_detect:
            D.detect(image, threads=threads)
        print(
            json.dumps({"predict_s": t1 - t0, "detect_s": time.perf_counter() - t1 if can_detect else None}), flush=True
        )


def _start(ckpt: str, threads: int, policy: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("OMP_WAIT_POLICY", None)
    if policy == "PASSIVE":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", "--ckpt", ckpt, "--threads", str(threads)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line or not json.loads(line).get("ready"):
        raise RuntimeError(f"worker threads={threads} policy={policy} did not start")
    return proc


def _ask(proc: subprocess.Popen) -> dict:
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def measure(ckpt: str, thread_counts: list[int], rounds: int, load: int, policies=("default", "PASSIVE")) -> dict:
    configs = [(t, p) for t in thread_counts for p in policies]
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
    try:
        load_start = os.getloadavg()
        workers = {c: _start(ckpt, *c) for c in configs}
        samples: dict = {c: [] for c in configs}
        for r in range(rounds):
            for c in configs[r % len(configs) :] + configs[: r % len(configs)]:  # rotate the order every round
                samples[c].append(_ask(workers[c]))
        for proc in workers.values():
            proc.stdin.close()
            proc.wait(timeout=60)
        load_end = os.getloadavg()
    finally:
        for b in burners:
            b.kill()
    rows = []
    for (threads, policy), s in samples.items():
        pred = [x["predict_s"] for x in s]
        det = [x["detect_s"] for x in s if x["detect_s"] is not None]
        rows.append(
            {
                "threads": threads,
                "omp_wait_policy": policy,
                "predict_s": pred,
                "detect_s": det,
                "predict_median_s": statistics.median(pred),
                "detect_median_s": statistics.median(det) if det else None,
            }
        )
    from socialfusion.numerics import precision_facts

    return {
        "ckpt": ckpt,
        "rounds": rounds,
        "busy_processes": load,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "precision": precision_facts(),
        "loadavg_start": load_start,
        "loadavg_end": load_end,
        "rows": rows,
    }


def table(result: dict) -> str:
    lines = [
        f"{result['cpu']}, {result['cores']} cores; {result['busy_processes']} busy processes started; load average "
        f"{result['loadavg_start'][0]:.2f} -> {result['loadavg_end'][0]:.2f}; {result['rounds']} rounds",
        "",
        *table_head("torch threads", "OMP_WAIT_POLICY", "predict ms, median (min-max)", "detect ms, median (min-max)"),
    ]

    def ms(v):
        return spread(v, ".0f", scale=1000, brackets="()") if v else "-"

    for row in result["rows"]:
        lines.append(
            f"| {row['threads']} | {row['omp_wait_policy']} | {ms(row['predict_s'])} | {ms(row['detect_s'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--ckpt",
        default="default",
        help="checkpoint or preset (default: the default preset; same compute as its checkpoints)",
    )
    p.add_argument("--rounds", type=int, default=8, help="timed predictions per configuration")
    p.add_argument("--load", type=int, default=0, help="busy-looping processes to run meanwhile")
    p.add_argument("--json", help="write the result here")
    p.add_argument("--smoke", action="store_true", help="tiny preset, 2 rounds, 1 thread, PASSIVE: does it still run?")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        _worker(args.ckpt, args.threads)
        return 0
    if args.smoke:
        result = measure("tiny", [1], 2, 0, policies=("PASSIVE",))  # one worker: the harness, not a measurement
    else:
        result = measure(args.ckpt, list(range(1, (os.cpu_count() or 1) + 1)), args.rounds, args.load)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

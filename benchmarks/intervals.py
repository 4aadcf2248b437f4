"""Time of the 95 % bootstrap intervals per task (1000 resamples) on synthetic predictions, n = 100 and 1000.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/intervals.py [--repeats 5] [--resamples 1000]

Times `Task.resampler` (the per-sample work done once: for gaze, each person's AUC) and the bootstrap itself
separately; prints the median and range over the repeats.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from harness.stats import row, spread, table_head

from socialfusion.core.intervals import bootstrap_intervals
from socialfusion.core.schema import Sample
from socialfusion.tasks import build_task


def synthetic(name: str, n: int, rng):
    task = build_task(name)
    if task.readout == "heatmap":
        samples = [
            Sample(id=str(i), task=name, image="x.jpg", points=[tuple(rng.random(2))], inout=1) for i in range(n)
        ]
        return (
            task,
            samples,
            [{"heatmap": rng.random((64, 64)).astype(np.float32), "image_size": (640, 480)} for _ in range(n)],
        )
    c = task.num_classes
    samples = [Sample(id=str(i), task=name, image="x.jpg", label=int(rng.integers(c))) for i in range(n)]
    predictions = []
    for s in samples:
        p = rng.random(c)
        p[s.label] += rng.random()
        predictions.append({"probs": p / p.sum(), "index": int(p.argmax())})
    return task, samples, predictions


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--resamples", type=int, default=1000)
    args = p.parse_args()
    head = table_head(
        "task",
        "n",
        "resampler setup s (median [min, max])",
        f"bootstrap {args.resamples} resamples s (median [min, max])",
    )
    print("\n".join(head))
    for n in (100, 1000):
        for name in ("lam", "expression", "gesture", "relation", "gaze"):
            setup, boot = [], []
            for r in range(args.repeats):
                task, samples, predictions = synthetic(name, n, np.random.default_rng(r))
                t0 = time.perf_counter()
                statistic = task.resampler(samples, predictions)
                t1 = time.perf_counter()
                bootstrap_intervals(statistic, n, args.resamples, seed=r)
                t2 = time.perf_counter()
                setup.append(t1 - t0)
                boot.append(t2 - t1)
            print(row(name, n, spread(setup, sep=", "), spread(boot, sep=", ")), flush=True)


if __name__ == "__main__":
    main()

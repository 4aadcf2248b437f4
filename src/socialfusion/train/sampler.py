"""Multi-task batch sampling. Every batch holds one task; which task and which samples depend only on
(seed, step), so a resumed run draws exactly the batches the uninterrupted run would have drawn.

`round_robin` gives draw d the task d mod T instead of a random one: with `train.grad_accum` = T, every optimizer
step sums one batch of every task (a mixed-task step, as a pooled multi-task dataset gives), instead of stepping on
one task at a time."""

from __future__ import annotations

import numpy as np


def task_probabilities(sizes: dict[str, int], mode: str, temperature: float = 2.0) -> dict[str, float]:
    """proportional: p ~ n; uniform: p = 1/T; temperature: p ~ n^(1/t) (t = 1 proportional, large t uniform);
    round_robin: 1/T (over a cycle of T draws each task comes once)."""
    names = [k for k, n in sizes.items() if n > 0]
    if not names:
        raise ValueError("no task has any training sample")
    n = np.array([sizes[k] for k in names], dtype=np.float64)
    if mode == "proportional":
        w = n
    elif mode in ("uniform", "round_robin"):
        w = np.ones_like(n)
    elif mode == "temperature":
        w = n ** (1.0 / temperature)
    else:
        raise ValueError(f"unknown sampler {mode!r}")
    return dict(zip(names, (w / w.sum()).tolist()))


class MultiTaskSampler:
    def __init__(
        self,
        sizes: dict[str, int],
        batch_size: int,
        mode: str = "proportional",
        temperature: float = 2.0,
        seed: int = 0,
    ):
        self.sizes = sizes
        self.batch_size = batch_size
        self.probs = task_probabilities(sizes, mode, temperature)
        self.mode = mode
        self.seed = seed

    def batch(self, step: int, rank: int = 0, world: int = 1) -> tuple[str, list[int]]:
        """The task and this rank's sample indices for global step `step` (global batch = batch_size * world)."""
        rng = np.random.default_rng([self.seed, step])
        names = list(self.probs)
        if self.mode == "round_robin":
            task = names[step % len(names)]
        else:
            task = names[rng.choice(len(names), p=[self.probs[k] for k in names])]
        n = self.sizes[task]
        total = self.batch_size * world
        idx = rng.choice(n, size=total, replace=total > n).tolist()
        return task, idx[rank * self.batch_size : (rank + 1) * self.batch_size]

    def micro_batches(self, start_step: int, end_step: int, grad_accum: int = 1, rank: int = 0, world: int = 1):
        """(task, indices) of every micro-batch of steps start_step .. end_step - 1, in training order: micro-batch
        `m` of step `s` is draw `s * grad_accum + m`. The plan of a run's `BatchLoader`; a resumed run starts it at
        its restored step, so it draws what the uninterrupted run drew, whatever the number of workers."""
        for step in range(start_step, end_step):
            for micro in range(grad_accum):
                yield self.batch(step * grad_accum + micro, rank, world)

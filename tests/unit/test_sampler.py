"""The multi-task sampler (train/sampler.py): task probabilities per mode, round_robin steps that hold every task,
and draws that depend only on (seed, step)."""

import pytest

from socialfusion.train.sampler import MultiTaskSampler, task_probabilities

SIZES = {"lam": 300, "expression": 100, "gesture": 0, "gaze": 100}


def test_task_probabilities_per_mode():
    assert task_probabilities(SIZES, "proportional") == pytest.approx({"lam": 0.6, "expression": 0.2, "gaze": 0.2})
    assert task_probabilities(SIZES, "uniform") == pytest.approx({"lam": 1 / 3, "expression": 1 / 3, "gaze": 1 / 3})
    assert task_probabilities(SIZES, "round_robin") == task_probabilities(SIZES, "uniform")
    # temperature 2: p ~ sqrt(n) = 17.32, 10, 10
    assert task_probabilities(SIZES, "temperature", 2.0)["lam"] == pytest.approx(300**0.5 / (300**0.5 + 2 * 100**0.5))
    with pytest.raises(ValueError, match="unknown sampler"):
        task_probabilities(SIZES, "greedy")


def test_round_robin_puts_every_task_in_every_step_of_task_count_micro_batches():
    sampler = MultiTaskSampler(SIZES, batch_size=4, mode="round_robin", seed=7)
    draws = list(sampler.micro_batches(0, 6, grad_accum=3))
    steps = [draws[i : i + 3] for i in range(0, len(draws), 3)]
    assert all(sorted(task for task, _ in step) == ["expression", "gaze", "lam"] for step in steps)
    assert all(len(idx) == 4 and max(idx) < SIZES[task] for task, idx in draws)


def test_draws_depend_only_on_seed_and_step_so_a_resumed_run_draws_the_same():
    for mode in ("uniform", "round_robin"):
        sampler = MultiTaskSampler(SIZES, batch_size=4, mode=mode, seed=1)
        whole = list(sampler.micro_batches(0, 10, grad_accum=3))
        resumed = list(MultiTaskSampler(SIZES, batch_size=4, mode=mode, seed=1).micro_batches(4, 10, grad_accum=3))
        assert resumed == whole[12:]
        assert (
            list(MultiTaskSampler(SIZES, batch_size=4, mode=mode, seed=2).micro_batches(0, 10, grad_accum=3)) != whole
        )

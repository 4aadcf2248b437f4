"""PCGrad (train/surgery.py) on worked examples: Yu et al. 2020, Algorithm 1."""

import pytest
import torch

from socialfusion.config import ConfigError, load_config
from socialfusion.train.surgery import flat_grad, pcgrad, set_flat_grad


def test_conflicting_gradients_are_projected_onto_each_others_normal_plane():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # g1 . g2 = -1 < 0
    # g1 - (-1 / 2) g2 = (0.5, 0.5); g2 - (-1 / 1) g1 = (0, 1); the step is their sum
    assert torch.allclose(pcgrad([g1, g2]), torch.tensor([0.5, 1.5]))
    assert torch.dot(torch.tensor([0.5, 0.5]), g2) == 0 and torch.dot(torch.tensor([0.0, 1.0]), g1) == 0


def test_agreeing_gradients_are_summed_unchanged():
    grads = [torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.5, 0.0, 1.0]), torch.tensor([0.0, 1.0, 1.0])]
    assert torch.equal(pcgrad(grads), sum(grads))


def test_the_projection_order_matters_and_follows_the_generator():
    # three tasks where g1 conflicts with both others: projecting against g2 then g3 differs from g3 then g2
    grads = [torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0]), torch.tensor([-1.0, -2.0])]
    results = {tuple(pcgrad(grads, torch.Generator().manual_seed(s)).tolist()) for s in range(20)}
    assert len(results) > 1
    assert torch.equal(pcgrad(grads, torch.Generator().manual_seed(3)), pcgrad(grads, torch.Generator().manual_seed(3)))


def test_flat_gradients_round_trip_and_missing_ones_count_as_zero():
    a, b = torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(3))
    a.grad = torch.arange(4.0).view(2, 2)
    flat = flat_grad([a, b])
    assert flat.tolist() == [0, 1, 2, 3, 0, 0, 0]
    set_flat_grad([a, b], flat * 2)
    assert a.grad.tolist() == [[0, 2], [4, 6]] and b.grad.tolist() == [0, 0, 0]


def test_surgery_needs_several_tasks_in_a_step():
    with pytest.raises(ConfigError, match="needs several tasks in a step"):
        load_config("tiny", ["train.gradient_surgery=pcgrad"])
    assert (
        load_config(
            "tiny", ["train.gradient_surgery=pcgrad", "train.grad_accum=5", "data.sampler=round_robin"]
        ).train.gradient_surgery
        == "pcgrad"
    )

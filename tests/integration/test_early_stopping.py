"""The plateau protocol's training side (train/loop.py): a run stops after `early_stop_patience` evaluations
without a new best, keeps the best step's weights in checkpoints/best, says why it stopped in fit.json, and a run
interrupted mid-way resumes with its early-stopping state and ends where the uninterrupted one ends.

The selection metric is scripted (a function of the step, patched into the loop's evaluation), so the stopping
point is known in advance; the weights are the real trainer's."""

import json

import pytest
import torch
from safetensors.torch import load_file

from socialfusion.config import load_config
from socialfusion.train import loop
from tests.conftest import synth_overrides

# the selection metric at each evaluation step: best at step 4, then two evaluations without improvement
SCRIPT = {2: 0.30, 4: 0.50, 6: 0.45, 8: 0.49, 10: 0.90}


@pytest.fixture
def scripted_eval(monkeypatch):
    calls = []

    def fake_evaluate_all(model, datasets, config, device, rank, world, progress=True, loader=None):
        step = loop_state["step"]
        calls.append(step)
        return {name: {"accuracy": SCRIPT[step], "n": len(ds)} for name, ds in datasets.items()}

    loop_state = {"step": 0}
    real_train_step = loop.train_step

    def counting_train_step(*args, **kwargs):
        loop_state["step"] += 1
        return real_train_step(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate_all", fake_evaluate_all)
    monkeypatch.setattr(loop, "train_step", counting_train_step)
    monkeypatch.setattr(loop, "mean_primary", lambda metrics, tasks: next(iter(metrics.values()))["accuracy"])
    return loop_state, calls


def _config(synth_root, tmp_path):
    return load_config(
        "tiny",
        synth_overrides(synth_root, tmp_path / "cache")
        + [
            "train.steps=10",
            "train.eval_every=2",
            "train.early_stop_patience=2",
            "train.log_every=1",
            "train.save_every=1",
            "train.report_to=none",
        ],
    )


def _expression_only(config):
    from socialfusion.config import select_tasks

    return select_tasks(config, ["expression"])


def test_a_plateau_stops_the_run_and_keeps_the_best_steps_weights(synth_root, tmp_path, scripted_eval):
    state, calls = scripted_eval
    config = _expression_only(_config(synth_root, tmp_path))
    summary = loop.train(config, tmp_path / "run", progress=False)
    fit = json.loads((tmp_path / "run" / "fit.json").read_text())
    assert calls == [2, 4, 6, 8], "stops after two evaluations without a new best (step 10's 0.90 is never reached)"
    assert fit["steps"] == 8 and fit["cap"] == 10 and fit["plateaued"] and fit["stop_reason"].startswith("plateau")
    assert fit["best_step"] == 4 and fit["best_value"] == pytest.approx(0.50)
    assert fit["curve"] == [[2, 0.30], [4, 0.50], [6, 0.45], [8, 0.49]]
    assert fit["selection_split"] == {"expression": "holdout"}
    assert summary["fit"] == fit

    # checkpoints/best holds the weights of step 4: the same run stopped after 4 steps has them in checkpoints/last
    state["step"] = 0
    loop.train(config, tmp_path / "four", progress=False, stop_after=4)
    best = load_file(str(tmp_path / "run" / "checkpoints" / "best" / "trainable.safetensors"))
    at_four = load_file(str(tmp_path / "four" / "checkpoints" / "last" / "trainable.safetensors"))
    last = load_file(str(tmp_path / "run" / "checkpoints" / "last" / "trainable.safetensors"))
    assert best.keys() == at_four.keys()
    for name in best:
        torch.testing.assert_close(best[name], at_four[name], rtol=1e-5, atol=1e-6, msg=name)
    assert any(not torch.allclose(best[n], last[n]) for n in best if n.startswith("connector")), (
        "step 8's weights must differ from step 4's"
    )


def test_resume_keeps_the_early_stopping_state(synth_root, tmp_path, scripted_eval):
    state, calls = scripted_eval
    config = _expression_only(_config(synth_root, tmp_path))
    loop.train(config, tmp_path / "full", progress=False)
    full = json.loads((tmp_path / "full" / "fit.json").read_text())

    state["step"] = 0
    loop.train(config, tmp_path / "cut", progress=False, stop_after=6)  # killed after the evaluation of step 6
    cut = json.loads((tmp_path / "cut" / "fit.json").read_text())
    assert cut["stop_reason"] == "interrupted" and cut["steps"] == 6 and not cut["plateaued"]
    training_state = torch.load(tmp_path / "cut" / "checkpoints" / "last" / "training_state.pt", weights_only=True)
    assert int(training_state["bad_evals"]) == 1 and int(training_state["best_step"]) == 4

    state["step"] = 6
    calls.clear()
    loop.train(config, tmp_path / "cut", resume=True, progress=False)
    resumed = json.loads((tmp_path / "cut" / "fit.json").read_text())
    assert calls == [8], "one more evaluation without improvement is the second in a row: the resumed run stops at 8"
    assert {k: resumed[k] for k in ("steps", "best_step", "best_value", "plateaued", "curve")} == {
        k: full[k] for k in ("steps", "best_step", "best_value", "plateaued", "curve")
    }

    # a run that stopped on its plateau stays stopped
    calls.clear()
    summary = loop.train(config, tmp_path / "cut", resume=True, progress=False)
    assert calls == [] and summary["step"] == 8 and summary["fit"]["plateaued"]

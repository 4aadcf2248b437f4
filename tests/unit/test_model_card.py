"""Model cards: written with every checkpoint (by training, with the run's data and validation against chance),
read back by the Python API, and shown with every answer; presets and card-less checkpoints say what they are."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from socialfusion.api import SocialFusion
from socialfusion.config import load_config, select_tasks
from socialfusion.models.card import CARD_JSON, CARD_MD, NO_CARD, build_card, read_card
from socialfusion.models.checkpoint import load_model, save_checkpoint
from socialfusion.models.factory import build_model
from socialfusion.tasks import tasks_from_config
from tests.conftest import synth_overrides

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore::socialfusion.api.UntrainedModelWarning"),
]


def _image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def tiny():
    config = load_config("tiny")
    return build_model(config.model, tasks=tasks_from_config(config)), config


def _manifest(synthetic: dict[str, bool], n: int = 40) -> dict:
    out = {}
    for task, flag in synthetic.items():
        out[f"{task}/train"] = {"n": n, "sha256": "x", "root": f"/data/{task}", "synthetic": flag}
        out[f"{task}/val"] = {"n": n // 4, "sha256": "y", "root": f"/data/{task}", "synthetic": flag}
    return out


def test_a_card_says_what_the_model_learned_from_and_how_it_compares_with_chance(tiny):
    model, config = tiny
    names = [td.task for td in config.data.tasks]
    facts = {
        "manifest": _manifest({n: True for n in names}),
        "step": 20,
        "validation_step": 20,
        "validation": {"lam": {"map": 0.51, "accuracy": 0.5, "n": 10}, "expression": {"accuracy": 0.9, "n": 10}},
        "chance": {"lam": 0.5, "expression": 0.125},
    }
    card = build_card(model, config, facts)
    assert (
        card["summary"] == "trained on synthetic scenes: not meant for real photos; validation at chance level on lam"
    )
    assert card["steps"] == 20 and card["config"] == "tiny" and card["trained"] is True
    assert [d["task"] for d in card["datasets"]] == names
    lam = next(d for d in card["datasets"] if d["task"] == "lam")
    assert lam == {"task": "lam", "dataset": "ego4d_lam", "train_samples": 40, "val_samples": 10, "synthetic": True}
    assert card["validation"]["tasks"]["expression"] == {"metric": "accuracy", "value": 0.9, "chance": 0.125, "n": 10}
    assert card["validation"]["tasks"]["lam"]["metric"] == "map" and card["at_chance"] == ["lam"]
    assert any("procedurally drawn" in limit for limit in card["limits"]) and card["intended_use"]
    # some tasks synthetic, the rest real
    mixed = build_card(model, config, {"manifest": _manifest({n: n == "gaze" for n in names}), "step": 5})
    assert mixed["summary"] == "trained partly on synthetic scenes (gaze): not meant for real photos"
    assert mixed["validation"] is None
    real = build_card(
        model, select_tasks(config, ["expression"]), {"manifest": _manifest({"expression": False}, n=1000), "step": 300}
    )
    assert real["summary"] == "trained 300 steps: expression on affectnet (1000 samples)"
    assert real["untrained_tasks"] == ["lam", "gesture", "relation", "gaze"]
    # nothing handed over: the card says the data are not recorded
    assert "training data are not recorded" in build_card(model, config)["summary"]
    # chance levels that are not numbers (an unlabelled split) are recorded as unknown, never NaN in the JSON
    nan = build_card(model, config, {"validation": {"lam": {"map": float("nan")}}, "chance": {"lam": math.nan}})
    assert nan["validation"]["tasks"]["lam"]["value"] is None and nan["validation"]["tasks"]["lam"]["chance"] is None


def test_checkpoints_carry_their_card_and_the_api_shows_it(tiny, tmp_path):
    model, config = tiny
    one_task = select_tasks(config, ["lam"])
    facts = {
        "manifest": _manifest({"lam": True}),
        "step": 7,
        "validation": {"lam": {"map": 0.8, "n": 10}},
        "validation_step": 7,
        "chance": {"lam": 0.5},
    }
    ckpt = save_checkpoint(model, one_task, tmp_path / "ckpt", card=facts)
    written = json.loads((ckpt / CARD_JSON).read_text())
    markdown = (ckpt / CARD_MD).read_text()
    assert written["summary"] == "trained on synthetic scenes: not meant for real photos"
    assert (
        written["summary"] in markdown and "| lam | map | 0.800 | 0.500 |" in markdown and "## Intended use" in markdown
    )
    sf = SocialFusion.from_pretrained(ckpt, device="cpu")
    assert sf.card_summary == written["summary"] and sf.warning is None
    [r] = sf.predict(_image(), tasks="lam")
    assert r["model_card"] == written["summary"] and r["warning"] is None
    # a task the checkpoint never trained: its answers say so
    [r] = sf.predict(_image(), tasks="lam,expression")
    assert r["warning"] == "not trained in this checkpoint: expression (answers from untrained weights)"
    load_model(ckpt)  # the card files do not disturb loading or the checksums


def test_old_and_broken_cards(tiny, tmp_path):
    model, config = tiny
    ckpt = save_checkpoint(model, config, tmp_path / "old")
    (ckpt / CARD_JSON).unlink()
    (ckpt / CARD_MD).unlink()
    assert read_card(ckpt) is None
    sf = SocialFusion.from_pretrained(ckpt, device="cpu")
    assert sf.card_summary == NO_CARD and sf.card_summary.startswith("no model card") and sf.warning is None
    (ckpt / CARD_JSON).write_text("{not json")
    broken = SocialFusion.from_pretrained(ckpt, device="cpu")  # a broken card is documentation: the model still loads
    assert broken.card_summary.startswith("model card unreadable") and str(ckpt / CARD_JSON) in broken.card_summary


@pytest.mark.slow
def test_training_writes_the_card_from_the_run(synth_root, tmp_path):
    from socialfusion.train.loop import train

    config = load_config(
        "tiny",
        [
            *synth_overrides(synth_root, tmp_path / "cache"),
            "train.steps=2",
            "train.warmup_steps=1",
            "train.eval_every=2",
        ]
        + [f"data.tasks.{i}.max_eval_samples=8" for i in range(5)],
    )
    train(config, tmp_path / "run", progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    for name in ("last", "best"):
        card = read_card(tmp_path / "run" / "checkpoints" / name)
        assert card["summary"].startswith("trained on synthetic scenes: not meant for real photos")
        assert card["steps"] == 2 and card["validation"]["step"] == 2
        for d in card["datasets"]:
            assert d["synthetic"] is True and d["train_samples"] == manifest[f"{d['task']}/train"]["n"] > 0
            # the selection split, capped at 8 (lam's, expression's and gaze's holdouts of a small train split hold
            # fewer)
            assert d["val_samples"] == manifest[f"{d['task']}/val"]["n"] and 0 < d["val_samples"] <= 8
        for task, v in card["validation"]["tasks"].items():
            assert v["value"] is not None and v["chance"] is not None and 0.0 <= v["chance"] <= 1.0, task
        assert card["validation"]["tasks"]["gaze"]["chance"] == 0.5

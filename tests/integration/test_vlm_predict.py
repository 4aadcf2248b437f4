"""The VLM baselines behind the one model interface: each tiny preset trains 2 steps, saves, loads, and predicts
all five tasks through the Python API, `socialfusion predict` and the HTTP service, with the same answers."""

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from socialfusion.api import SocialFusion
from socialfusion.config import load_config
from socialfusion.models.vlm import VLMBaseline
from socialfusion.runtime import resolve_precision
from socialfusion.serve.http import create_app
from socialfusion.serve.predict_cli import main as predict_main
from socialfusion.train.loop import train
from tests.conftest import PRECISIONS, as_served, in_precision, synth_overrides

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# a box of every kind, so that every task has its own (the face, hand and head share the first person's box)
BOXES = [{"xyxy": [4, 6, 30, 34], "kind": k} for k in ("face", "hand", "head", "person")] + [
    {"xyxy": [34, 8, 60, 40], "kind": "person"}
]


def _image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8))


@pytest.mark.precision  # the API and the service in both, within the test (one training for both)
@pytest.mark.parametrize("preset", ["vlm-tiny-llava", "vlm-tiny-qwen2vl"])
def test_a_trained_vlm_baseline_predicts_through_api_cli_and_service(preset, synth_root, tmp_path):
    config = load_config(
        preset, [*synth_overrides(synth_root, tmp_path / "cache"), "train.steps=2", "train.warmup_steps=1"]
    )
    summary = train(config, tmp_path / "run", progress=False)
    assert summary["step"] == 2
    ckpt = tmp_path / "run" / "checkpoints" / "last"

    sf = SocialFusion.from_pretrained(ckpt, device="cpu")
    assert isinstance(sf.model, VLMBaseline)
    # the Python API and the service in both precisions: the same computation, so the same answers, bit for bit
    buf = io.BytesIO()
    _image().save(buf, format="PNG")
    results = {}
    for precision in PRECISIONS:
        [results[precision]] = in_precision(sf, precision).predict(_image(), boxes=BOXES, tasks="all")
        with TestClient(create_app(in_precision(sf, precision))) as client:
            resp = client.post(
                "/predict",
                files={"image": ("photo.png", buf.getvalue(), "image/png")},
                data={"boxes": json.dumps(BOXES), "tasks": "all"},
            )
        assert resp.status_code == 200, resp.text
        assert resp.json()["tasks"] == as_served(results[precision]), precision
    result = results[resolve_precision("cpu", "auto")]  # what the CLI computes in
    assert list(result["tasks"]) == ["lam", "expression", "gesture", "relation", "gaze"]
    for name, answer in result["tasks"].items():
        if name == "gaze":
            assert (
                answer["heatmap"].shape == (64, 64) and 0 <= answer["point"][0] <= 64 and 0 <= answer["point"][1] <= 48
            )
        else:
            assert sum(answer["probs"].values()) == pytest.approx(1.0, abs=1e-6) and answer["label"] in answer["probs"]

    # the CLI on a file, with the same boxes
    _image().save(tmp_path / "photo.png")
    (tmp_path / "boxes.json").write_text(json.dumps({"photo.png": BOXES}))
    rc = predict_main(
        [
            "--ckpt",
            str(ckpt),
            "--images",
            str(tmp_path / "photo.png"),
            "--boxes",
            str(tmp_path / "boxes.json"),
            "--out",
            str(tmp_path / "pred"),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert rc == 0
    [row] = [json.loads(line) for line in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
    for name in ("lam", "expression", "gesture", "relation"):
        assert row["tasks"][name]["label"] == result["tasks"][name]["label"], name
        assert row["tasks"][name]["probs"] == pytest.approx(result["tasks"][name]["probs"], abs=1e-5)
    assert row["tasks"]["gaze"]["point"] == pytest.approx(result["tasks"]["gaze"]["point"], abs=1e-6)

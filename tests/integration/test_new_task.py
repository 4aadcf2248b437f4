"""A sixth task defined here, in the test module only: 3-class head orientation on the `tiny` preset, read from a
JSONL dataset. It trains, evaluates with its own metric, and predicts through the Python API and the HTTP
service without a line of library code knowing it exists (the proof that a task is one object)."""

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from socialfusion.api import SocialFusion
from socialfusion.config import load_config
from socialfusion.eval.evaluate import evaluate_checkpoint
from socialfusion.serve.http import create_app
from socialfusion.tasks import TASKS
from socialfusion.tasks.base import ClassificationTask
from socialfusion.train.loop import train
from tests.conftest import PRECISIONS, as_served, in_precision

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = ["left", "frontal", "right"]


@TASKS.register("head_orientation")
@dataclass
class HeadOrientation(ClassificationTask):
    name = "head_orientation"
    primary_metric = "balanced_accuracy"
    prompt_templates = {"v1": "<image>\nWhich way does the head in the marked box face? Answer left, frontal or right."}
    classes: list[str] = field(default_factory=lambda: list(CLASSES))

    def metrics(self, labels, probs):
        # its own metric: the mean of the per-class recalls
        pred = probs.argmax(1)
        recalls = [float((pred[labels == c] == c).mean()) for c in range(self.num_classes) if (labels == c).any()]
        return {"balanced_accuracy": float(np.mean(recalls)), "n": int(len(labels))}


def _head(label: int, seed: int) -> Image.Image:
    """A grey head on noise whose nose points left, at the viewer, or right."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 80, (48, 64, 3), dtype=np.uint8))
    d = ImageDraw.Draw(image)
    d.ellipse([20, 10, 44, 38], fill=(200, 180, 160))
    nose = {0: 22, 1: 32, 2: 42}[label]
    d.ellipse([nose - 3, 22, nose + 3, 28], fill=(90, 40, 30))
    return image


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("head_orientation")
    for split, n in (("train", 12), ("val", 9)):
        with open(root / f"{split}.jsonl", "w") as f:
            for i in range(n):
                name = f"{split}_{i}.png"
                _head(i % 3, seed=i + 100 * (split == "val")).save(root / name)
                box = [18 / 64, 8 / 48, 46 / 64, 40 / 48]
                f.write(
                    json.dumps(
                        {
                            "id": f"{split}-{i}",
                            "task": "head_orientation",
                            "image": name,
                            "boxes": [{"xyxy": box, "role": 0}],
                            "label": i % 3,
                        }
                    )
                    + "\n"
                )
    return root


@pytest.fixture(scope="module")
def checkpoint(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = load_config(
        "tiny",
        [
            f"data.tasks=[{{task: head_orientation, dataset: jsonl, root: '{dataset}'}}]",
            "train.steps=3",
            f"train.cache_dir={out / 'cache'}",
            "train.log_every=1",
        ],
    )
    summary = train(config, out, progress=False)
    assert summary["step"] == 3
    losses = [json.loads(line)["loss"] for line in (out / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 3 and all(np.isfinite(losses))
    return out / "checkpoints" / "last"


def test_trains_and_evaluates_with_its_own_metric(checkpoint, tmp_path):
    results = evaluate_checkpoint(checkpoint, tmp_path / "eval", device="cpu")
    metrics = results["metrics"]["head_orientation"]
    assert (
        set(metrics) == {"balanced_accuracy", "n", "ci"}
        and metrics["n"] == 9
        and 0.0 <= metrics["balanced_accuracy"] <= 1.0
    )
    lo, hi = metrics["ci"]["balanced_accuracy"]  # the bootstrap interval works for a metric the library never saw
    assert 0.0 <= lo <= metrics["balanced_accuracy"] <= hi <= 1.0
    rows = [
        json.loads(line) for line in (tmp_path / "eval" / "predictions_head_orientation.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 9 and all(r["pred_name"] in CLASSES and len(r["probs"]) == 3 for r in rows)


@pytest.mark.precision  # the API and the service in both, within the test
def test_predicts_through_the_api_and_the_service(checkpoint):
    sf = SocialFusion.from_pretrained(checkpoint, device="cpu")
    assert "head_orientation" in sf.task_names
    box = {"xyxy": [18, 8, 46, 40], "role": 0}
    [result] = sf.predict(_head(2, seed=7), boxes=[box], tasks=["head_orientation"])
    answer = result["tasks"]["head_orientation"]
    assert answer["label"] in CLASSES and sum(answer["probs"].values()) == pytest.approx(1.0, abs=1e-6)

    import io

    buf = io.BytesIO()
    _head(2, seed=7).save(buf, format="PNG")
    for precision in PRECISIONS:  # the service computes what the API does, bit for bit, in either precision
        sfp = in_precision(sf, precision)
        [direct] = sfp.predict(_head(2, seed=7), boxes=[box], tasks=["head_orientation"])
        with TestClient(create_app(sfp)) as client:
            listed = client.get("/tasks").json()
            assert any(t["name"] == "head_orientation" and t["classes"] == CLASSES for t in listed["tasks"])
            resp = client.post(
                "/predict",
                files={"image": ("h.png", buf.getvalue(), "image/png")},
                data={"boxes": json.dumps([box]), "tasks": "head_orientation"},
            )
        assert resp.status_code == 200, resp.text
        assert resp.json()["tasks"] == as_served(direct), precision

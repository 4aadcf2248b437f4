"""`socialfusion predict --detect` on photos given without boxes: the detectors' boxes reach every task that has
its kind, the others are skipped with the reason, and the overlay draws the detected boxes.

The real detectors run on packaged photos (no photo that ships in a package shows a bare hand, so one test
replaces the detector by a fixed one to see all five tasks answer through the same path)."""

from __future__ import annotations

import json
import sys
import warnings

import pytest
from PIL import Image

from socialfusion import cli, detect as D

needs_models = pytest.mark.skipif(not D.available(), reason=f"detection packages not installed: {D.EXTRA_HINT}")


def _photos(tmp_path):
    """Two packaged portraits side by side (two persons, two faces) and a cat (nobody)."""
    import matplotlib.cbook
    import skimage.data

    astronaut = Image.fromarray(skimage.data.astronaut())
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = Image.open(f).convert("RGB")
    pair = Image.new("RGB", (1024, 600))
    pair.paste(astronaut, (0, 44))
    pair.paste(grace, (512, 0))
    pair.save(tmp_path / "pair.png")
    Image.fromarray(skimage.data.chelsea()).save(tmp_path / "cat.png")
    return tmp_path / "pair.png", tmp_path / "cat.png"


def _predict(capsys, *argv):
    rc = cli.main(["predict", "--ckpt", "tiny", "--tasks", "all", "--no-progress", *map(str, argv)])
    _, err = capsys.readouterr()
    return rc, err


def _lines(out):
    return {
        json.loads(line)["image"].rsplit("/", 1)[-1]: json.loads(line)
        for line in (out / "predictions.jsonl").read_text().splitlines()
    }


@needs_models
def test_detect_feeds_each_task_the_box_of_its_kind(tmp_path, capsys):
    pair, cat = _photos(tmp_path)
    out = tmp_path / "out"
    rc, err = _predict(capsys, "--images", pair, cat, "--detect", "--out", out, "--visualize")
    assert rc == 0, err
    res = _lines(out)

    boxes = res["pair.png"]["boxes"]
    assert all(b["source"] == "detected" and 0.5 <= b["score"] <= 1 for b in boxes)
    kinds = sorted(b["kind"] for b in boxes)
    assert kinds == ["face", "head", "person", "person"], boxes  # one subject, a pair of persons, no hand
    face = next(b for b in boxes if b["kind"] == "face")
    assert face["xyxy"][0] > 512  # the larger face (Grace Hopper's, right half) is the subject
    tasks = res["pair.png"]["tasks"]
    for name in ("lam", "expression", "relation"):
        assert "label" in tasks[name] and "skipped" not in tasks[name], (name, tasks[name])
    assert len(tasks["gaze"]["point"]) == 2
    assert tasks["gesture"] == {"skipped": "no hand box"}
    assert any("no hand found" in n for n in res["pair.png"]["notes"]), res["pair.png"]["notes"]
    # each task read the box of its kind
    assert [boxes[i]["kind"] for i in tasks["expression"]["boxes"]] == ["face"]
    assert [boxes[i]["kind"] for i in tasks["gaze"]["boxes"]] == ["head"]
    assert [boxes[i]["kind"] for i in tasks["relation"]["boxes"]] == ["person", "person"]

    nobody = res["cat.png"]
    assert nobody["boxes"] == [] and all(
        t == {"skipped": "detection found no face, head, hand or person"} for t in nobody["tasks"].values()
    )
    assert (out / "vis" / "pair.png").is_file() and Image.open(out / "vis" / "pair.png").size[0] > 100


def test_all_five_tasks_answer_from_detected_boxes(tmp_path, capsys, monkeypatch):
    """A photo of a hand gesture between two people, as far as the detector says: every task gets its box."""
    fixed = [
        D.Detection("face", (0.30, 0.10, 0.45, 0.35), 0.9),
        D.Detection("head", (0.28, 0.02, 0.47, 0.37), 0.9),
        D.Detection("hand", (0.50, 0.40, 0.62, 0.58), 0.8),
        D.Detection("person", (0.20, 0.00, 0.60, 1.00), 0.9),
        D.Detection("person", (0.60, 0.10, 0.95, 1.00), 0.7),
    ]
    seen = []
    monkeypatch.setattr(D, "require", lambda: None)
    monkeypatch.setattr(D, "detect", lambda image, **kw: seen.append(image.size) or list(fixed))
    Image.new("RGB", (320, 240), (120, 90, 60)).save(tmp_path / "scene.png")
    given = tmp_path / "given.png"
    Image.new("RGB", (64, 64)).save(given)
    (tmp_path / "boxes.json").write_text(json.dumps({"given.png": [{"xyxy": [4, 4, 30, 30], "kind": "face"}]}))
    out = tmp_path / "out"
    rc, err = _predict(
        capsys, "--images", tmp_path / "scene.png", given, "--boxes", tmp_path / "boxes.json", "--detect", "--out", out
    )
    assert rc == 0, err
    assert seen == [(320, 240)]  # an image with boxes of its own is not detected on
    res = _lines(out)
    tasks = res["scene.png"]["tasks"]
    assert set(tasks) == {"lam", "expression", "gesture", "relation", "gaze"}
    for name, answer in tasks.items():
        assert "skipped" not in answer, (name, answer)
    assert [b["kind"] for b in res["scene.png"]["boxes"]] == ["face", "head", "hand", "person", "person"]
    assert res["scene.png"]["boxes"][3]["role"] == 0 and res["scene.png"]["boxes"][3]["xyxy"] == pytest.approx(
        [64.0, 0.0, 192.0, 240.0]
    )
    assert res["given.png"]["boxes"][0]["source"] == "given"


def test_missing_extra_is_one_line_with_the_install_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    rc, err = _predict(capsys, "--images", tmp_path / "a.png", "--detect", "--out", tmp_path / "out")
    lines = err.strip().splitlines()
    assert rc == 2 and "Traceback" not in err, err
    assert lines[0].startswith("error: ") and "socialfusion[detect]" in lines[0]
    assert lines[1].startswith("hint: ") and "--no-deps mediapipe==0.10.21" in lines[1]


@needs_models
def test_http_detect_field(tmp_path, monkeypatch):
    """POST /predict with detect=true: the service finds the boxes; /tasks says detection is available; a bad
    value is a 422, and a server without the extra answers 501 with the install hint."""
    import io

    from fastapi.testclient import TestClient

    from socialfusion.api import SocialFusion
    from socialfusion.serve.http import create_app

    pair, _ = _photos(tmp_path)
    with warnings.catch_warnings():  # the untrained preset's warning: expected here
        warnings.simplefilter("ignore")
        predictor = SocialFusion.from_pretrained("tiny", device="cpu")
    with TestClient(create_app(predictor), raise_server_exceptions=False) as client:
        assert client.get("/tasks").json()["detect"] is True

        def post(detect, **extra):
            files = {"image": ("pair.png", io.BytesIO(pair.read_bytes()), "image/png")}
            return client.post(
                "/predict", files=files, data={"tasks": "expression,relation", "detect": detect, **extra}
            )

        body = post("true").json()
        assert sorted(b["kind"] for b in body["boxes"]) == ["face", "head", "person", "person"], body
        assert all(b["source"] == "detected" and isinstance(b["score"], float) for b in body["boxes"])
        assert "label" in body["tasks"]["expression"] and "label" in body["tasks"]["relation"]
        given = post("true", boxes=json.dumps([{"xyxy": [0.1, 0.1, 0.3, 0.3], "kind": "face"}])).json()
        assert [b["source"] for b in given["boxes"]] == ["given"]  # boxes sent: nothing is detected
        assert post("maybe").status_code == 422
    monkeypatch.setattr(D, "available", lambda: False)
    with TestClient(create_app(predictor), raise_server_exceptions=False) as client:
        assert client.get("/tasks").json()["detect"] is False
        resp = client.post(
            "/predict", files={"image": ("p.png", io.BytesIO(pair.read_bytes()), "image/png")}, data={"detect": "true"}
        )
        assert resp.status_code == 501 and "socialfusion[detect]" in resp.json()["detail"]

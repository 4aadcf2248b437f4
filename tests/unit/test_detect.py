"""socialfusion.detect on photos that ship in packages, against the hand-drawn boxes of benchmarks/detect_eval,
plus the geometry that needs no model (head from face, the palm's hand region, the two largest persons) and the
error when the optional packages are missing."""

from __future__ import annotations

import json
import math
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from socialfusion import detect as D
from tests.conftest import benchmark_script

ROOT = Path(__file__).resolve().parents[2]
LABELS = {e["name"]: e for e in json.loads((ROOT / "benchmarks" / "detect_eval" / "boxes.json").read_text())["images"]}

needs_models = pytest.mark.skipif(not D.available(), reason=f"detection packages not installed: {D.EXTRA_HINT}")


BENCH = benchmark_script("detect")


def photo(name: str) -> Image.Image:
    return BENCH.load(LABELS[name]["loader"])


def to_pixels(det, image):
    w, h = image.size
    x0, y0, x1, y1 = det.xyxy
    return [x0 * w, y0 * h, x1 * w, y1 * h]


def labelled(name: str, kind: str):
    return [b["xyxy"] for b in LABELS[name]["boxes"] if b["kind"] == kind]


@pytest.fixture(scope="module")
def found():
    """detect() once per photo for the whole module (each call costs ~0.1-0.2 s)."""
    if not D.available():
        return {}
    return {
        name: (photo(name), D.detect(photo(name), threads=2))
        for name in ("astronaut", "camera", "grace_hopper", "chelsea", "coffee")
    }


@needs_models
@pytest.mark.parametrize("name", ["astronaut", "camera", "grace_hopper"])
@pytest.mark.parametrize("kind", ["face", "head", "person"])
def test_each_labelled_box_is_found_once(found, name, kind):
    image, dets = found[name]
    [truth] = labelled(name, kind)
    mine = [d for d in dets if d.kind == kind]
    assert len(mine) == 1, f"{name}: {len(mine)} {kind} detections: {mine}"
    overlap = BENCH.iou(to_pixels(mine[0], image), truth)
    assert overlap >= 0.5, f"{name} {kind}: IoU {overlap:.2f} with the label {truth}"
    assert 0.5 <= mine[0].score <= 1.0
    assert (
        all(0.0 <= v <= 1.0 for v in mine[0].xyxy)
        and mine[0].xyxy[0] < mine[0].xyxy[2]
        and mine[0].xyxy[1] < mine[0].xyxy[3]
    )


@needs_models
@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_photos_without_people_give_nothing(found, name):
    image, dets = found[name]
    assert dets == [], f"{name}: {dets}"
    assert D.by_kind(dets) == {k: [] for k in D.KINDS}  # every kind reported, empty: the API says "no X found"


@needs_models
def test_a_false_palm_is_rejected_by_the_hand_landmark_presence(found):
    """Palm detection fires on Grace Hopper's chin (score >= 0.5); the landmark model's presence score is ~0,
    so no hand is reported: the second stage does real work."""
    image, dets = found["grace_hopper"]
    palms = D._run_ssd(image, "palm", D.MIN_SCORE["hand"], 2)
    assert palms, "the palm detector no longer fires on the chin: this test lost its false positive"
    assert [d for d in dets if d.kind == "hand"] == []


@needs_models
def test_palm_decoding_lands_on_the_labelled_glove():
    """The camera man's gloved hands are below the hand thresholds, but the palm detector's best candidate (SSD
    anchors + decoding + letterbox undone) lies on the glove under his chin."""
    image = photo("camera")
    palms = D._run_ssd(image, "palm", 0.3, 2)
    assert palms
    best = max(palms, key=lambda p: p[0])
    overlaps = [BENCH.iou(best[1].tolist(), t) for t in labelled("camera", "hand")]
    assert max(overlaps) >= 0.5, (best[1], overlaps)


@needs_models
def test_kinds_are_honoured_and_unknown_kinds_refused():
    image = photo("astronaut")
    assert {d.kind for d in D.detect(image, kinds=("head",))} == {"head"}
    assert D.detect(image, kinds=()) == []
    with pytest.raises(ValueError, match="unknown detection kind"):
        D.detect(image, kinds=("torso",))


def test_head_from_face_enlarges_upward_and_clips():
    face = (0.4, 0.4, 0.6, 0.6)  # 0.2 x 0.2
    x0, y0, x1, y1 = D.head_from_face(face)
    f = D.HEAD_FROM_FACE
    assert math.isclose(x1 - x0, 0.2 * f["sx"]) and math.isclose(y1 - y0, 0.2 * f["sy"])
    assert math.isclose((x0 + x1) / 2, 0.5)  # centred sideways
    assert y0 < 0.4 - 0.1 and 0.6 < y1 <= 0.6 + 0.1 * 0.2 + 1e-9  # mostly upward: hair; the chin barely moves
    near_top = D.head_from_face((0.0, 0.02, 0.3, 0.32))
    assert near_top[0] == 0.0 and near_top[1] == 0.0 and near_top[3] < 1.0


def test_two_largest_persons_in_pixels():
    def person(x0, y0, x1, y1, s=0.9):
        return D.Detection("person", (x0, y0, x1, y1), s)

    small, tall, wide = person(0.0, 0.0, 0.1, 0.1), person(0.5, 0.0, 0.6, 0.8), person(0.1, 0.5, 0.8, 0.6)
    dets = [small, tall, D.Detection("face", (0.0, 0.0, 1.0, 1.0), 0.99), wide]
    # square image: tall (0.08) > wide (0.07) > small
    assert D.largest(dets, "person", 2) == [tall, wide]
    twin = person(0.5, 0.0, 0.6, 0.8, s=0.95)  # same area as `tall`: the better score first
    assert D.largest([tall, twin], "person", 1) == [twin]
    assert D.largest(dets, "person", 5) == [tall, wide, small]
    assert D.largest([small], "person", 2) == [small]  # fewer than asked: what there is (the API reports it)
    assert D.largest([], "person", 2) == []


def test_palm_region_points_the_fingers_up():
    # wrist (keypoint 0) below the middle-finger base (keypoint 2): no rotation, region moved up half a box
    box = np.array([100.0, 100.0, 140.0, 140.0])
    kps = np.array([[120.0, 138.0], [0, 0], [120.0, 102.0]])
    cx, cy, side, rot = D._palm_roi(box, kps)
    assert math.isclose(rot, 0.0, abs_tol=1e-9) and math.isclose(cx, 120.0) and math.isclose(cy, 100.0)
    assert math.isclose(side, 40 * 2.6)
    # fingers pointing right: the region turns a quarter, and moves right
    kps_right = np.array([[102.0, 120.0], [0, 0], [138.0, 120.0]])
    cx, cy, _, rot = D._palm_roi(box, kps_right)
    assert math.isclose(rot, math.pi / 2) and math.isclose(cx, 140.0) and math.isclose(cy, 120.0)


def test_rotated_crop_puts_the_region_top_at_the_top():
    image = Image.new("RGB", (200, 200))
    image.paste((255, 255, 255), (135, 95, 145, 105))  # a white patch right of the centre, inside the region
    crop, affine = D._crop_rotated(image, (100.0, 100.0, 100.0, math.pi / 2), 50)
    assert np.allclose(np.array([25.0, 25.0, 1.0]) @ affine.T, [100.0, 100.0])  # crop centre -> region centre
    ys, xs = np.nonzero(crop[..., 0] > 128)
    assert len(ys) and ys.mean() < 10 and abs(xs.mean() - 25) < 3  # "up" in the crop is "right" in the image


def test_missing_runtime_names_the_extra(monkeypatch):
    D._model.cache_clear()
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # None in sys.modules: `import` raises ImportError
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(D.DetectorUnavailable, match=r"ai-edge-litert.*socialfusion\[detect\]") as err:
        D.detect(Image.new("RGB", (64, 64)))
    assert "pip install 'socialfusion[detect]'" in err.value.hint  # the CLI prints it as `hint: ...`
    assert D.available() is False
    D._model.cache_clear()


def test_missing_model_wheel_names_it(monkeypatch):
    def no_dist(name):
        raise metadata.PackageNotFoundError(name)

    D._model.cache_clear()
    monkeypatch.setattr(metadata, "distribution", no_dist)
    with pytest.raises(D.DetectorUnavailable, match=r"mediapipe==0\.10\.21") as err:
        D.model_path("face")
    assert "pip install --no-deps mediapipe==0.10.21" in err.value.hint
    D._model.cache_clear()


def test_boxes_for_tasks_pick_one_subject_and_the_two_largest_persons():
    det = D.Detection
    dets = [
        det("face", (0.1, 0.1, 0.2, 0.2), 0.95),
        det("face", (0.5, 0.1, 0.7, 0.3), 0.6),  # the second is larger
        det("head", (0.0, 0.0, 0.3, 0.3), 0.95),
        det("head", (0.4, 0.0, 0.8, 0.4), 0.6),
        det("hand", (0.3, 0.6, 0.4, 0.7), 0.7),
        det("hand", (0.6, 0.6, 0.7, 0.7), 0.9),
        det("person", (0.0, 0.0, 0.3, 1.0), 0.8),
        det("person", (0.4, 0.0, 0.9, 1.0), 0.7),
        det("person", (0.9, 0.5, 1.0, 1.0), 0.9),
    ]
    boxes, note = D.boxes_for_tasks(dets, (200, 100))
    by = {}
    for b in boxes:
        by.setdefault(b["kind"], []).append(b)
    assert [b["xyxy_normalized"] for b in by["face"]] == [[0.5, 0.1, 0.7, 0.3]]
    assert by["face"][0]["xyxy"] == pytest.approx([100.0, 10.0, 140.0, 30.0])  # pixels of a 200 x 100 image
    assert by["head"][0]["xyxy_normalized"] == pytest.approx(list(D.head_from_face((0.5, 0.1, 0.7, 0.3))))
    assert [b["score"] for b in by["hand"]] == [0.9]
    assert [(b["xyxy_normalized"], b["role"]) for b in by["person"]] == [
        ([0.4, 0.0, 0.9, 1.0], 0),
        ([0.0, 0.0, 0.3, 1.0], 1),
    ]
    assert all(b["source"] == "detected" and b["role"] is None for b in by["face"] + by["head"] + by["hand"])
    assert note.startswith("detected 2 faces, 2 heads, 2 hands, 3 persons")

    alone, note = D.boxes_for_tasks([det("person", (0.0, 0.0, 0.5, 1.0), 0.8)], (100, 100))
    assert alone == []  # one person is no pair: relation is skipped for want of person boxes
    assert "no face found" in note and "no hand found" in note and "relation needs two" in note
    assert D.boxes_for_tasks([], (10, 10)) == (
        [],
        "detected nothing; no face found; no head found; no hand found; no person found",
    )

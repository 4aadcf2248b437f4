"""The inference API (socialfusion.api.SocialFusion) and the `predict` verb on the tiny preset."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from socialfusion.api import BoxError, PredictInputError, SocialFusion, TaskError, load_image_bytes, result_to_json
from socialfusion.core.images import ImageError
from socialfusion.numerics import tolerance
from socialfusion.tasks.gesture import HAGRID_CLASSES as HAGRID
from tests.conftest import in_precision

TASKS = ["lam", "expression", "gesture", "relation", "gaze"]


def _image(w=80, h=60, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sf():
    predictor = SocialFusion.from_pretrained("tiny", device="cpu")
    # the box embedding starts at zero (boxes change nothing at init): give it values so boxes matter here
    with torch.no_grad():
        predictor.model.box_embed.embedding.copy_(
            torch.randn(predictor.model.box_embed.embedding.shape, generator=torch.Generator().manual_seed(1))
        )
    return predictor


def _every_kind(first, second) -> list[dict]:
    """A face, head and hand box at `first` and two person boxes: one box for every task."""
    return [{"xyxy": first, "kind": k} for k in ("face", "head", "hand")] + [
        {"xyxy": first, "kind": "person"},
        {"xyxy": second, "kind": "person"},
    ]


def _probs(result, task):
    t = result["tasks"][task]
    return np.array([t["probs"][c] for c in t["probs"]])


def test_every_image_kind_gives_one_result_of_its_size(sf, tmp_path, precision):
    sf = in_precision(sf, precision)
    pil = _image(80, 60)
    path = tmp_path / "a.png"
    pil.save(path)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    array = np.asarray(pil)
    inputs = {
        "path": path,
        "str": str(path),
        "pil": pil,
        "uint8": array,
        "float01": array.astype(np.float32) / 255.0,
        "bytes": buf.getvalue(),
    }
    reference = None
    for kind, image in inputs.items():
        [r] = sf.predict(image, tasks="lam")
        assert (r["width"], r["height"]) == (80, 60), kind
        p = _probs(r, "lam")
        if reference is None:
            reference = p
        np.testing.assert_array_equal(p, reference, err_msg=kind)  # same pixels, the same computation: the same answer
    [r] = sf.predict(str(path), tasks="lam")
    assert r["image"] == str(path)
    grey = sf.predict(np.zeros((20, 30), dtype=np.uint8), tasks="lam")[0]
    rgba = sf.predict(np.zeros((20, 30, 4), dtype=np.uint8), tasks="lam")[0]
    assert (grey["width"], grey["height"]) == (rgba["width"], rgba["height"]) == (30, 20)


def test_all_five_tasks_share_one_encoder_pass_per_image_batch(sf, monkeypatch):
    calls = []
    original = sf.model.encoder.forward

    def counting(pixel_values):
        calls.append(pixel_values.shape[0])
        return original(pixel_values)

    monkeypatch.setattr(sf.model.encoder, "forward", counting)
    images = [_image(64, 48, seed=1), _image(40, 70, seed=2)]
    boxes = [_every_kind([4, 4, 30, 30], [32, 10, 60, 40]), _every_kind([0.1, 0.1, 0.6, 0.5], [0.5, 0.5, 1.0, 1.0])]
    results = sf.predict(images, boxes=boxes, tasks="all")
    assert calls == [2], "one encoder forward for the whole batch of two images and all five tasks"
    assert len(results) == 2
    for r in results:
        assert set(r["tasks"]) == set(TASKS)
        for task in TASKS[:4]:
            t = r["tasks"][task]
            assert t["label"] in sf.model.tasks[task].classes
            assert list(t["probs"]) == sf.model.tasks[task].classes
            assert sum(t["probs"].values()) == pytest.approx(1.0, abs=1e-9)
            assert t["label"] == max(t["probs"], key=t["probs"].get)
        g = r["tasks"]["gaze"]
        assert g["heatmap"].shape == (64, 64) and g["heatmap"].dtype == np.float32
        assert float(g["heatmap"].sum()) == pytest.approx(1.0, abs=1e-4)
        row, col = np.unravel_index(int(np.argmax(g["heatmap"])), (64, 64))
        assert g["point_normalized"] == [col / 64, row / 64]
        assert g["point"] == pytest.approx([col / 64 * r["width"], row / 64 * r["height"]])
        assert 0.0 <= g["inout"] <= 1.0
    calls.clear()
    sf.predict(images, boxes=boxes, tasks=["lam", "gaze"], batch_size=1)
    assert calls == [1, 1], "one encoder pass per batch of images"


def test_all_tasks_in_one_call_equal_each_task_alone_and_share_the_decoder_pass(sf, precision):
    """predict(tasks="all") packs the tasks that use the same boxes into one decoder call on their shared
    [text + image] prefix; every result equals the task's own single-task call within the precision's bound
    (the batching promise, docs/USAGE.md)."""
    from socialfusion.models.llm import decoder_and_head

    sf, tol = in_precision(sf, precision), tolerance(precision)

    images = [_image(64, 48, seed=1), _image(40, 70, seed=2), _image(50, 50, seed=3)]
    boxes = [
        _every_kind([4, 4, 30, 30], [32, 10, 60, 40]),
        [{"xyxy": [0.1, 0.1, 0.4, 0.4], "kind": k} for k in ("face", "head")]
        + [
            {"xyxy": [0.6, 0.6, 0.9, 0.9], "kind": "hand"},
            {"xyxy": [0.7, 0.6, 0.8, 0.7], "kind": "hand"},
            {"xyxy": [0.1, 0.1, 0.4, 0.4], "kind": "person"},
            {"xyxy": [0.5, 0.0, 1.0, 0.5], "kind": "person"},
        ],
        [
            {"xyxy": [0.2, 0.2, 0.7, 0.9], "kind": k} for k in ("face", "head", "hand")
        ],  # no persons: relation skipped here only
    ]
    decoder, _ = decoder_and_head(sf.model.llm)
    calls = []
    handle = decoder.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(kwargs["inputs_embeds"].shape), with_kwargs=True
    )
    try:
        together = sf.predict(images, boxes=boxes, tasks="all")
    finally:
        handle.remove()
    # one call for lam, expression and gaze (their face and head boxes coincide here), one for gesture (the hand
    # boxes), one for relation (two images)
    assert [shape[0] for shape in calls] == [3, 3, 2], calls
    for image, b, r in zip(images, boxes, together):
        assert list(r["tasks"]) == TASKS
        for task in TASKS:
            [alone] = sf.predict(image, boxes=b, tasks=[task])
            if "skipped" in alone["tasks"][task]:
                assert r["tasks"][task] == alone["tasks"][task]
            elif task == "gaze":
                np.testing.assert_allclose(
                    r["tasks"][task]["heatmap"], alone["tasks"][task]["heatmap"], rtol=0, atol=tol.heatmap
                )
                assert r["tasks"][task]["inout"] == pytest.approx(alone["tasks"][task]["inout"], abs=tol.probability)
            else:
                np.testing.assert_allclose(
                    _probs(r, task), _probs(alone, task), rtol=0, atol=tol.probability, err_msg=task
                )
    assert "skipped" in together[2]["tasks"]["relation"]


def test_pixel_and_normalised_boxes_agree_and_boxes_matter(sf, precision):
    sf = in_precision(sf, precision)
    img = _image(200, 100, seed=3)
    px = sf.predict(img, boxes=[{"xyxy": [20, 10, 100, 60], "role": 0}], tasks="lam")[0]
    nm = sf.predict(img, boxes=[{"xyxy": [0.1, 0.1, 0.5, 0.6], "role": 0}], tasks="lam")[0]
    explicit = sf.predict(img, boxes=[{"xyxy": [20, 10, 100, 60], "role": 0, "normalized": False}], tasks="lam")[0]
    assert px["boxes"][0]["xyxy_normalized"] == pytest.approx([0.1, 0.1, 0.5, 0.6])
    assert nm["boxes"][0]["xyxy"] == pytest.approx([20, 10, 100, 60])
    np.testing.assert_array_equal(_probs(px, "lam"), _probs(nm, "lam"))  # the same box either way: the same answer
    np.testing.assert_array_equal(_probs(px, "lam"), _probs(explicit, "lam"))
    # all coordinates <= 1 but declared as pixels: a one-pixel box in the corner, not most of the image
    tiny = sf.predict(img, boxes=[{"xyxy": [0, 0, 1, 1], "role": 0, "normalized": False}], tasks="lam")[0]
    assert tiny["boxes"][0]["xyxy_normalized"] == pytest.approx([0, 0, 0.005, 0.01])
    other = sf.predict(img, boxes=[{"xyxy": [0.6, 0.5, 0.9, 0.9], "role": 0}], tasks="lam")[0]
    assert not np.allclose(_probs(px, "lam"), _probs(other, "lam"), atol=1e-6), "the box must reach the model"


def test_batched_results_equal_one_by_one(sf, precision):
    """Within the precision's bound (the batching promise, docs/USAGE.md)."""
    sf, tol = in_precision(sf, precision), tolerance(precision)
    images = [_image(50, 50, seed=s) for s in range(3)]
    boxes = [
        [
            {"xyxy": [0.1, 0.1, 0.4, 0.4], "kind": "face"},
            {"xyxy": [0.6, 0.6, 0.9, 0.9], "kind": "head"},
            {"xyxy": [0.6, 0.1, 0.9, 0.3], "kind": "hand"},
        ],
        None,
        [{"xyxy": [10, 10, 40, 30], "kind": "face"}, {"xyxy": [8, 8, 42, 34], "kind": "head"}],
    ]
    together = sf.predict(images, boxes=boxes, tasks=["lam", "gaze"])
    for image, b, r in zip(images, boxes, together):
        [alone] = sf.predict(image, boxes=b, tasks=["lam", "gaze"])
        np.testing.assert_allclose(_probs(r, "lam"), _probs(alone, "lam"), rtol=0, atol=tol.probability)
        np.testing.assert_allclose(
            r["tasks"]["gaze"]["heatmap"], alone["tasks"]["gaze"]["heatmap"], rtol=0, atol=tol.heatmap
        )


def test_default_whole_image_box_and_relation_needs_two_roles(sf):
    img = _image(60, 40, seed=4)
    [r] = sf.predict(img, tasks=["lam", "relation"])
    assert r["boxes"] == [
        {"xyxy": [0, 0, 60, 40], "xyxy_normalized": [0, 0, 1, 1], "kind": None, "role": 0, "source": "whole_image"}
    ]
    assert "skipped" in r["tasks"]["relation"] and "role" in r["tasks"]["relation"]["skipped"]
    assert r["tasks"]["lam"]["label"] in ("looking", "not_looking")
    assert r["notes"]
    [r] = sf.predict(
        img, boxes=[{"xyxy": [0, 0, 0.5, 1], "role": 0}, {"xyxy": [0.5, 0, 1, 1], "role": 1}], tasks="relation"
    )
    assert r["tasks"]["relation"]["label"] in sf.model.tasks["relation"].classes
    # a role-1 box alone: the single-person task has no subject and says so
    [r] = sf.predict(img, boxes=[{"xyxy": [0.5, 0, 1, 1], "role": 1}], tasks="lam")
    assert r["tasks"]["lam"] == {"skipped": "lam needs a role-0 box"}


def test_result_to_json_round_trips(sf):
    [r] = sf.predict(_image(30, 30), tasks=["lam", "gaze"])
    data = json.loads(json.dumps(result_to_json(r)))
    heat = np.array(data["tasks"]["gaze"]["heatmap"])
    assert heat.shape == (64, 64) and np.all(np.round(heat, 4) == heat)
    assert "heatmap" not in result_to_json(r, heatmap="omit")["tasks"]["gaze"]
    assert "heatmap" in r["tasks"]["gaze"], "result_to_json must not modify the result"


@pytest.mark.parametrize(
    "boxes, match",
    [
        ([{"xyxy": [0.5, 0.1, 0.2, 0.4]}], "x1 <= x2"),
        ([{"xyxy": [10, 10, 500, 20]}], "outside the image"),
        ([{"xyxy": [-0.1, 0.1, 0.2, 0.4]}], "outside the image"),
        ([{"xyxy": [0.1, 0.1, 1.5, 0.4], "normalized": True}], "outside the image"),
        ([{"xyxy": [0.1, 0.1, 0.2]}], "4 numbers"),
        ([{"xyxy": ["a", 0, 1, 1]}], "numbers"),
        ([{"xyxy": [0.1, float("nan"), 0.2, 0.3]}], "finite"),
        ([{"xyxy": [0.1, 0.1, 0.2, 0.3], "role": -1}], "role"),
        ([{"xyxy": [0.1, 0.1, 0.2, 0.3], "role": "0"}], "role"),
        ([{"xyxy": [0.1, 0.1, 0.2, 0.3], "colour": "red"}], "unknown key"),
        (["0.1,0.1,0.2,0.3"], "box is an object"),
        ([{"xyxy": [0.1, 0.1, 0.2, 0.3], "kind": "elbow"}], "'kind' must be one of face, hand, head, person"),
        (
            [{"xyxy": [0.1, 0.1, 0.2, 0.3], "kind": "face"}, {"xyxy": [0.1, 0.1, 0.2, 0.3]}],
            "box 1: no 'kind' while other boxes have one",
        ),
        ("nope", "list of box objects"),
    ],
)
def test_bad_boxes_are_named(sf, boxes, match):
    with pytest.raises(BoxError, match=match):
        sf.predict(_image(100, 80), boxes=boxes, tasks="lam")


def test_bad_tasks_images_and_batches(sf):
    img = _image(20, 20)
    with pytest.raises(TaskError, match="unknown task 'smile'"):
        sf.predict(img, tasks="lam,smile")
    with pytest.raises(TaskError, match="no task"):
        sf.predict(img, tasks=[])
    with pytest.raises(BoxError, match="2 images"):
        sf.predict([img, img], boxes=[None])
    with pytest.raises(PredictInputError, match="shape"):
        sf.predict(np.zeros((4, 4, 5), dtype=np.uint8))
    with pytest.raises(PredictInputError, match="unsupported image type"):
        sf.predict(12345)
    with pytest.raises(ImageError, match="not a readable image"):
        sf.predict(b"this is not an image")
    with pytest.raises(ImageError, match="image file not found"):
        sf.predict("/nonexistent/image.png")
    assert sf.resolve_tasks("all") == TASKS
    assert sf.resolve_tasks(" gaze , lam ,gaze") == ["gaze", "lam"]


def test_load_image_bytes_refuses_bombs_and_truncation():
    buf = io.BytesIO()
    _image(64, 64).save(buf, format="PNG")
    data = buf.getvalue()
    with pytest.raises(ImageError, match="cannot decode"):
        load_image_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="decompression bomb"):
        load_image_bytes(data, max_pixels=64 * 64 - 1)
    with pytest.raises(ImageError, match="empty"):
        load_image_bytes(b"")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: width and height swap once upright
    buf = io.BytesIO()
    _image(40, 20).save(buf, format="JPEG", exif=exif)
    assert load_image_bytes(buf.getvalue()).size == (20, 40)


def test_predict_verb_writes_jsonl_overlays_and_counts_bad_images(tmp_path, capsys):
    from socialfusion.cli import main

    src = tmp_path / "imgs"
    src.mkdir()
    _image(64, 48, seed=5).save(src / "one.png")
    _image(48, 64, seed=6).save(src / "two.jpg")
    _image(40, 40, seed=7).save(src / "three.png")
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (src / "notes.txt").write_text("ignored: not an image suffix")
    boxes = {
        "one.png": [
            {"xyxy": [4, 4, 30, 30], "kind": "face"},
            {"xyxy": [4, 2, 32, 34], "kind": "head"},
            {"xyxy": [2, 2, 30, 46], "kind": "person"},
            {"xyxy": [30, 10, 60, 40], "kind": "person"},
        ],
        "two.jpg": [{"xyxy": [0.1, 0.1, 0.3, 1.5], "normalized": True, "kind": "face"}],
        "three.png": [{"xyxy": [4, 4, 20, 20], "role": 0}],
    }  # untagged, and the tasks take different kinds
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            "--ckpt",
            "tiny",
            "--dir",
            str(src),
            "--boxes",
            str(tmp_path / "boxes.json"),
            "--tasks",
            "all",
            "--out",
            str(out),
            "--visualize",
            "--batch-size",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [line["image"] for line in lines] == [str(src / "one.png")]
    rec = lines[0]
    assert list(rec["tasks"]) == TASKS
    # each task read its own kind of box; gesture had no hand box and says so
    assert rec["tasks"]["lam"]["boxes"] == [0] and rec["tasks"]["expression"]["boxes"] == [0]
    assert rec["tasks"]["gaze"]["boxes"] == [1] and rec["tasks"]["relation"]["boxes"] == [2, 3]
    assert rec["tasks"]["gesture"] == {"skipped": "no hand box"}
    assert "heatmap" not in rec["tasks"]["gaze"] and len(rec["tasks"]["gaze"]["point"]) == 2
    assert rec["warning"].startswith("UNTRAINED") and rec["model_card"] == rec["warning"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 4 and summary["predicted"] == 1 and summary["skipped"] == 3
    assert summary["warning"].startswith("UNTRAINED")
    reasons = {s["image"].rsplit("/", 1)[-1]: s["reason"] for s in summary["skipped_files"]}
    assert "not a readable image" in reasons["broken.png"] and "outside the image" in reasons["two.jpg"]
    assert "boxes without 'kind' are ambiguous" in reasons["three.png"] and "gesture takes hand" in reasons["three.png"]
    err = capsys.readouterr().err
    assert "broken.png" in err and "two.jpg" in err
    assert "WARNING: UNTRAINED: 'tiny' is a preset" in err, "an untrained preset is announced loudly on stderr"
    png = Image.open(out / "vis" / "one.png")
    assert png.size[0] == 800 and png.size[1] > 600  # the 800x600 picture, the answers in a panel below it
    # the older role-only form still works for one task
    (tmp_path / "roles.json").write_text(json.dumps({"three.png": [{"xyxy": [4, 4, 20, 20], "role": 0}]}))
    assert (
        main(
            [
                "predict",
                "--ckpt",
                "tiny",
                "--images",
                str(src / "three.png"),
                "--boxes",
                str(tmp_path / "roles.json"),
                "--tasks",
                "gesture",
                "--out",
                str(tmp_path / "out2"),
                "--no-progress",
            ]
        )
        == 0
    )
    [row] = [json.loads(line) for line in (tmp_path / "out2" / "predictions.jsonl").read_text().splitlines()]
    assert row["tasks"]["gesture"]["label"] in HAGRID and row["tasks"]["gesture"]["boxes"] == [0]
    # usage errors are exit code 2 with a message, not a traceback
    assert (
        main(["predict", "--ckpt", "tiny", "--images", str(src / "one.png"), "--tasks", "smile", "--out", str(out)])
        == 2
    )
    assert main(["predict", "--ckpt", "no-such-preset", "--images", str(src / "one.png"), "--out", str(out)]) == 2


# ------------------------------------------------------------------------------------------- boxes by kind

FACE, HAND, HEAD = [0.1, 0.1, 0.35, 0.45], [0.6, 0.55, 0.8, 0.9], [0.08, 0.05, 0.37, 0.5]
PERSON_A, PERSON_B = [0.0, 0.0, 0.5, 1.0], [0.5, 0.1, 1.0, 1.0]


def test_each_task_reads_the_box_of_its_kind(sf, precision):
    """A face, a hand, a head and two persons in one call: every task gets its own box, and its answer equals the
    task run alone on that box in the older role-only form (within the precision's bound)."""
    sf, tol = in_precision(sf, precision), tolerance(precision)
    img = _image(100, 80, seed=11)
    boxes = [
        {"xyxy": FACE, "kind": "face"},
        {"xyxy": HAND, "kind": "hand"},
        {"xyxy": PERSON_A, "kind": "person"},
        {"xyxy": PERSON_B, "kind": "person"},
        {"xyxy": HEAD, "kind": "head"},
    ]
    [r] = sf.predict(img, boxes=boxes, tasks="all")
    used = {name: t["boxes"] for name, t in r["tasks"].items()}
    assert used == {"lam": [0], "expression": [0], "gesture": [1], "relation": [2, 3], "gaze": [4]}
    alone_boxes = {
        "lam": [{"xyxy": FACE}],
        "expression": [{"xyxy": FACE}],
        "gesture": [{"xyxy": HAND}],
        "relation": [{"xyxy": PERSON_A, "role": 0}, {"xyxy": PERSON_B, "role": 1}],
        "gaze": [{"xyxy": HEAD}],
    }
    for task, b in alone_boxes.items():
        [alone] = sf.predict(img, boxes=b, tasks=[task])
        if task == "gaze":
            np.testing.assert_allclose(
                r["tasks"]["gaze"]["heatmap"], alone["tasks"]["gaze"]["heatmap"], rtol=0, atol=tol.heatmap
            )
        else:
            np.testing.assert_allclose(_probs(r, task), _probs(alone, task), rtol=0, atol=tol.probability, err_msg=task)
    # and not the face: the gesture task on the face box answers differently (boxes reach the model); both calls
    # alone, so the difference is the box's and not another grouping's rounding
    [on_face] = sf.predict(img, boxes=[{"xyxy": FACE}], tasks=["gesture"])
    [on_hand] = sf.predict(img, boxes=[{"xyxy": HAND}], tasks=["gesture"])
    assert not np.allclose(_probs(on_hand, "gesture"), _probs(on_face, "gesture"), atol=1e-6)


def test_a_task_without_its_kind_of_box_is_skipped_with_the_reason(sf):
    img = _image(100, 80, seed=12)
    [r] = sf.predict(img, boxes=[{"xyxy": FACE, "kind": "face"}], tasks="gesture")
    assert r["tasks"] == {"gesture": {"skipped": "no hand box"}}
    [r] = sf.predict(img, boxes=[{"xyxy": FACE, "kind": "face"}], tasks="all")
    assert r["tasks"]["lam"]["boxes"] == [0] and r["tasks"]["expression"]["boxes"] == [0]
    assert r["tasks"]["gaze"] == {"skipped": "no head box"}
    assert r["tasks"]["relation"] == {"skipped": "no person boxes (relation needs 2)"}
    [r] = sf.predict(img, boxes=[{"xyxy": PERSON_A, "kind": "person"}], tasks="relation")
    assert "needs 2 person boxes and 1 were given" in r["tasks"]["relation"]["skipped"]


def test_untagged_boxes_are_read_by_role_only_where_unambiguous(sf):
    img = _image(100, 80, seed=13)
    face = [{"xyxy": FACE, "role": 0}]
    [one] = sf.predict(img, boxes=face, tasks="gesture")  # one task: its box
    assert one["tasks"]["gesture"]["boxes"] == [0]
    [same_kind] = sf.predict(img, boxes=face, tasks="lam,expression")  # both take a face
    assert same_kind["tasks"]["lam"]["boxes"] == [0] and same_kind["tasks"]["expression"]["boxes"] == [0]
    with pytest.raises(BoxError, match=r"ambiguous for these tasks \(lam takes face, gesture takes hand\)"):
        sf.predict(img, boxes=face, tasks="lam,gesture")
    with pytest.raises(BoxError, match="relation takes person \\+ person"):
        sf.predict([img, img], boxes=[None, face + [{"xyxy": PERSON_B, "role": 1}]], tasks="lam,relation")


def test_the_relation_pair_by_role_or_by_order(sf, precision):
    sf = in_precision(sf, precision)
    img = _image(100, 80, seed=14)
    third = [0.3, 0.2, 0.6, 0.9]
    [r] = sf.predict(img, boxes=[{"xyxy": p, "kind": "person"} for p in (PERSON_A, third, PERSON_B)], tasks="relation")
    assert "mark the pair with 'role' 0 and 1" in r["tasks"]["relation"]["skipped"]
    marked = [
        {"xyxy": PERSON_B, "kind": "person", "role": 1},
        {"xyxy": third, "kind": "person"},
        {"xyxy": PERSON_A, "kind": "person", "role": 0},
    ]
    [r] = sf.predict(img, boxes=marked, tasks="relation")
    assert r["tasks"]["relation"]["boxes"] == [0, 2]
    [ordered] = sf.predict(
        img, boxes=[{"xyxy": PERSON_A, "kind": "person"}, {"xyxy": PERSON_B, "kind": "person"}], tasks="relation"
    )
    np.testing.assert_array_equal(_probs(r, "relation"), _probs(ordered, "relation"))  # the same pair: the same answer
    [bad] = sf.predict(
        img,
        boxes=[{"xyxy": PERSON_A, "kind": "person", "role": 0}, {"xyxy": PERSON_B, "kind": "person", "role": 0}],
        tasks="relation",
    )
    assert "one person box per role 0..1; the roles given are [0, 0]" in bad["tasks"]["relation"]["skipped"]


def test_a_preset_warns_and_every_answer_carries_the_warning(sf):
    from socialfusion.api import UntrainedModelWarning

    with pytest.warns(UntrainedModelWarning, match="UNTRAINED: 'tiny' is a preset"):
        preset = SocialFusion.from_pretrained("tiny", device="cpu")
    assert preset.warning and preset.card_summary == preset.warning
    [r] = preset.predict(_image(30, 30), tasks="lam")
    assert r["warning"] == preset.warning and r["model_card"] == preset.card_summary
    # a model handed over directly, with no card: the answers say there is none, and warn of nothing
    bare = SocialFusion(preset.model, preset.config, device="cpu")
    [r] = bare.predict(_image(30, 30), tasks="lam")
    assert r["model_card"].startswith("no model card") and r["warning"] is None


def test_the_readme_boxes_json_example_is_valid_and_does_what_it_says(sf):
    """The README's complete boxes.json: family.jpg gets all five tasks, portrait.png the two face tasks."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Predicting on your own photo") :]
    table = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    [family] = sf.predict(_image(1100, 1040, seed=8), boxes=table["family.jpg"], tasks="all")
    assert not [n for n, t in family["tasks"].items() if "skipped" in t], family["tasks"]
    assert family["tasks"]["relation"]["boxes"] == [3, 4] and family["tasks"]["gesture"]["boxes"] == [2]
    [portrait] = sf.predict(_image(200, 300, seed=9), boxes=table["portrait.png"], tasks="all")
    assert sorted(n for n, t in portrait["tasks"].items() if "skipped" not in t) == ["expression", "lam"]


def test_every_task_declares_one_known_box_kind_per_role():
    from socialfusion.tasks import TASK_NAMES, TASKS, load_all
    from socialfusion.tasks.base import BOX_KINDS

    load_all()
    for name in TASK_NAMES:
        task = TASKS.get(name)
        assert len(task.box_kinds) == task.num_roles and set(task.box_kinds) <= set(BOX_KINDS), name

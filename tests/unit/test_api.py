"""The inference API (socialfusion.api.SocialFusion) and the `predict` verb on the tiny preset."""

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from socialfusion.api import BoxError, PredictInputError, SocialFusion, TaskError, load_image_bytes, result_to_json
from socialfusion.data.images import ImageError

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
        predictor.model.box_embed.embedding.copy_(torch.randn(predictor.model.box_embed.embedding.shape, generator=torch.Generator().manual_seed(1)))
    return predictor


def _probs(result, task):
    t = result["tasks"][task]
    return np.array([t["probs"][c] for c in t["probs"]])


def test_every_image_kind_gives_one_result_of_its_size(sf, tmp_path):
    pil = _image(80, 60)
    path = tmp_path / "a.png"
    pil.save(path)
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    array = np.asarray(pil)
    inputs = {"path": path, "str": str(path), "pil": pil, "uint8": array, "float01": array.astype(np.float32) / 255.0, "bytes": buf.getvalue()}
    reference = None
    for kind, image in inputs.items():
        [r] = sf.predict(image, tasks="lam")
        assert (r["width"], r["height"]) == (80, 60), kind
        p = _probs(r, "lam")
        if reference is None:
            reference = p
        np.testing.assert_allclose(p, reference, atol=1e-5, err_msg=kind)  # same pixels, same answer
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
    boxes = [[{"xyxy": [4, 4, 30, 30], "role": 0}, {"xyxy": [32, 10, 60, 40], "role": 1}], [{"xyxy": [0.1, 0.1, 0.6, 0.5], "role": 0}, {"xyxy": [0.5, 0.5, 1.0, 1.0], "role": 1}]]
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


def test_all_tasks_in_one_call_equal_each_task_alone_and_share_the_decoder_pass(sf):
    """predict(tasks="all") packs the tasks that use the same boxes into one decoder call on their shared
    [text + image] prefix; every result equals the task's own single-task call."""
    from socialfusion.models.llm import decoder_and_head

    images = [_image(64, 48, seed=1), _image(40, 70, seed=2), _image(50, 50, seed=3)]
    boxes = [
        [{"xyxy": [4, 4, 30, 30], "role": 0}, {"xyxy": [32, 10, 60, 40], "role": 1}],
        [{"xyxy": [0.1, 0.1, 0.4, 0.4], "role": 0}, {"xyxy": [0.6, 0.6, 0.9, 0.9], "role": 0}, {"xyxy": [0.5, 0.0, 1.0, 0.5], "role": 1}],
        [{"xyxy": [0.2, 0.2, 0.7, 0.9], "role": 0}],  # no second person: relation is skipped for this image only
    ]
    decoder, _ = decoder_and_head(sf.model.llm)
    calls = []
    handle = decoder.register_forward_pre_hook(lambda mod, args, kwargs: calls.append(kwargs["inputs_embeds"].shape), with_kwargs=True)
    try:
        together = sf.predict(images, boxes=boxes, tasks="all")
    finally:
        handle.remove()
    # one call for lam, expression, gesture and gaze (role-0 boxes, all three images), one for relation (two images)
    assert [shape[0] for shape in calls] == [3, 2], calls
    for image, b, r in zip(images, boxes, together):
        assert list(r["tasks"]) == TASKS
        for task in TASKS:
            [alone] = sf.predict(image, boxes=b, tasks=[task])
            if "skipped" in alone["tasks"][task]:
                assert r["tasks"][task] == alone["tasks"][task]
            elif task == "gaze":
                np.testing.assert_allclose(r["tasks"][task]["heatmap"], alone["tasks"][task]["heatmap"], rtol=0, atol=1e-5)
                assert r["tasks"][task]["inout"] == pytest.approx(alone["tasks"][task]["inout"], abs=1e-5)
            else:
                np.testing.assert_allclose(_probs(r, task), _probs(alone, task), rtol=0, atol=1e-5, err_msg=task)
    assert "skipped" in together[2]["tasks"]["relation"]


def test_pixel_and_normalised_boxes_agree_and_boxes_matter(sf):
    img = _image(200, 100, seed=3)
    px = sf.predict(img, boxes=[{"xyxy": [20, 10, 100, 60], "role": 0}], tasks="lam")[0]
    nm = sf.predict(img, boxes=[{"xyxy": [0.1, 0.1, 0.5, 0.6], "role": 0}], tasks="lam")[0]
    explicit = sf.predict(img, boxes=[{"xyxy": [20, 10, 100, 60], "role": 0, "normalized": False}], tasks="lam")[0]
    assert px["boxes"][0]["xyxy_normalized"] == pytest.approx([0.1, 0.1, 0.5, 0.6])
    assert nm["boxes"][0]["xyxy"] == pytest.approx([20, 10, 100, 60])
    np.testing.assert_allclose(_probs(px, "lam"), _probs(nm, "lam"), atol=1e-6)
    np.testing.assert_allclose(_probs(px, "lam"), _probs(explicit, "lam"), atol=1e-6)
    # all coordinates <= 1 but declared as pixels: a one-pixel box in the corner, not most of the image
    tiny = sf.predict(img, boxes=[{"xyxy": [0, 0, 1, 1], "role": 0, "normalized": False}], tasks="lam")[0]
    assert tiny["boxes"][0]["xyxy_normalized"] == pytest.approx([0, 0, 0.005, 0.01])
    other = sf.predict(img, boxes=[{"xyxy": [0.6, 0.5, 0.9, 0.9], "role": 0}], tasks="lam")[0]
    assert not np.allclose(_probs(px, "lam"), _probs(other, "lam"), atol=1e-6), "the box must reach the model"


def test_batched_results_equal_one_by_one(sf):
    images = [_image(50, 50, seed=s) for s in range(3)]
    boxes = [
        [{"xyxy": [0.1, 0.1, 0.4, 0.4], "role": 0}, {"xyxy": [0.6, 0.6, 0.9, 0.9], "role": 0}],  # two hands (gesture)
        None,
        [{"xyxy": [10, 10, 40, 30], "role": 0}],
    ]
    together = sf.predict(images, boxes=boxes, tasks=["lam", "gaze"])
    for image, b, r in zip(images, boxes, together):
        [alone] = sf.predict(image, boxes=b, tasks=["lam", "gaze"])
        np.testing.assert_allclose(_probs(r, "lam"), _probs(alone, "lam"), atol=1e-5)
        np.testing.assert_allclose(r["tasks"]["gaze"]["heatmap"], alone["tasks"]["gaze"]["heatmap"], atol=1e-5)


def test_default_whole_image_box_and_relation_needs_two_roles(sf):
    img = _image(60, 40, seed=4)
    [r] = sf.predict(img, tasks=["lam", "relation"])
    assert r["boxes"] == [{"xyxy": [0, 0, 60, 40], "xyxy_normalized": [0, 0, 1, 1], "role": 0, "source": "whole_image"}]
    assert "skipped" in r["tasks"]["relation"] and "role" in r["tasks"]["relation"]["skipped"]
    assert r["tasks"]["lam"]["label"] in ("looking", "not_looking")
    assert r["notes"]
    [r] = sf.predict(img, boxes=[{"xyxy": [0, 0, 0.5, 1], "role": 0}, {"xyxy": [0.5, 0, 1, 1], "role": 1}], tasks="relation")
    assert r["tasks"]["relation"]["label"] in sf.model.tasks["relation"].classes
    # a role-1 box alone: the single-person tasks have no subject and say so
    [r] = sf.predict(img, boxes=[{"xyxy": [0.5, 0, 1, 1], "role": 1}], tasks="lam,relation")
    assert "skipped" in r["tasks"]["lam"] and "skipped" in r["tasks"]["relation"]


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
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (src / "notes.txt").write_text("ignored: not an image suffix")
    boxes = {"one.png": [{"xyxy": [4, 4, 30, 30], "role": 0}, {"xyxy": [30, 10, 60, 40], "role": 1}], "two.jpg": [{"xyxy": [0.1, 0.1, 0.3, 1.5], "normalized": True}]}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    rc = main(["predict", "--ckpt", "tiny", "--dir", str(src), "--boxes", str(tmp_path / "boxes.json"), "--tasks", "lam,relation,gaze",
               "--out", str(out), "--visualize", "--batch-size", "2", "--no-progress"])
    assert rc == 0
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [line["image"] for line in lines] == [str(src / "one.png")]
    rec = lines[0]
    assert set(rec["tasks"]) == {"lam", "relation", "gaze"}
    assert "heatmap" not in rec["tasks"]["gaze"] and len(rec["tasks"]["gaze"]["point"]) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 3 and summary["predicted"] == 1 and summary["skipped"] == 2
    reasons = {s["image"].rsplit("/", 1)[-1]: s["reason"] for s in summary["skipped_files"]}
    assert "not a readable image" in reasons["broken.png"] and "outside the image" in reasons["two.jpg"]
    err = capsys.readouterr().err
    assert "broken.png" in err and "two.jpg" in err
    png = Image.open(out / "vis" / "one.png")
    assert png.size[0] == 800 and png.size[1] == 600
    # usage errors are exit code 2 with a message, not a traceback
    assert main(["predict", "--ckpt", "tiny", "--images", str(src / "one.png"), "--tasks", "smile", "--out", str(out)]) == 2
    assert main(["predict", "--ckpt", "no-such-preset", "--images", str(src / "one.png"), "--out", str(out)]) == 2

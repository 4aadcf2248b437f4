import json

import pytest

from socialfusion.core.schema import DataError
from socialfusion.data.adapters import read_dataset
from socialfusion.data.skips import SkipReport
from socialfusion.tasks.gesture import HAGRID_CLASSES
from tests.official_fixtures import HAGRID_KEYS, HAGRID_SIZE, write_hagrid, write_jpeg

K = HAGRID_KEYS


def _read(root, split="test", policy="skip", **options):
    samples, report = read_dataset("hagrid_v2", root, split, report=SkipReport(policy=policy), **options)
    return {s.id: s for s in samples}, report


def _add(root, class_name, key, record, split="test", image=True):
    path = root / "hagrid_annotations" / split / f"{class_name}.json"
    records = json.loads(path.read_text()) if path.exists() else {}
    records[key] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    if image:
        write_jpeg(root / "hagrid_dataset" / class_name / f"{key}.jpg", HAGRID_SIZE)


def _record(bboxes, labels, united=None, united_label=None):
    return {"bboxes": bboxes, "labels": labels, "united_bbox": united, "united_label": united_label, "user_id": "u"}


def test_classification_labels_and_boxes(tmp_path):
    samples, report = _read(write_hagrid(tmp_path))
    assert report.total == 0
    names = {key: HAGRID_CLASSES[s.label] for key, s in samples.items()}
    assert names == {
        K["like_1"]: "like",
        K["like_2"]: "like",
        K["hand_heart"]: "hand_heart",
        K["no_gesture"]: "no_gesture",
    }
    assert [s.id for s in samples.values()][0] == K["hand_heart"]  # official target order: hand_heart before like
    # the box of the hand that shows the target gesture (not the free no_gesture hand)
    assert [b.xyxy for b in samples[K["like_1"]].boxes] == [pytest.approx((0.1, 0.2, 0.3, 0.5))]
    # x = -0.001 is clipped into [0, 1]
    assert samples[K["like_2"]].boxes[0].xyxy == pytest.approx((0.0, 0.3, 0.249, 0.7))
    # two-handed gesture: the united box
    assert [b.xyxy for b in samples[K["hand_heart"]].boxes] == [pytest.approx((0.2, 0.3, 0.55, 0.5))]
    assert [b.xyxy for b in samples[K["no_gesture"]].boxes] == [pytest.approx((0.5, 0.5, 0.6, 0.7))]
    s = samples[K["like_1"]]
    assert s.image == f"hagrid_dataset/like/{K['like_1']}.jpg" and s.image_path().is_file()
    assert s.task == "gesture" and s.meta["user_id"] == "user-a" and s.meta["class_folder"] == "like"


def test_detection_targets_and_hand_counts(tmp_path):
    samples, _ = _read(write_hagrid(tmp_path))
    targets = {key: s.meta["gesture_labels"] for key, s in samples.items()}
    assert targets == {
        K["like_1"]: ["like", "no_gesture"],
        K["like_2"]: ["like"],
        K["hand_heart"]: ["hand_heart"],
        K["no_gesture"]: ["no_gesture"],
    }
    assert samples[K["hand_heart"]].meta["gesture_boxes"] == [pytest.approx([0.2, 0.3, 0.55, 0.5])]
    assert {key: len(s.meta["hand_boxes"]) for key, s in samples.items()} == {
        K["like_1"]: 2,
        K["like_2"]: 1,
        K["hand_heart"]: 2,
        K["no_gesture"]: 1,
    }


def test_united_bbox_encodings(tmp_path):
    root = write_hagrid(tmp_path)
    hands = [[0.1, 0.1, 0.2, 0.2], [0.5, 0.1, 0.2, 0.2]]
    _add(root, "like", "empty-list", _record(hands, ["like", "no_gesture"], united=[]))
    # an earlier README duplicated bboxes into united_bbox for one-handed gestures
    _add(
        root,
        "like",
        "duplicated",
        _record(hands, ["like", "no_gesture"], united=hands, united_label=["like", "no_gesture"]),
    )
    samples, report = _read(root)
    assert report.total == 0
    for key in ("empty-list", "duplicated"):
        assert samples[key].label == HAGRID_CLASSES.index("like")
        assert [b.xyxy for b in samples[key].boxes] == [pytest.approx((0.1, 0.1, 0.3, 0.3))]
        assert samples[key].meta["gesture_labels"] == ["like", "no_gesture"]


def test_only_no_gesture_in_a_gesture_folder_is_dropped_as_the_official_classifier_does(tmp_path):
    root = write_hagrid(tmp_path)
    _add(root, "like", "free-hands", _record([[0.1, 0.1, 0.2, 0.2]], ["no_gesture"]))
    samples, report = _read(root, policy="error")  # a protocol filter, not an error
    assert "free-hands" not in samples and report.total == 1


def test_bad_records_are_counted_or_raise(tmp_path):
    root = write_hagrid(tmp_path)
    _add(root, "like", "unknown-label", _record([[0.1, 0.1, 0.2, 0.2]], ["thumbs_sideways"]))
    _add(root, "like", "mismatch", _record([[0.1, 0.1, 0.2, 0.2]], ["like", "like"]))
    _add(root, "like", "nan-box", _record([[0.1, float("nan"), 0.2, 0.2]], ["like"]))
    _add(root, "like", "negative-size", _record([[0.1, 0.1, -0.2, 0.2]], ["like"]))
    _add(root, "like", "outside", _record([[1.5, 0.1, 0.2, 0.2]], ["like"]))
    _add(root, "like", "no-image", _record([[0.1, 0.1, 0.2, 0.2]], ["like"]), image=False)
    _add(root, "like", "not-a-dict", ["like"])
    samples, report = _read(root)
    assert len(samples) == 4 and report.total == 7
    assert report.counts["unknown gesture label 'thumbs_sideways'"] == 1
    assert report.counts["image: image file not found"] == 1
    with pytest.raises(DataError, match="like.json"):
        _read(root, policy="error")


def test_hands_heart2_folder_alias_and_unknown_files(tmp_path):
    root = write_hagrid(tmp_path)
    key = "hh2"
    (root / "hagrid_annotations" / "test" / "hand_heart2.json").write_text(
        json.dumps(
            {
                key: _record(
                    [[0.1, 0.1, 0.2, 0.2], [0.3, 0.1, 0.2, 0.2]],
                    ["hand_heart2"] * 2,
                    [[0.1, 0.1, 0.4, 0.2]],
                    ["hand_heart2"],
                )
            }
        )
    )
    write_jpeg(root / "hagrid_dataset" / "hands_heart2" / f"{key}.jpg", HAGRID_SIZE)  # download.py's folder name
    (root / "hagrid_annotations" / "test" / "readme.json").write_text("{}")
    samples, report = _read(root)
    assert samples[key].image == f"hagrid_dataset/hands_heart2/{key}.jpg"
    assert samples[key].label == HAGRID_CLASSES.index("hand_heart2")
    assert report.counts["annotation file of an unknown class"] == 1


def test_missing_split_is_an_error(tmp_path):
    root = write_hagrid(tmp_path)
    with pytest.raises(DataError, match="hagrid_annotations/train"):
        _read(root, split="train")
    with pytest.raises(DataError, match="split"):
        _read(root, split="dev")

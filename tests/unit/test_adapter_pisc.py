import json

import pytest

from socialfusion.core.schema import DataError
from socialfusion.data.adapters import read_dataset
from socialfusion.data.skips import SkipReport
from socialfusion.tasks.relation import PISC_COARSE, PISC_FINE
from tests.official_fixtures import write_pisc


def _read(root, split="test", policy="skip", **options):
    return read_dataset("pisc", root, split, report=SkipReport(policy=policy), **options)


def _norm(box, w, h):
    return pytest.approx((box[0] / w, box[1] / h, box[2] / w, box[3] / h))


def test_fine_test_pairs(tmp_path):
    root = write_pisc(tmp_path)
    samples, report = _read(root)
    assert report.total == 0
    assert [(s.image, s.meta["pair"], PISC_FINE[s.label]) for s in samples] == [
        ("image/00001.jpg", [1, 2], "family"),
        ("image/00001.jpg", [1, 3], "no_relation"),
    ]
    assert [s.label for s in samples] == [1, 5]
    first, second = samples
    assert [b.role for b in first.boxes] == [0, 1]
    assert first.boxes[0].xyxy == _norm([5, 10, 60, 118], 160, 120)
    assert first.boxes[1].xyxy == _norm([70, 12, 120, 119], 160, 120)
    assert second.boxes[1].xyxy == _norm([125, 30, 160, 119], 160, 120)  # 165 clipped to imgW
    assert first.task == "relation" and first.meta["image_id"] == "1" and first.image_path().is_file()


def test_fine_train_and_empty_val(tmp_path):
    root = write_pisc(tmp_path)
    train, _ = _read(root, split="train")
    assert [(s.image, s.label, PISC_FINE[s.label]) for s in train] == [("image/00002.jpg", 3, "professional")]
    assert train[0].boxes[1].xyxy == _norm([50, 5, 99, 99], 100, 100)
    assert _read(root, split="val")[0] == []


def test_coarse_labels_cover_other_pairs(tmp_path):
    root = write_pisc(tmp_path)
    samples, _ = _read(root, level="coarse")
    assert [(s.meta["pair"], PISC_COARSE[s.label]) for s in samples] == [
        ([1, 2], "intimate"),
        ([1, 3], "no_relation"),
        ([2, 3], "no_relation"),
    ]


def test_domain_split_accepts_relation_names(tmp_path):
    root = write_pisc(tmp_path)
    for split in ("train", "val", "test"):
        (root / "domain_split" / f"domain_{split}idx.json").rename(root / "domain_split" / f"relation_{split}idx.json")
    assert len(_read(root, level="coarse")[0]) == 3
    for path in (root / "domain_split").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="domain_testidx.json"):
        _read(root, level="coarse")


def test_int_ids_in_the_split_are_accepted(tmp_path):
    root = write_pisc(tmp_path)
    (root / "relationship_split" / "relation_testidx.json").write_text("[1]")
    assert len(_read(root)[0]) == 2


def test_bad_pairs_and_images_are_counted(tmp_path):
    root = write_pisc(tmp_path)
    (root / "relationship.json").write_text(
        json.dumps(
            {
                "1": {"1 2": 2, "1 3": 6, "1 9": 1, "2 2": 1, "1-2": 1, "2 3": 7, "3 1": "x"},
                "2": {"1 2": 4},
                "3": {"1 2": 1},
            }
        )
    )
    (root / "relationship_split" / "relation_testidx.json").write_text('["1", "3", "abc", "4"]')
    info = json.loads((root / "annotation_image_info.json").read_text())
    info.append({"id": 3, "imgH": 50, "imgW": 50, "bbox": [[0, 0, 10, 10], [20, 20, 30, 30]]})  # image file missing
    info.append({"id": 4, "imgH": 50, "imgW": 50, "bbox": [[0, 0, 10, 10], [20, 20, 30, 30]]})  # no labels
    info.append({"id": 5})  # malformed record
    (root / "annotation_image_info.json").write_text(json.dumps(info))
    samples, report = _read(root)
    assert [s.meta["pair"] for s in samples] == [[1, 2], [1, 3]]
    assert report.counts["image: image file not found"] == 1
    assert report.counts["unknown fine label"] == 2
    assert report.counts["image has no fine labels"] == 1
    assert report.total == 5 + 4  # five bad pairs; image 3, "abc", image 4 and the id-5 record
    with pytest.raises(DataError, match="annotation_image_info.json"):
        _read(root, policy="error")


def test_box_without_area_inside_is_skipped(tmp_path):
    root = write_pisc(tmp_path)
    info = json.loads((root / "annotation_image_info.json").read_text())
    info[0]["bbox"][2] = [170, 30, 190, 119]  # entirely right of the 160-pixel-wide image
    (root / "annotation_image_info.json").write_text(json.dumps(info))
    samples, report = _read(root)
    assert len(samples) == 1 and report.counts["box has no area inside the image"] == 1


def test_missing_files_and_bad_options(tmp_path):
    with pytest.raises(DataError, match="annotation_image_info.json"):
        _read(tmp_path)
    root = write_pisc(tmp_path)
    with pytest.raises(DataError, match="level"):
        _read(root, level="medium")
    (root / "relationship.json").unlink()
    with pytest.raises(DataError, match="relationship.json"):
        _read(root)

import pytest

from socialfusion.core.schema import DataError
from socialfusion.data.adapters import read_dataset
from socialfusion.data.adapters.gazefollow import in_val
from socialfusion.data.skips import SkipReport
from tests.official_fixtures import GAZEFOLLOW_TRAIN, write_gazefollow, write_jpeg

W, H = 160, 120


def _read(root, split="train", policy="skip", **options):
    return read_dataset("gazefollow", root, split, report=SkipReport(policy=policy), **options)


def _norm(box):
    return pytest.approx((box[0] / W, box[1] / H, box[2] / W, box[3] / H))


def test_train_rows(tmp_path):
    root = write_gazefollow(tmp_path)
    samples, report = _read(root)
    assert [s.inout for s in samples] == [1, 0, 1]
    assert len({s.image for s in samples}) == 2
    assert report.total == 1 and list(report.examples.values())[0] == ["train_annotations_release.txt:4"]
    first, out_of_frame, swapped = samples
    assert first.points == [(0.70, 0.60)] and first.boxes[0].xyxy == _norm([40, 20, 80, 60])
    assert out_of_frame.points is None and out_of_frame.meta["gaze_raw"] == ["-1", "-1"]
    assert swapped.boxes[0].xyxy == _norm([60, 20, 90, 50])  # image 2's swapped box, put in order
    assert first.task == "gaze" and first.meta["eye"] == [0.30, 0.25] and first.meta["idx"] == "1"
    assert first.image_path().is_file()


def test_inout_minus_one_is_a_protocol_filter(tmp_path):
    samples, report = _read(write_gazefollow(tmp_path), policy="error")
    assert len(samples) == 3 and report.total == 1


def test_test_persons_group_annotators(tmp_path):
    samples, report = _read(write_gazefollow(tmp_path), split="test")
    assert report.total == 0 and len(samples) == 2
    a, b = samples
    assert len(a.points) == 3 and a.inout == 1 and b.inout == 1
    assert a.boxes[0].xyxy == _norm([40, 20, 80, 60])
    mean = (sum(x for x, _ in a.points) / 3, sum(y for _, y in a.points) / 3)
    assert mean == pytest.approx((0.25, 0.5333), abs=1e-4)
    assert a.meta["idx"] == ["7", "8", "9"] and a.meta["n_annotators"] == 3
    assert b.boxes[0].xyxy == _norm([0, 5, 160, 40]) and b.points == [(0.10, 0.90)]


def test_crlf_and_bom_are_tolerated(tmp_path):
    root = write_gazefollow(tmp_path)
    path = root / "train_annotations_release.txt"
    path.write_bytes(b"\xef\xbb\xbf" + GAZEFOLLOW_TRAIN.replace("\n", "\r\n").encode())
    samples, _ = _read(root)
    assert [s.inout for s in samples] == [1, 0, 1] and samples[0].image == "train/00000000/00000001.jpg"


def test_bad_rows_are_counted_or_raise(tmp_path):
    root = write_gazefollow(tmp_path)
    write_jpeg(root / "train/00000000/00000003.jpg", (W, H))
    good = "train/00000000/00000003.jpg,1,0.1,0.1,0.4,0.8,0.30,0.25,0.70,0.60,40.0,20.0,80.0,60.0,1,coco,x.jpg"
    bad = [
        good.replace(",1,coco", ",1"),  # 16 columns in the train file
        good.replace("0.70,0.60", "nan,0.60"),  # NaN gaze
        good.replace("0.70,0.60", "1.70,0.60"),  # in-frame gaze outside the image
        good.replace("40.0,20.0", "inf,20.0"),  # non-finite box
        good.replace("40.0,20.0,80.0,60.0", "200.0,20.0,240.0,60.0"),  # box outside the image
        good.replace(",1,coco", ",2,coco"),  # unknown inout
        good.replace("00000003.jpg", "00000009.jpg"),  # image missing
        ",1,0.1,0.1,0.4,0.8,0.30,0.25,0.70,0.60,40.0,20.0,80.0,60.0,1,coco,x.jpg",  # no path
    ]
    with open(root / "train_annotations_release.txt", "a") as f:
        f.write("\n".join(bad + ["", good]) + "\n")
    samples, report = _read(root)
    assert len(samples) == 4 and report.total == 1 + len(bad)
    assert report.counts["row has 16 columns, expected 17"] == 1
    assert report.counts["head box: box has no area inside the image"] == 1
    with pytest.raises(DataError, match="train_annotations_release.txt:5"):
        _read(root, policy="error")


def test_test_rows_with_bad_annotators_keep_the_person(tmp_path):
    root = write_gazefollow(tmp_path)
    path = root / "test_annotations_release.txt"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace("0.30,0.50,40.0", "-1,-1,40.0")  # annotator 8 unusable
    path.write_text("\n".join(lines + ["too,few,columns"]) + "\n")
    samples, report = _read(root, split="test")
    assert [len(s.points) for s in samples] == [2, 1] and report.total == 2


def test_val_is_carved_out_of_train_by_image_path(tmp_path):
    root = write_gazefollow(tmp_path)
    with pytest.raises(DataError, match="no official val"):
        _read(root, split="val")
    paths = ["train/00000000/00000001.jpg", "train/00000000/00000002.jpg"]
    fraction = 0.5
    expected_val = {p for p in paths if in_val(p, fraction)}
    val, _ = _read(root, split="val", val_fraction=str(fraction))
    train, _ = _read(root, split="train", val_fraction=fraction)
    assert {s.image for s in val} == expected_val
    assert {s.image for s in train} == set(paths) - expected_val
    assert len(val) + len(train) == 3
    assert len(_read(root, split="val", val_fraction=1.0)[0]) == 3
    assert in_val("a/b.jpg", 0.3) == in_val("a/b.jpg", 0.3)  # deterministic, no seed


def test_missing_file_and_bad_option(tmp_path):
    with pytest.raises(DataError, match="train_annotations_release.txt"):
        _read(tmp_path)
    with pytest.raises(DataError, match="val_fraction"):
        _read(write_gazefollow(tmp_path), val_fraction=1.5)

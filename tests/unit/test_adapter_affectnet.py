import numpy as np
import pytest

from socialfusion.core.schema import DataError
from socialfusion.data.adapters import read_dataset
from socialfusion.data.adapters.affectnet import parse_landmarks
from socialfusion.data.skips import SkipReport
from tests.official_fixtures import (
    AFFECTNET_HEADER,
    affectnet_landmarks,
    write_affectnet_csv,
    write_affectnet_npy,
    write_jpeg,
)


def _read(root, split="train", policy="skip", **options):
    return read_dataset("affectnet", root, split, report=SkipReport(policy=policy), **options)


def _append_rows(root, *rows):
    path = root / "Manually_Annotated_file_lists" / "training.csv"
    path.write_text(path.read_text() + "".join(r + "\n" for r in rows))


def test_csv_8_class_keeps_rows_1_and_2(tmp_path):
    root = write_affectnet_csv(tmp_path)
    samples, report = _read(root)
    assert [(s.image, s.label) for s in samples] == [
        ("Manually_Annotated_Images/1/aaaa0001.jpg", 0),
        ("Manually_Annotated_Images/1/aaaa0002.jpg", 7),
    ]
    assert samples[0].boxes[0].xyxy == (0.0, 0.0, 1.0, 1.0)
    assert samples[1].boxes[0].xyxy == pytest.approx((20 / 224, 20 / 224, 200 / 224, 200 / 224))
    assert (
        samples[1].meta["expression"] == 7 and samples[1].meta["valence"] == -0.4 and samples[1].meta["arousal"] == 0.3
    )
    assert all(s.task == "expression" and s.root == str(root) for s in samples)
    assert report.total == 2 and {w for ex in report.examples.values() for w in ex} == {
        "training.csv:4",
        "training.csv:5",
    }


def test_protocol_filters_are_counted_but_never_an_error(tmp_path):
    samples, report = _read(write_affectnet_csv(tmp_path), policy="error")  # the real CSVs always hold 8-10
    assert len(samples) == 2 and report.total == 2
    assert all(reason.startswith("protocol: ") for reason in report.counts)


def test_csv_7_class_drops_contempt(tmp_path):
    samples, report = _read(write_affectnet_csv(tmp_path), classes="7")
    assert [s.label for s in samples] == [0] and report.total == 3


def test_landmarks_reshape_to_68_by_2(tmp_path):
    points = parse_landmarks(";".join(str(v) for v in affectnet_landmarks()))
    assert points.shape == (68, 2) and points[1].tolist() == [2.0, 3.0]
    assert parse_landmarks("1;2;3") is None and parse_landmarks("a;b") is None
    samples, _ = _read(write_affectnet_csv(tmp_path), landmarks=True)
    assert np.asarray(samples[0].meta["landmarks"]).shape == (68, 2)
    assert "landmarks" not in _read(tmp_path)[0][0].meta  # off by default: 136 floats per row is not free


def test_npy_layout_with_string_typed_scalars(tmp_path):
    root = write_affectnet_npy(tmp_path)
    train, report = _read(root)
    val, _ = _read(root, split="val")
    assert report.total == 0
    assert [(s.id, s.label) for s in train] == [("train_set/0", 0), ("train_set/1", 1)]
    assert [(s.image, s.label) for s in val] == [("val_set/images/2.jpg", 2)]
    for s in train + val:
        assert s.boxes[0].xyxy == (0.0, 0.0, 1.0, 1.0)  # pre-cropped faces
        assert s.meta["valence"] == 0.25 and s.meta["arousal"] == -0.5
    assert np.asarray(_read(root, landmarks="true")[0][0].meta["landmarks"]).shape == (68, 2)


def test_npy_bad_entries_are_counted(tmp_path):
    root = write_affectnet_npy(tmp_path)
    ann = root / "train_set" / "annotations"
    np.save(ann / "5_exp.npy", np.array("9"))  # Uncertain
    (ann / "6_exp.npy").write_bytes(b"garbage")
    np.save(ann / "7_exp.npy", np.array(3))  # no image
    samples, report = _read(root)
    assert [s.id for s in samples] == ["train_set/0", "train_set/1"]
    assert report.total == 3
    assert report.counts["image: image file not found"] == 1


def test_layout_is_detected_or_forced(tmp_path):
    with pytest.raises(DataError, match="layout not recognised"):
        _read(tmp_path)
    root = write_affectnet_npy(tmp_path)
    with pytest.raises(DataError, match="training.csv"):
        _read(root, layout="csv")
    with pytest.raises(DataError, match="layout"):
        _read(root, layout="zip")


def test_no_test_split_and_bad_class_count(tmp_path):
    root = write_affectnet_csv(tmp_path)
    with pytest.raises(DataError, match="no public test set"):
        _read(root, split="test")
    with pytest.raises(DataError, match="classes"):
        _read(root, classes=6)


def test_malformed_csv_rows_are_counted_or_raise(tmp_path):
    root = write_affectnet_csv(tmp_path)
    write_jpeg(root / "Manually_Annotated_Images" / "3" / "ok.jpg", (100, 50))
    _append_rows(
        root,
        "3/ok.jpg,0,0,50,50,,x,0,0",  # label not an integer
        "3/ok.jpg,0,0,50,50,,11,0,0",  # unknown label
        "3/ok.jpg,0,0,nan,50,,1,0,0",  # NaN box
        "3/ok.jpg,0,0,-5,50,,1,0,0",  # impossible box
        "3/ok.jpg,200,0,50,50,,1,0,0",  # box outside the image
        "3/missing.jpg,0,0,50,50,,1,0,0",  # image missing
        "3/ok.jpg,0,0",  # short row
        "",
        "3/ok.jpg,90,10,40,30,,3,0.5,0.5",  # good: clipped to the 100x50 image
    )
    samples, report = _read(root)
    assert [s.label for s in samples] == [0, 7, 3]
    assert samples[-1].boxes[0].xyxy == pytest.approx((0.9, 0.2, 1.0, 0.8))
    assert report.total == 2 + 7 and report.counts["protocol: expression 8 (None) is not an expression class"] == 1
    with pytest.raises(DataError, match="training.csv:6"):
        _read(root, policy="error")


def test_csv_without_header_and_with_bom(tmp_path):
    root = write_affectnet_csv(tmp_path)
    path = root / "Manually_Annotated_file_lists" / "training.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    assert [s.label for s in _read(root)[0]] == [0, 7]
    path.write_text("\n".join(path.read_text(encoding="utf-8-sig").splitlines()[1:]))
    assert [s.label for s in _read(root)[0]] == [0, 7]
    path.write_text(AFFECTNET_HEADER.replace("expression", "emotion") + "\n")
    with pytest.raises(DataError, match="expression"):
        _read(root)

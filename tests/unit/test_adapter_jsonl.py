import json

import pytest

from socialfusion.core.schema import Box, DataError, Sample, write_jsonl
from socialfusion.data.adapters import read_dataset
from socialfusion.data.adapters.jsonl import read_lines
from socialfusion.data.skips import SkipReport
from tests.official_fixtures import write_jpeg


def _samples():
    return [
        Sample(id="a", task="expression", image="img/a.jpg", boxes=[Box((0.1, 0.1, 0.5, 0.5))], label=3, meta={"k": 1}),
        Sample(
            id="b", task="relation", image="img/a.jpg", boxes=[Box((0, 0, 0.5, 1), 0), Box((0.5, 0, 1, 1), 1)], label=2
        ),
        Sample(id="c", task="gaze", image="img/a.jpg", boxes=[Box((0.2, 0.2, 0.3, 0.3))], points=[(0.5, 0.5)], inout=1),
    ]


def _read(root, split="train", policy="skip", **options):
    return read_dataset("jsonl", root, split, report=SkipReport(policy=policy), **options)


def test_round_trip(tmp_path):
    write_jpeg(tmp_path / "img" / "a.jpg", (20, 20))
    write_jsonl(_samples(), tmp_path / "train.jsonl")
    samples, report = _read(tmp_path)
    assert report.total == 0
    assert [s.to_dict() | {"root": ""} for s in samples] == [s.to_dict() | {"root": ""} for s in _samples()]
    assert all(s.root == str(tmp_path) and s.image_path().is_file() for s in samples)
    assert [s.id for s in _read(tmp_path / "train.jsonl", split="ignored")[0]] == ["a", "b", "c"]
    assert [s.id for s in _read(tmp_path, split="x", file="train.jsonl")[0]] == ["a", "b", "c"]


def test_bad_lines_are_counted_with_file_and_line(tmp_path):
    write_jsonl(_samples(), tmp_path / "train.jsonl")
    good = (tmp_path / "train.jsonl").read_text().splitlines()
    bad_box = json.dumps({"id": "x", "task": "lam", "image": "i.jpg", "boxes": [{"xyxy": [0.5, 0, 0.2, 1]}]})
    unknown_task = json.dumps({"id": "y", "task": "dance", "image": "i.jpg"})
    lines = [good[0], "{not json", "[1, 2]", bad_box, "", good[1], unknown_task, json.dumps({"task": "lam"}), good[2]]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    samples, report = _read(tmp_path)
    assert [s.id for s in samples] == ["a", "b", "c"]
    assert report.counts == {"not valid JSON": 1, "not a JSON object": 1, "malformed record": 2, "unknown task": 1}
    assert report.examples["not valid JSON"] == ["train.jsonl:2"]
    assert report.examples["malformed record"][0].startswith("train.jsonl:4 (")
    with pytest.raises(DataError, match="train.jsonl:2"):
        _read(tmp_path, policy="error")


def test_line_reader_agrees_with_read_jsonl_on_roots(tmp_path):
    records = [s.to_dict() for s in _samples()]
    records[0]["root"] = "elsewhere"  # relative: resolved against the file's folder
    records[1]["root"] = "/abs/root"
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    fast, _ = _read(tmp_path)
    slow = read_lines(tmp_path / "train.jsonl", SkipReport())
    assert (
        [s.root for s in fast]
        == [s.root for s in slow]
        == [str((tmp_path / "elsewhere").resolve()), "/abs/root", str(tmp_path)]
    )


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="val.jsonl"):
        _read(tmp_path, split="val")

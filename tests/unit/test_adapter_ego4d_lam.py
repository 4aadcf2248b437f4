import json

import pytest

from socialfusion.core.schema import DataError
from socialfusion.data.adapters import read_dataset
from socialfusion.data.skips import SkipReport
from tests.official_fixtures import lam_box, lam_clip, lam_person, lam_persons, lam_segment, write_lam

W, H = 640, 360
EXPECTED = [  # DATASETS.md 7.1: (track, frame, pixel xyxy, label)
    ("trk-a", 1, [100, 50, 140, 98], 0),
    ("trk-a", 2, [102, 50, 142, 98], 1),
    ("trk-a", 3, [104, 51, 144, 99], 1),  # interpolated
    ("trk-a", 4, [106, 52, 146, 100], 1),
    ("trk-a", 5, [0, 10, 40, 58], 0),  # x = -3 clamped
    ("trk-b", 1, [300, 60, 330, 90], 0),
    ("trk-b", 2, [302, 60, 332, 90], 0),
]


def _read(root, split="val", policy="skip", **options):
    return read_dataset("ego4d_lam", root, split, report=SkipReport(policy=policy), **options)


def _rewrite(root, persons=None, looking=None):
    """Replace the fixture clip's persons and/or looking segments."""
    path = root / "json" / "av_val.json"
    data = json.loads(path.read_text())
    clip = data["videos"][0]["clips"][0]
    if persons is not None:
        clip["persons"] = persons
    if looking is not None:
        clip["social_segments_looking"] = looking
    path.write_text(json.dumps(data))


def test_fixture_gives_the_documented_samples(tmp_path):
    root = write_lam(tmp_path)
    samples, report = _read(root)
    assert report.total == 0
    got = [(s.meta["track_id"], s.meta["frame"], s.label) for s in samples]
    assert got == [(t, f, label) for t, f, _, label in EXPECTED]
    for s, (track, frame, box, _) in zip(samples, EXPECTED):
        assert s.task == "lam" and s.root == str(root)
        assert s.id == f"clip-0001:{frame}:{track}"  # the metric's uid
        assert s.image == f"video_imgs/clip-0001/img_{frame:05d}.jpg"
        assert s.boxes[0].role == 0
        assert s.boxes[0].xyxy == pytest.approx((box[0] / W, box[1] / H, box[2] / W, box[3] / H))
        assert s.meta["box_px"] == pytest.approx(box)
        assert s.meta["clip_uid"] == "clip-0001" and s.meta["person_id"] == ("2" if track == "trk-a" else "3")
    assert [s.meta["interpolated"] for s in samples] == [False, False, True, False, False, False, False]


def test_camera_wearer_found_by_flag_not_position(tmp_path):
    root = write_lam(tmp_path)
    wearer, *others = lam_persons()
    wearer["tracking_paths"] = [{"track_id": "trk-w", "track": [lam_box(1, 10, 10, 20, 20)]}]  # must be ignored
    _rewrite(root, persons=others + [wearer])
    samples, _ = _read(root)
    assert {s.meta["track_id"] for s in samples} == {"trk-a", "trk-b"} and len(samples) == 7


def test_without_any_flag_persons_0_is_the_wearer_as_in_the_baseline(tmp_path):
    root = write_lam(tmp_path)
    persons = lam_persons()
    for p in persons:
        del p["camera_wearer"]
    _rewrite(root, persons=persons[1:] + persons[:1])  # trk-a's person first: skipped like get_json.py does
    samples, _ = _read(root)
    assert {s.meta["track_id"] for s in samples} == {"trk-b"}


def test_stride_keeps_every_nth_sample_of_each_track(tmp_path):
    root = write_lam(tmp_path)
    samples, _ = _read(root, stride="2")  # command-line strings are accepted
    assert [(s.meta["track_id"], s.meta["frame"]) for s in samples] == [
        ("trk-a", 1),
        ("trk-a", 3),
        ("trk-a", 5),
        ("trk-b", 1),
    ]
    with pytest.raises(DataError, match="stride"):
        _read(root, stride=0)


def test_merged_annotations_with_split_list(tmp_path):
    root = write_lam(tmp_path)
    (root / "json" / "av_val.json").rename(root / "json" / "av.json")
    samples, _ = _read(root)
    assert len(samples) == 7
    (root / "split" / "val.list").unlink()
    with pytest.raises(DataError, match="val.list"):
        _read(root)


def test_missing_annotations_name_the_expected_path(tmp_path):
    with pytest.raises(DataError, match="av_val.json"):
        _read(tmp_path)


def test_append_mode_double_json_is_a_clear_error(tmp_path):
    root = write_lam(tmp_path)
    path = root / "json" / "av_val.json"
    path.write_text(path.read_text() + path.read_text())  # what the baseline's open(..., 'a') leaves behind
    with pytest.raises(DataError, match="not valid JSON"):
        _read(root)


def test_missing_frame_is_a_counted_skip_or_an_error(tmp_path):
    root = write_lam(tmp_path)
    (root / "video_imgs" / "clip-0001" / "img_00003.jpg").unlink()  # only trk-a has a box at frame 3
    (root / "video_imgs" / "clip-0001" / "img_00001.jpg").unlink()  # trk-a and trk-b
    samples, report = _read(root)
    assert len(samples) == 4 and report.counts["frame image missing"] == 3
    assert [s.meta["frame"] for s in samples] == [2, 4, 5, 2]
    with pytest.raises(DataError, match="img_00001.jpg"):
        _read(root, policy="error")


def test_null_person_segment_ignored_and_is_at_me_optional(tmp_path):
    root = write_lam(tmp_path)
    _rewrite(root, looking=[lam_segment("2", 2, 4, is_at_me=False), lam_segment(None, 1, 7), lam_segment("3", 2, 2)])
    samples, _ = _read(root)
    assert [s.label for s in samples] == [0, 1, 1, 1, 0, 0, 1]  # inclusive bounds, keyed by person_id
    samples, _ = _read(root, respect_is_at_me=True)
    assert [s.label for s in samples] == [0, 0, 0, 0, 0, 0, 1]


def test_malformed_track_boxes_are_counted(tmp_path):
    root = write_lam(tmp_path)
    persons = lam_persons()
    persons[2]["tracking_paths"][0]["track"].append({"x": "abc", "y": 1, "width": 5, "height": 5, "frame": 3})
    persons[2]["tracking_paths"][0]["track"].append(lam_box(2, 0, 0, 10, 10))  # duplicate frame 2: first kept
    _rewrite(root, persons=persons)
    samples, report = _read(root)
    assert len(samples) == 7 and report.total == 2
    assert samples[-1].meta["box_px"] == pytest.approx([302, 60, 332, 90])
    with pytest.raises(DataError, match="trk-b"):
        _read(root, policy="error")


def test_box_outside_the_frame_is_kept_as_the_baseline_scores_it(tmp_path):
    root = write_lam(tmp_path)
    persons = lam_persons()
    persons[2]["tracking_paths"][0]["track"] = [lam_box(1, 700, 10, 20, 20)]
    _rewrite(root, persons=persons)
    samples, _ = _read(root)
    outside = [s for s in samples if s.meta["track_id"] == "trk-b"]
    assert len(outside) == 1 and outside[0].meta["empty_box"] and outside[0].boxes[0].xyxy[0] == 1.0


def test_clip_listed_without_annotations_is_counted(tmp_path):
    root = write_lam(tmp_path)
    (root / "split" / "val.list").write_text("clip-0001\nclip-9999\n")
    samples, report = _read(root)
    assert len(samples) == 7 and report.counts["clip listed in the split has no annotations"] == 1


def test_challenge_crops_are_unlabelled_samples(tmp_path):
    root = write_lam(tmp_path)
    (root / "videos_challenge" / "clip-0002" / "trk-z" / "notes.txt").write_text("x")
    samples, report = _read(root, split="test")
    assert report.counts["challenge crop name is not <frame>_<unique_id>.jpg"] == 1
    assert [s.meta for s in samples] == [
        {"video_id": "clip-0002", "track_id": "trk-z", "frame": 1, "unique_id": "u001"},
        {"video_id": "clip-0002", "track_id": "trk-z", "frame": 2, "unique_id": "u002"},
    ]
    assert all(s.label is None and s.boxes[0].xyxy == (0, 0, 1, 1) for s in samples)
    assert samples[0].image == "videos_challenge/clip-0002/trk-z/00001_u001.jpg"
    assert samples[0].image_path().is_file()


def test_unknown_split(tmp_path):
    with pytest.raises(DataError, match="split"):
        _read(write_lam(tmp_path), split="dev")


def test_clip_fields_helpers_are_complete():
    clip = lam_clip(lam_persons(), [])
    assert {"clip_uid", "video_uid", "persons", "social_segments_looking", "camera_wearer"} <= set(clip)
    assert lam_person("9", {})["tracking_paths"] == []


def test_labels_are_keyed_by_person_not_track(tmp_path):
    root = write_lam(tmp_path)
    persons = lam_persons()
    persons[1]["tracking_paths"].append({"track_id": "trk-c", "track": [lam_box(3, 400, 40, 30, 30)]})
    _rewrite(root, persons=persons)
    samples, _ = _read(root)
    assert [(s.id, s.label) for s in samples if s.meta["track_id"] == "trk-c"] == [("clip-0001:3:trk-c", 1)]

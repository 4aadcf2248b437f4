"""The IoU linking rule of socialfusion.tracks, case by case: what continues a track, what starts one, when one
ends, and which pair wins when boxes compete."""

import numpy as np
import pytest

from socialfusion.tracks import IOU_MIN, IouTracker, iou_matrix


def shifted(box, dx):
    return (box[0] + dx, box[1], box[2] + dx, box[3])


A = (0.10, 0.10, 0.30, 0.40)
B = (0.60, 0.10, 0.80, 0.40)


def test_iou_matrix():
    m = iou_matrix([A, B], [A, shifted(A, 0.1), (0.9, 0.9, 0.95, 0.95)])
    assert m.shape == (2, 3)
    assert m[0, 0] == pytest.approx(1.0) and m[0, 1] == pytest.approx(1 / 3) and m[0, 2] == 0 and m[1, 0] == 0


def test_a_moving_box_keeps_its_id_and_kinds_are_apart():
    t = IouTracker()
    assert t.update(0, "face", [A, B]) == [1, 2]
    assert t.update(1, "face", [shifted(B, 0.02), shifted(A, 0.05)]) == [2, 1]  # order of the boxes does not matter
    assert t.update(1, "hand", [A]) == [3]  # another kind never continues a face track, even on the same spot
    assert t.update(2, "face", [shifted(A, 0.10)]) == [1]


def test_too_little_overlap_starts_a_new_track():
    t = IouTracker()
    t.update(0, "face", [A])
    far = shifted(A, 0.15)  # IoU 1/7 < 0.3
    assert iou_matrix([A], [far])[0, 0] < IOU_MIN
    assert t.update(1, "face", [far]) == [2]


def test_a_track_survives_a_gap_of_max_gap_frames_then_ends_and_its_id_is_never_reused():
    t = IouTracker(max_gap=2)
    t.update(0, "face", [A])
    assert t.update(3, "face", [A]) == [1]  # frames 1 and 2 missed: still track 1
    assert t.update(7, "face", [A]) == [2]  # 3 frames missed: a new track
    assert t.update(8, "face", [A, B]) == [2, 3]


def test_greedy_best_iou_first_then_the_older_track():
    t = IouTracker()
    t.update(0, "person", [A, shifted(A, 0.04)])  # two overlapping tracks, 1 and 2
    # one box between them: the track it overlaps most takes it; the other finds nothing and lives on
    assert t.update(1, "person", [shifted(A, 0.035)]) == [2]
    tie = IouTracker()
    tie.update(0, "person", [shifted(A, -0.02), shifted(A, 0.02)])
    assert tie.update(1, "person", [A]) == [1]  # equal IoU with both: the older track


def test_empty_frames():
    t = IouTracker()
    assert t.update(0, "face", []) == []
    assert t.update(1, "face", np.empty((0, 4)).tolist()) == []
    assert t.update(2, "face", [A]) == [1]

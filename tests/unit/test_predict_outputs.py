"""The pieces of predict's output: the streamed .npy of heatmaps (a valid file whatever the row count) and the
label placement of the overlays (inside the image, clear of each other where the places around a box allow)."""

import numpy as np
import pytest

from socialfusion.serve.outputs import NpyAppender
from socialfusion.serve.overlay import _overlap, box_tag, place_labels


@pytest.mark.parametrize("rows", [0, 1, 3])
def test_npy_appender_writes_a_valid_npy_of_any_length(tmp_path, rows):
    path = tmp_path / "h.npy"
    out = NpyAppender(path, (64, 64))
    data = np.random.default_rng(0).random((rows, 64, 64)).astype(np.float32)
    assert [out.append(r) for r in data] == list(range(rows))
    out.close()
    assert path.stat().st_size == NpyAppender.HEADER_BYTES + rows * 64 * 64 * 4
    assert np.array_equal(np.load(path), data) and np.load(path, mmap_mode="r").shape == (rows, 64, 64)
    with pytest.raises(ValueError, match="expected"):
        NpyAppender(tmp_path / "x.npy", (64, 64)).append(np.zeros((2, 2)))


def test_labels_stay_inside_and_clear_of_each_other():
    w, h = 640, 480
    head, face = (100, 40, 240, 200), (120, 80, 220, 190)  # a face inside its head: the usual pair
    top = (300, 0, 400, 100)  # at the top edge: no room above
    persons = [(50, 20, 330, 470), (320, 25, 620, 470)]
    boxes = [head, face, top, *persons]
    sizes = [(90, 14)] * len(boxes)
    corners = place_labels(boxes, sizes, w, h)
    rects = [(x, y, x + lw, y + lh) for (x, y), (lw, lh) in zip(corners, sizes)]
    assert all(0 <= r[0] and r[2] <= w and 0 <= r[1] and r[3] <= h for r in rects)
    assert all(_overlap(a, b) == 0 for i, a in enumerate(rects) for b in rects[i + 1 :]), rects
    assert corners[0] == (100, 26) and corners[2][1] == 0  # above the head; the top box's label inside its top


def test_box_tags_say_kind_role_score_and_unused():
    assert box_tag({"kind": "person", "role": 1, "score": 0.834}) == "person 1 0.83"
    assert box_tag({"kind": "face", "role": None, "score": 0.74, "unused": True}) == "face 0.74 (unused)"
    assert box_tag({"kind": None, "role": 0}) == "box 0"

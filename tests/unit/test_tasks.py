"""Task definitions: official class orders and prompt snapshots (a prompt change must come with a new version)."""

import hashlib
import json

import pytest

from socialfusion.tasks import TASK_NAMES, build_task
from socialfusion.tasks.gaze import gaze_target

# sha256 of each task's prompt templates; update only together with a new prompt version
PROMPT_SNAPSHOTS = {
    "lam": "18306c36656e0220",
    "expression": "ff3298822977b787",
    "gesture": "005c8d7c84aa47cc",
    "relation": "ac85dc7160253a97",
    "gaze": "cedfe2c40a941793",
}


def _digest(task) -> str:
    return hashlib.sha256(json.dumps(task.prompt_templates, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", TASK_NAMES)
def test_prompt_templates_match_their_snapshot(name):
    task = build_task(name)
    assert _digest(task) == PROMPT_SNAPSHOTS[name], (
        f"{name}: prompt templates changed; add a new version instead of editing one"
    )
    for text in task.prompt_templates.values():
        assert text.count("<image>") == 1


def test_official_class_orders():
    assert build_task("expression").classes == [
        "neutral",
        "happiness",
        "sadness",
        "surprise",
        "fear",
        "disgust",
        "anger",
        "contempt",
    ]
    assert build_task("expression", n_classes=7).classes[-1] == "anger"
    gesture = build_task("gesture").classes
    assert len(gesture) == 34 and gesture[0] == "grabbing" and gesture[16] == "like" and gesture[-1] == "no_gesture"
    assert build_task("relation").classes == [
        "friends",
        "family",
        "couple",
        "professional",
        "commercial",
        "no_relation",
    ]
    assert build_task("relation", level="coarse").classes == ["intimate", "non-intimate", "no_relation"]
    assert build_task("lam").verbalizers == ["no", "yes"]


def test_gaze_target_is_a_distribution_peaked_at_the_point():
    t = gaze_target([(16.5 / 64, 48.5 / 64)])  # the centre of cell (row 48, col 16)
    assert abs(float(t.sum()) - 1.0) < 1e-6
    row, col = divmod(int(t.argmax()), 64)
    assert (row, col) == (48, 16)


def test_gaze_scores_in_frame_persons_and_counts_the_rest():
    """A selection split carved from GazeFollow train holds out-of-frame persons (no points): AUC and L2 are
    defined on in-frame targets, so those are scored and the rest counted (it was None: no selection metric)."""
    import numpy as np

    from socialfusion.core.schema import Box, Sample
    from socialfusion.tasks.gaze import gaze_target

    task = build_task("gaze")
    head = [Box((0.1, 0.1, 0.2, 0.2), 0)]
    inside = Sample(id="a", task="gaze", image="a.jpg", boxes=head, points=[(0.7, 0.3)], inout=1)
    outside = Sample(id="b", task="gaze", image="b.jpg", boxes=head, points=None, inout=0)
    right = {"heatmap": gaze_target([(0.7, 0.3)]).numpy(), "image_size": (640, 480), "point": [0.7, 0.3], "inout": 1.0}
    wrong = {"heatmap": gaze_target([(0.1, 0.9)]).numpy(), "image_size": (640, 480), "point": [0.1, 0.9], "inout": 1.0}
    alone = task.evaluate([inside], [right])
    mixed = task.evaluate([inside, outside], [right, wrong])
    assert mixed["auc"] == alone["auc"] > 0.9 and mixed["n"] == 1 and mixed["n_out_of_frame"] == 1
    assert task.evaluate([outside], [wrong]) is None
    statistic = task.resampler([inside, outside], [right, wrong])
    values = statistic(np.array([[0, 1], [1, 1]]))
    assert values["auc"][0] == pytest.approx(alone["auc"]) and np.isnan(values["auc"][1])

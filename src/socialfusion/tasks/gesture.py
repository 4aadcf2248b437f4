"""HaGRIDv2 gestures: 33 gestures + no_gesture, in the order of hukenovs/hagrid `constants.targets`."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import TASKS
from .base import ClassificationTask

HAGRID_CLASSES = [
    "grabbing",
    "grip",
    "holy",
    "point",
    "call",
    "three3",
    "timeout",
    "xsign",
    "hand_heart",
    "hand_heart2",
    "little_finger",
    "middle_finger",
    "take_picture",
    "dislike",
    "fist",
    "four",
    "like",
    "mute",
    "ok",
    "one",
    "palm",
    "peace",
    "peace_inverted",
    "rock",
    "stop",
    "stop_inverted",
    "three",
    "three2",
    "two_up",
    "two_up_inverted",
    "three_gun",
    "thumb_index",
    "thumb_index2",
    "no_gesture",
]


@TASKS.register("gesture")
@dataclass
class Gesture(ClassificationTask):
    name = "gesture"
    default_dataset = "hagrid_v2"
    primary_metric = "accuracy"
    box_kinds = ("hand",)  # one or both gesturing hands, all role 0
    prompt_templates = {
        "v1": "<image>\nWhich hand gesture is shown in the marked box? Answer with the gesture name.",
    }
    classes: list[str] = field(default_factory=lambda: list(HAGRID_CLASSES))

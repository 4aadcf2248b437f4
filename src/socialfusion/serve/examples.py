"""Example images for the web page, drawn on demand by the synthetic-scene painter (`data.synth_draw`): no image
files ship with the package, and each example comes with a box of every kind the tasks read, so a visitor sees
what boxes by kind look like before drawing their own. They are drawn scenes, the kind the demo checkpoints were
trained on; they show how to use the page, not what the model does on photographs."""

from __future__ import annotations

import io
from functools import cache

import numpy as np

from ..data import synth_draw as sd

SIZE = (384, 288)


def _pad(box, frac: float, w: int, h: int) -> list[float]:
    x1, y1, x2, y2 = box
    px, py = frac * (x2 - x1), frac * (y2 - y1)
    return [max(0.0, x1 - px), max(0.0, y1 - py), min(float(w), x2 + px), min(float(h), y2 + py)]


def _clip(box, w: int, h: int) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)]


def _two_people(seed: int):
    """Two people side by side; the right one shows a peace sign in front of the chest."""
    rng = np.random.default_rng(seed)
    w, h = SIZE
    img, d = sd.canvas(rng, w, h)
    feet, tall = 0.96 * h, 0.78 * h
    styles = [
        dict(skin=sd.SKIN[i], hair=sd.HAIR[i], shirt=sd.BRIGHT[i], pants=sd.PANTS[i % len(sd.PANTS)]) for i in (1, 4)
    ]
    left = sd.draw_person(d, 0.3 * w, feet - tall, tall, turn=(0.3, 0.0), expression=1, **styles[0])
    right = sd.draw_person(d, 0.68 * w, feet - 0.95 * tall, 0.95 * tall, turn=(-0.2, 0.0), expression=3, **styles[1])
    hand = sd.draw_gesture(
        d, "peace", 0.68 * w, feet - 0.95 * tall * 0.55, 0.07 * h, 0.0, styles[1]["skin"], styles[1]["shirt"]
    )[0]
    boxes = [
        {"kind": "face", "xyxy": _clip(left["head"], w, h)},
        {"kind": "head", "xyxy": _pad(left["head"], 0.04, w, h)},
        {"kind": "hand", "xyxy": _clip(hand["box"], w, h)},
        {"kind": "person", "xyxy": _clip(left["box"], w, h)},
        {"kind": "person", "xyxy": _clip(right["box"], w, h)},
    ]
    return img, boxes


def _face_and_hand(seed: int):
    """A large smiling face and a thumbs-up next to it."""
    rng = np.random.default_rng(seed)
    w, h = SIZE
    img, d = sd.canvas(rng, w, h)
    d.polygon(
        [(0.08 * w, h), (0.2 * w, 0.62 * h), (0.6 * w, 0.62 * h), (0.72 * w, h)], fill=sd.BRIGHT[1], outline=sd.OUTLINE
    )
    face = sd.draw_face(d, 0.4 * w, 0.36 * h, 0.26 * h, sd.SKIN[2], sd.HAIR[0], turn=(0.1, 0.0), expression=1)
    hand = sd.draw_gesture(d, "like", 0.8 * w, 0.55 * h, 0.08 * h, 0.0, sd.SKIN[2], sd.BRIGHT[1])[0]
    boxes = [
        {"kind": "face", "xyxy": _clip(face["box"], w, h)},
        {"kind": "head", "xyxy": _pad(face["box"], 0.04, w, h)},
        {"kind": "hand", "xyxy": _clip(hand["box"], w, h)},
    ]
    return img, boxes


_EXAMPLES = {
    "two-people": ("two people, one showing a peace sign", _two_people, 3),
    "face-and-hand": ("a smiling face and a thumbs-up", _face_and_hand, 5),
}


@cache
def _render(name: str) -> tuple[bytes, tuple]:
    title, draw, seed = _EXAMPLES[name]
    img, boxes = draw(seed)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue(), tuple({**b, "xyxy": [round(v, 1) for v in b["xyxy"]]} for b in boxes)


def list_examples() -> list[dict]:
    """[{"name", "title", "width", "height", "boxes": [{"kind", "xyxy" in pixels}]}] for every example."""
    return [
        {
            "name": name,
            "title": title,
            "width": SIZE[0],
            "height": SIZE[1],
            "boxes": [dict(b) for b in _render(name)[1]],
        }
        for name, (title, _draw, _seed) in _EXAMPLES.items()
    ]


def example_png(name: str) -> bytes | None:
    return _render(name)[0] if name in _EXAMPLES else None

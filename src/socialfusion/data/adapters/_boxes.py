"""Box arithmetic shared by the adapters: validate, repair what the references repair, normalise to [0, 1]."""

from __future__ import annotations

import math
from collections.abc import Sequence


class UnusableBox(ValueError):
    """A box that cannot be used; the message is the skip reason (fixed wording: the skip counter's key)."""


def coords(values, n: int = 4) -> tuple[float, ...]:
    """`n` finite floats from a JSON/CSV value, or UnusableBox."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) != n:
        raise UnusableBox(f"box is not a list of {n} numbers")
    out = []
    for v in values:
        if isinstance(v, bool):
            raise UnusableBox("box has a non-numeric coordinate")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise UnusableBox("box has a non-numeric coordinate") from None
        if not math.isfinite(f):
            raise UnusableBox("box has a non-finite coordinate")
        out.append(f)
    return tuple(out)


def xywh_to_xyxy(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    return (x, y, x + w, y + h)


def normalise_box(
    xyxy: Sequence[float], width: float, height: float, *, swap: bool = False, allow_empty: bool = False
) -> tuple[float, float, float, float]:
    """Pixel xyxy -> normalised xyxy clipped to the image (pass width = height = 1 for already-normalised boxes).

    swap: put swapped corners in order (GazeFollow heads, as Gaze-LLE does); otherwise swapped corners are an error.
    allow_empty: keep a box that has no area inside the image (as a degenerate box on the border) instead of
    refusing it; LAM needs this because the baseline keeps such frames (it pads the failed crop with zeros).
    """
    x1, y1, x2, y2 = coords(xyxy)
    if not (math.isfinite(width) and math.isfinite(height)) or width <= 0 or height <= 0:
        raise UnusableBox("image size is not positive")
    if x2 < x1 or y2 < y1:
        if not swap:
            raise UnusableBox("box has x2 < x1 or y2 < y1")
        x1, x2 = min(x1, x2), max(x1, x2)
        y1, y2 = min(y1, y2), max(y1, y2)
    cx1, cx2 = _clip(x1, 0.0, width), _clip(x2, 0.0, width)
    cy1, cy2 = _clip(y1, 0.0, height), _clip(y2, 0.0, height)
    if not allow_empty and (cx2 <= cx1 or cy2 <= cy1):
        raise UnusableBox("box has no area inside the image")
    # division can land a hair outside [0, 1] in floating point; Box refuses that
    return (
        _clip(cx1 / width, 0.0, 1.0),
        _clip(cy1 / height, 0.0, 1.0),
        _clip(cx2 / width, 0.0, 1.0),
        _clip(cy2 / height, 0.0, 1.0),
    )


# how far a user's box may stick out of the image, as a fraction of the image's side, and still be clipped to it
# (a detector's box one pixel past the border); further out it is a mistake (wrong image, or pixels read as
# normalised coordinates), refused with the box named
BORDER_TOLERANCE = 0.05


def clip_to_image(
    xyxy: Sequence[float], width: float, height: float, tolerance: float = BORDER_TOLERANCE
) -> tuple[tuple[float, float, float, float], bool]:
    """A user's xyxy box (pixels; pass width = height = 1 for normalised coordinates) -> (normalised xyxy clipped
    to the image, whether it was clipped). A box may stick out of the image by `tolerance` of the image's side;
    UnusableBox when it sticks out further or lies wholly outside (no area inside). Swapped corners are refused."""
    x1, y1, x2, y2 = coords(xyxy)
    if not (math.isfinite(width) and math.isfinite(height)) or width <= 0 or height <= 0:
        raise UnusableBox("image size is not positive")
    if x2 < x1 or y2 < y1:
        raise UnusableBox("box has x2 < x1 or y2 < y1")
    cx1, cx2 = _clip(x1, 0.0, width), _clip(x2, 0.0, width)
    cy1, cy2 = _clip(y1, 0.0, height), _clip(y2, 0.0, height)
    has_area = x2 > x1 and y2 > y1
    if (has_area and (cx2 <= cx1 or cy2 <= cy1)) or x1 > width or y1 > height or x2 < 0 or y2 < 0:
        raise UnusableBox("box lies wholly outside the image")
    past = max(-x1 / width, -y1 / height, (x2 - width) / width, (y2 - height) / height)
    if past > tolerance:
        raise UnusableBox(
            f"box lies outside the image: it extends {past:.0%} of the image's side past the border "
            f"(up to {tolerance:.0%} is clipped)"
        )
    box = (
        _clip(cx1 / width, 0.0, 1.0),
        _clip(cy1 / height, 0.0, 1.0),
        _clip(cx2 / width, 0.0, 1.0),
        _clip(cy2 / height, 0.0, 1.0),
    )
    return box, (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2)


def _clip(v: float, lo: float, hi: float) -> float:
    return lo if v < lo else hi if v > hi else v


WHOLE_IMAGE = (0.0, 0.0, 1.0, 1.0)

"""An image's boxes: checked (`parse_boxes`) and routed to the tasks by kind (`task_boxes`, `task_groups`).

`socialfusion.api` describes the boxes a caller sends (its module docstring) and re-exports what is public here
(`parse_box`, `parse_boxes`, `BoxError`, `PredictInputError`, `MAX_BOXES`). Here: what a box may hold, which of an
image's boxes each task reads (kinded boxes by `Task.box_kinds`, untagged ones by role, the whole image when none
were given, the detected ones with `detect=True`), and which tasks can share one decoder pass because they read the
same boxes of the same images.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import detect as detection
from .data.adapters._boxes import UnusableBox, clip_to_image
from .errors import UserError
from .tasks.base import BOX_KINDS


class PredictInputError(UserError, ValueError):
    """Input a caller got wrong (boxes, tasks, image arrays); the message says what and where."""


class BoxError(PredictInputError):
    pass


MAX_BOXES = 64  # per image; more is certainly a mistake (and memory grows with it)
MAX_ROLE = 15


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BoxError(f"{where}: coordinates must be numbers, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise BoxError(f"{where}: coordinates must be finite, got {value!r}")
    return v


def parse_box(box: Any, size: tuple[int, int], where: str = "box") -> dict:
    """One user box -> {"xyxy": pixel coords, "xyxy_normalized": [0, 1] coords, "kind": str | None, "role": int |
    None}; BoxError if wrong. A box without kind has role 0 unless it says otherwise; a kinded one keeps the role
    it gives (None: not given)."""
    if not isinstance(box, dict):
        raise BoxError(
            f"{where}: a box is an object {{'xyxy': [x1, y1, x2, y2], 'kind': 'face'}}, got {type(box).__name__}"
        )
    unknown = set(box) - {"xyxy", "kind", "role", "normalized", "label"}
    if unknown:
        raise BoxError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: xyxy, kind, role, normalized)")
    kind = box.get("kind")
    if kind is not None and kind not in BOX_KINDS:
        raise BoxError(f"{where}: 'kind' must be one of {', '.join(BOX_KINDS)}, got {kind!r}")
    xyxy = box.get("xyxy")
    if not isinstance(xyxy, (list, tuple, np.ndarray)) or len(xyxy) != 4:
        raise BoxError(f"{where}: 'xyxy' must be a list of 4 numbers [x1, y1, x2, y2], got {xyxy!r}")
    x1, y1, x2, y2 = (_number(v, where) for v in xyxy)
    role = box.get("role", None if kind else 0)
    if role is not None and (
        isinstance(role, bool) or not isinstance(role, (int, np.integer)) or not 0 <= int(role) <= MAX_ROLE
    ):
        raise BoxError(
            f"{where}: 'role' must be an integer 0..{MAX_ROLE} (0 = subject, 1 = second person), got {role!r}"
        )
    normalized = box.get("normalized")
    if normalized is None:
        normalized = max(x1, y1, x2, y2) <= 1.0
    elif not isinstance(normalized, bool):
        raise BoxError(f"{where}: 'normalized' must be true or false, got {normalized!r}")
    if x2 < x1 or y2 < y1:
        raise BoxError(f"{where}: impossible box {[x1, y1, x2, y2]}: needs x1 <= x2 and y1 <= y2")
    w, h = size
    limit = (1.0, 1.0) if normalized else (float(w), float(h))
    unit = "normalised" if normalized else f"pixel (image is {w}x{h})"
    try:  # a box slightly past the border is clipped (and says so); one further out, or wholly outside, is refused
        clipped_box, clipped = clip_to_image([x1, y1, x2, y2], *limit)
    except UnusableBox as err:
        raise BoxError(f"{where}: box {[x1, y1, x2, y2]} in {unit} coordinates: {err}") from None
    n = list(clipped_box)
    out = {
        "xyxy": [n[0] * w, n[1] * h, n[2] * w, n[3] * h],
        "xyxy_normalized": n,
        "kind": kind,
        "role": None if role is None else int(role),
    }
    return {**out, "clipped": True} if clipped else out


def parse_boxes(boxes: Any, size: tuple[int, int], where: str = "image") -> list[dict]:
    if boxes is None:
        return []
    if isinstance(boxes, dict):
        boxes = [boxes]
    if not isinstance(boxes, (list, tuple)):
        raise BoxError(f"{where}: boxes must be a list of box objects, got {type(boxes).__name__}")
    if len(boxes) > MAX_BOXES:
        raise BoxError(f"{where}: {len(boxes)} boxes; at most {MAX_BOXES} per image")
    parsed = [parse_box(b, size, f"{where}, box {i}") for i, b in enumerate(boxes)]
    kinded = [b["kind"] is not None for b in parsed]
    if any(kinded) and not all(kinded):
        i = kinded.index(False)
        raise BoxError(
            f"{where}, box {i}: no 'kind' while other boxes have one; give every box a kind ({', '.join(BOX_KINDS)})"
        )
    return parsed


def roles_needed(task) -> list[int]:
    return list(range(max(1, int(getattr(task, "num_roles", 1)))))


def _kinds_text(task) -> str:
    return " + ".join(task.box_kinds) if task.box_kinds else "untagged boxes"


def _by_role(task, boxes: list[dict]) -> tuple[list[tuple[int, int]] | None, str | None]:
    """Untagged boxes (the older form): role r of the task reads the boxes of role r."""
    needed = roles_needed(task)
    chosen = [(i, b["role"]) for i, b in enumerate(boxes) if b["role"] in needed]
    missing = [r for r in needed if not any(role == r for _, role in chosen)]
    if missing:
        if len(needed) > 1:
            return None, f"{task.name} needs {len(needed)} boxes, one per role {needed} (roles missing: {missing})"
        return None, f"{task.name} needs a role-{needed[0]} box"
    return chosen, None


def _by_kind(task, boxes: list[dict]) -> tuple[list[tuple[int, int]] | None, str | None]:
    """Kinded boxes: role r of the task reads the boxes of kind `task.box_kinds[r]`. A kind that fills one role
    takes every box of that kind (both hands of a gesture); a kind that fills several (relation's two persons)
    needs one box per role, by the boxes' own roles or, with exactly that many boxes, in the order given."""
    if not task.box_kinds:
        return None, f"{task.name} declares no box kind (Task.box_kinds): send it boxes without 'kind'"
    chosen: list[tuple[int, int]] = []
    for kind in dict.fromkeys(task.box_kinds):
        slots = [r for r, k in enumerate(task.box_kinds) if k == kind]
        found = [i for i, b in enumerate(boxes) if b["kind"] == kind]
        if not found:
            return None, f"no {kind} box" if len(slots) == 1 else f"no {kind} boxes ({task.name} needs {len(slots)})"
        if len(slots) == 1:
            chosen += [(i, slots[0]) for i in found]
            continue
        with_role = [i for i in found if boxes[i]["role"] is not None and boxes[i]["role"] < len(slots)]
        if with_role:
            roles = sorted(boxes[i]["role"] for i in with_role)
            if roles != list(range(len(slots))):
                return (
                    None,
                    f"{task.name} needs one {kind} box per role 0..{len(slots) - 1}; the roles given are {roles}",
                )
            chosen += [(i, slots[boxes[i]["role"]]) for i in with_role]
        elif len(found) == len(slots):
            chosen += [(i, slot) for i, slot in zip(found, slots)]
        else:
            return None, (
                f"{task.name} needs {len(slots)} {kind} boxes and {len(found)} were given: mark the pair with "
                f"'role' 0 and 1"
            )
    return chosen, None


class DetectedBoxes(list):
    """An image's boxes found by detection; empty means nothing was found, not "use the whole image"."""


def detected_boxes(pil, threads: int | None = None) -> tuple[DetectedBoxes, str, list[dict]]:
    """The boxes the tasks read, the note saying what was found, and every detection (`detect.listing`)."""
    found = detection.detect(pil, threads=threads)
    boxes, note = detection.boxes_for_tasks(found, pil.size)
    return DetectedBoxes(boxes), note, detection.listing(found, boxes, pil.size)


def check_untagged_boxes(tasks: dict, boxes: list[dict], names: list[str], where: str) -> None:
    """Boxes without a kind are read by role, which is only unambiguous when the requested tasks all take the
    same kinds of box; BoxError otherwise."""
    if not boxes or boxes[0]["kind"] is not None:
        return
    kinds = {n: tasks[n].box_kinds for n in names if tasks[n].box_kinds}
    if len(set(kinds.values())) > 1:
        wants = ", ".join(f"{n} takes {' + '.join(k)}" for n, k in kinds.items())
        raise BoxError(
            f"{where}: boxes without 'kind' are ambiguous for these tasks ({wants}); give every box a kind "
            f"({', '.join(BOX_KINDS)})"
        )


def task_boxes(task, boxes: list[dict]) -> tuple[list[dict] | None, str | None]:
    """The boxes `task` reads among an image's boxes, each with the role the task gives it (and its index in the
    result's boxes), or None and why not."""
    if boxes and boxes[0]["source"] == "whole_image":
        if len(roles_needed(task)) > 1:
            return None, f"{task.name} needs {len(roles_needed(task))} boxes ({_kinds_text(task)}), one per role"
        pairs, why = [(0, 0)], None
    elif boxes and boxes[0]["kind"] is not None:
        pairs, why = _by_kind(task, boxes)
    else:
        pairs, why = _by_role(task, boxes)
    if pairs is None:
        return None, why
    return [
        {"xyxy": boxes[i]["xyxy"], "xyxy_normalized": boxes[i]["xyxy_normalized"], "role": role, "index": i}
        for i, role in pairs
    ], None


def image_boxes(size: tuple[int, int], boxes: list[dict]) -> tuple[list[dict], list[str]]:
    """An image's boxes as the result lists them (each with its "source"), and the notes about them: with none
    given (and none looked for), the whole image, as the box of each single-box task."""
    w, h = size
    used = [{"source": "given", **b} for b in boxes]
    notes = []
    if not used and not isinstance(boxes, DetectedBoxes):
        used = [
            {
                "xyxy": [0.0, 0.0, float(w), float(h)],
                "xyxy_normalized": [0.0, 0.0, 1.0, 1.0],
                "kind": None,
                "role": 0,
                "source": "whole_image",
            }
        ]
        notes.append(
            "no boxes given: the whole image is the box of each single-box task (a crop of a face, hand or head)"
        )
    return used, notes


def task_groups(
    tasks: dict, names: list[str], results: list[dict]
) -> list[tuple[list[int], list[list[dict]], list[str]]]:
    """The tasks `names` grouped by the rows (images) they run on and the boxes they read there, as (rows, each
    row's boxes, task names); a task that cannot run on a row gets {"skipped": why} in that row's result."""
    # tasks that run on the same rows with the same boxes (lam and expression both read the face) form one
    # group: one batch, one `infer_tasks` call sharing the [text + image] prefix
    groups: dict[tuple, tuple[list[int], list[list[dict]], list[str]]] = {}
    for name in names:
        rows, row_boxes = [], []
        for i, r in enumerate(results):
            chosen, why = task_boxes(tasks[name], r["boxes"])
            if chosen is None:
                r["tasks"][name] = {"skipped": why}
            else:
                rows.append(i)
                row_boxes.append(chosen)
        if rows:
            key = (
                tuple(rows),
                tuple(tuple((tuple(b["xyxy_normalized"]), b["role"]) for b in c) for c in row_boxes),
            )
            groups.setdefault(key, (rows, row_boxes, []))[2].append(name)
    return list(groups.values())

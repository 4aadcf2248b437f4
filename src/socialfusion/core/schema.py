"""The canonical record every dataset adapter produces; nothing downstream knows a dataset's quirks."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError


class DataError(UserError, ValueError):
    """A record or file that cannot be used; the message names the file and the record."""


@dataclass(frozen=True)
class Box:
    """A normalised xyxy box in [0, 1] with a role (0 = subject person/face/hand/head, 1 = second person)."""

    xyxy: tuple[float, float, float, float]
    role: int = 0

    def __post_init__(self):
        x1, y1, x2, y2 = self.xyxy
        if not all(math.isfinite(v) for v in self.xyxy):
            raise DataError(f"box has a non-finite coordinate: {self.xyxy}")
        if x2 < x1 or y2 < y1:
            raise DataError(f"box has x2 < x1 or y2 < y1: {self.xyxy}")
        if min(self.xyxy) < 0.0 or max(self.xyxy) > 1.0:
            raise DataError(f"box is not normalised to [0, 1]: {self.xyxy}")
        if self.role < 0:
            raise DataError(f"box role must be >= 0, got {self.role}")


@dataclass
class Sample:
    """One supervised (or unlabelled) example.

    `image` is relative to `root` (the dataset root); `label` is a class index for classification tasks;
    `points` are normalised (x, y) gaze targets, one per annotator, for `gaze`; `inout` is 1 (target in frame),
    0 (out of frame) or None (unknown); `meta` carries provenance (clip, frame, track, user id...). `meta["group"]`,
    where an adapter sets it, names what stays on one side of a split carved from it (a clip, a user;
    `data/holdout.py`).
    """

    id: str
    task: str
    image: str
    boxes: list[Box] = field(default_factory=list)
    label: int | None = None
    points: list[tuple[float, float]] | None = None
    inout: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    root: str = ""

    def image_path(self) -> Path:
        """Absolute image path; refuses paths that escape the dataset root."""
        root = Path(self.root or ".").resolve()
        path = (root / self.image).resolve()
        if root != path and root not in path.parents:
            raise DataError(f"sample {self.id}: image path {self.image!r} escapes the dataset root {root}")
        return path

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "id": self.id,
            "task": self.task,
            "image": self.image,
            "boxes": [{"xyxy": list(b.xyxy), "role": b.role} for b in self.boxes],
        }
        if self.label is not None:
            record["label"] = self.label
        if self.points is not None:
            record["points"] = [list(p) for p in self.points]
        if self.inout is not None:
            record["inout"] = self.inout
        record["meta"] = self.meta
        if self.root:
            record["root"] = self.root
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any], root: str = "") -> Sample:
        """Parse a canonical record; `root` is used when the record carries none."""
        try:
            raw_boxes = record.get("boxes", [])
            if not isinstance(raw_boxes, list):
                raise TypeError(f"boxes must be a list, got {type(raw_boxes).__name__}")
            boxes = [Box(tuple(float(v) for v in b["xyxy"]), _strict_int(b.get("role", 0), "role")) for b in raw_boxes]
            points = record.get("points")
            return cls(
                id=str(record["id"]),
                task=str(record["task"]),
                image=str(record["image"]),
                boxes=boxes,
                label=None if record.get("label") is None else _strict_int(record["label"], "label"),
                points=None if points is None else [(float(x), float(y)) for x, y in points],
                inout=None if record.get("inout") is None else _strict_int(record["inout"], "inout"),
                meta=dict(record.get("meta") or {}),
                root=str(record.get("root") or root),
            )
        except DataError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as err:
            raise DataError(f"malformed record {record.get('id', '?')!r}: {type(err).__name__}: {err}") from err


def _strict_int(value: Any, what: str) -> int:
    """An integer field: 3 and 3.0 are fine; true, 1.5 and "3" are not (JSON has no int/float distinction)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def write_jsonl(samples: Iterable[Sample], path: str | Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> Iterator[Sample]:
    """Read canonical records; relative roots resolve against the JSONL file's directory."""
    path = Path(path)
    base = path.parent
    with open(path, encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{line_no}: not valid JSON ({err.msg})") from err
            if not isinstance(record, dict):
                raise DataError(f"{path}:{line_no}: a record must be a JSON object")
            try:
                sample = Sample.from_dict(record, root=str(base))
            except DataError as err:
                raise DataError(f"{path}:{line_no}: {err}") from err
            if sample.root and not Path(sample.root).is_absolute():
                sample.root = str((base / sample.root).resolve())
            yield sample

"""GazeFollow with Chong et al.'s extended annotations (in/out of frame), read like Gaze-LLE and Chong do.

Files: `train_annotations_release.txt` (17 columns) and `test_annotations_release.txt` (16: no `inout`), CSV
without a header (DATASETS.md 5.3). Eye and gaze points are normalised; the head box is in pixels and is
swapped when min > max and clipped to [0, W] x [0, H] (Gaze-LLE `data_prep/preprocess_gazefollow.py`).

- train: one sample per row; `inout = -1` rows are dropped (every loader does), `inout = 0` rows are kept with
  `points = None` (their gaze values are not meaningful; the raw values stay in meta).
- test: rows grouped by (path, eye_x) (Gaze-LLE and Chong `dataset.py`) into one person whose `points` are all
  annotators' gaze points; the head box comes from the group's first row; every test person is in frame.
- val: GazeFollow has no official validation split (Chong and Gaze-LLE validate on test). With the option
  `val_fraction` > 0, images of the train file whose path hashes below that fraction form split 'val', and
  split 'train' then excludes them (deterministic: SHA-1 of the image path, no seed).
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from ...core.images import ImageError, image_size
from ...core.schema import Box, DataError, Sample
from ..skips import SkipReport
from . import DATASETS
from ._boxes import UnusableBox, normalise_box
from ._common import check_split, csv_error, filtered, float_option, parse_float, parse_int, require_file

COLUMNS = (
    "path",
    "idx",
    "body_bbox_x",
    "body_bbox_y",
    "body_bbox_w",
    "body_bbox_h",
    "eye_x",
    "eye_y",
    "gaze_x",
    "gaze_y",
    "bbox_x_min",
    "bbox_y_min",
    "bbox_x_max",
    "bbox_y_max",
    "inout",
    "source",
    "meta",
)
TRAIN_COLUMNS = COLUMNS
TEST_COLUMNS = tuple(c for c in COLUMNS if c != "inout")
FILES = {"train": "train_annotations_release.txt", "test": "test_annotations_release.txt"}


class _Bad(ValueError):
    """A row that cannot be used; the message is the skip reason."""


@DATASETS.register("gazefollow")
def read(root: Path, split: str, report: SkipReport, val_fraction=0.0) -> list[Sample]:
    """Options: `val_fraction` in [0, 1): share of train images held out as split 'val' (see the module doc)."""
    check_split("gazefollow", split, ("train", "val", "test"))
    fraction = float_option("val_fraction", val_fraction, 0.0, 1.0)
    if split == "test":
        return _read_test(root, report)
    if split == "val" and fraction <= 0.0:
        raise DataError(
            "gazefollow: there is no official val split; set the option val_fraction (e.g. 0.05) to hold "
            "out part of train, or validate on split 'test' as Chong and Gaze-LLE do"
        )
    want_val = split == "val"
    return _read_train(root, report, keep=lambda path: (fraction > 0 and in_val(path, fraction)) == want_val)


def in_val(path: str, fraction: float) -> bool:
    """Deterministic hold-out by image path, so every row (person) of one image lands in the same split."""
    h = int.from_bytes(hashlib.sha1(path.encode("utf-8")).digest()[:8], "big")
    return h / 2.0**64 < fraction


def _rows(root: Path, split: str, columns: tuple[str, ...]):
    """(line number, {column: text}) for every non-blank row; a row with the wrong column count is yielded as a str."""
    path = require_file(root / FILES[split], f"GazeFollow {split} annotations")
    line_no = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # newline="" lets csv handle CRLF; -sig drops a BOM
            for line_no, row in enumerate(csv.reader(f), 1):
                if not row or not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(columns):
                    yield line_no, f"row has {len(row)} columns, expected {len(columns)}"
                else:
                    yield line_no, {name: cell.strip() for name, cell in zip(columns, row)}
    except (UnicodeDecodeError, csv.Error) as err:
        raise csv_error(path, line_no, err) from err


class _Sizes:
    """Image sizes per path for one read (rows of an image are consecutive; a missing image is skipped per row)."""

    def __init__(self, root: Path, report: SkipReport):
        self.root, self.report, self.cache = root, report, {}

    def head_box(self, row: dict, where: str) -> tuple | None:
        path = row["path"]
        if path not in self.cache:
            try:
                self.cache[path] = image_size(self.root / path)
            except ImageError as err:
                self.cache[path] = err.reason
            except ValueError:  # os.stat refuses the name (a NUL byte in the path column)
                self.cache[path] = "invalid file name"
        size = self.cache[path]
        if isinstance(size, str):
            self.report.skip(where, f"image: {size}")
            return None
        try:
            xyxy = [parse_float(row[k]) for k in ("bbox_x_min", "bbox_y_min", "bbox_x_max", "bbox_y_max")]
            return normalise_box(xyxy, *size, swap=True)
        except UnusableBox as err:
            self.report.skip(where, f"head box: {err}")
        except ValueError:
            self.report.skip(where, "head box is not four finite numbers")
        return None


def _point(row: dict, x: str, y: str) -> tuple[float, float]:
    try:
        return parse_float(row[x]), parse_float(row[y])
    except ValueError:
        raise _Bad(f"{x}/{y} are not finite numbers") from None


def _in_frame_point(row: dict) -> tuple[float, float]:
    gx, gy = _point(row, "gaze_x", "gaze_y")
    if not (0.0 <= gx <= 1.0 and 0.0 <= gy <= 1.0):
        raise _Bad("in-frame gaze point outside [0, 1]")
    return gx, gy


def _read_train(root: Path, report: SkipReport, keep) -> list[Sample]:
    sizes = _Sizes(root, report)
    out = []
    for line_no, row in _rows(root, "train", TRAIN_COLUMNS):
        where = f"{FILES['train']}:{line_no}"
        if isinstance(row, str):
            report.skip(where, row)
            continue
        if not row["path"]:
            report.skip(where, "empty image path")
            continue
        if not keep(row["path"]):
            continue
        try:
            inout = parse_int(row["inout"])
            if inout not in (-1, 0, 1):
                raise _Bad("inout is not 1, 0 or -1")
            if inout == -1:
                filtered(report, where, "inout -1 (invalid annotation, dropped by every reference loader)")
                continue
            eye = _point(row, "eye_x", "eye_y")
            points = [_in_frame_point(row)] if inout == 1 else None
        except ValueError as err:
            report.skip(where, str(err) if isinstance(err, _Bad) else "inout is not an integer")
            continue
        box = sizes.head_box(row, where)
        if box is None:
            continue
        out.append(
            Sample(
                id=f"{row['path']}#L{line_no}",
                task="gaze",
                image=row["path"],
                boxes=[Box(box, 0)],
                points=points,
                inout=inout,
                root=str(root),
                meta={
                    "path": row["path"],
                    "idx": row["idx"],
                    "eye": list(eye),
                    "line": line_no,
                    "source": row["source"],
                    "orig": row["meta"],
                    "gaze_raw": [row["gaze_x"], row["gaze_y"]],
                },
            )
        )
    return out


def _read_test(root: Path, report: SkipReport) -> list[Sample]:
    sizes = _Sizes(root, report)
    persons: dict[tuple[str, float], dict] = {}
    for line_no, row in _rows(root, "test", TEST_COLUMNS):
        where = f"{FILES['test']}:{line_no}"
        if isinstance(row, str):
            report.skip(where, row)
            continue
        try:
            if not row["path"]:
                raise _Bad("empty image path")
            eye = _point(row, "eye_x", "eye_y")
            point = _in_frame_point(row)
        except _Bad as err:
            report.skip(where, str(err))
            continue
        key = (row["path"], eye[0])  # one person = one (path, eye_x) group, not one idx
        person = persons.get(key)
        if person is None:
            box = sizes.head_box(row, where)  # the group's first row gives the box, as Gaze-LLE does
            if box is None:
                continue
            person = persons[key] = {"row": row, "line": line_no, "eye": eye, "box": box, "points": [], "idx": []}
        person["points"].append(point)
        person["idx"].append(row["idx"])
    return [
        Sample(
            id=f"{p['row']['path']}#L{p['line']}",
            task="gaze",
            image=p["row"]["path"],
            boxes=[Box(p["box"], 0)],
            points=p["points"],
            inout=1,
            root=str(root),
            meta={
                "path": p["row"]["path"],
                "idx": p["idx"],
                "eye": list(p["eye"]),
                "line": p["line"],
                "source": p["row"]["source"],
                "orig": p["row"]["meta"],
                "n_annotators": len(p["points"]),
            },
        )
        for p in persons.values()
    ]

"""AffectNet expressions in both distributions (DATASETS.md 2.2), detected from the folder layout.

(A) the 2017 release: `Manually_Annotated_file_lists/{training,validation}.csv` + full images under
    `Manually_Annotated_Images/`; one face box (pixel xywh) per row -> normalised xyxy clipped to the image.
(B) the npy redistribution (as read by yaoing/DAN `affectnet.py`): `{train,val}_set/images/<id>.jpg` pre-cropped
    faces + `annotations/<id>_{exp,val,aro,lnd}.npy` 0-d arrays, sometimes string-typed; box = the whole image.

Labels keep the official index order 0..7; 8 None / 9 Uncertain / 10 No-Face are never classes (counted skips),
and `classes=7` also drops Contempt (7), as DAN builds the 7-class task. There is no public test split: papers
report on the validation set, so ask for split 'val'.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ...core.schema import Box, DataError, Sample
from ...tasks.expression import AFFECTNET_CLASSES
from ..skips import SkipReport
from . import DATASETS
from ._boxes import WHOLE_IMAGE, UnusableBox, normalise_box, xywh_to_xyxy
from ._common import (
    DirectoryIndex,
    bool_option,
    check_split,
    choice_option,
    csv_error,
    filtered,
    int_option,
    parse_float,
    parse_int,
    require_file,
    size_or_skip,
)

CSV_COLUMNS = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
NON_CLASSES = {8: "None", 9: "Uncertain", 10: "No-Face"}
CSV_FILES = {"train": "training.csv", "val": "validation.csv"}
NPY_DIRS = {"train": "train_set", "val": "val_set"}
IMAGE_DIR_CANDIDATES = ("Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@DATASETS.register("affectnet")
def read(root: Path, split: str, report: SkipReport, classes=8, layout="auto", images_dir=None, landmarks=False):
    """Options: `classes` 8 or 7; `layout` auto|csv|npy; `images_dir` (CSV layout: folder of the images, default
    Manually_Annotated_Images); `landmarks` true keeps the 68 (x, y) landmarks in meta (costs memory and time)."""
    check_split("affectnet", split, ("train", "val"), "; AffectNet has no public test set, papers report on 'val'")
    n_classes = int_option("classes", classes)
    if n_classes not in (7, 8):
        raise DataError(f"option classes={classes!r}: expected 7 or 8")
    keep_landmarks = bool_option("landmarks", landmarks)
    layout = choice_option("layout", layout, ("auto", "csv", "npy"))
    if layout == "auto":
        layout = _detect_layout(root)
    label_of = _label_filter(n_classes)
    if layout == "csv":
        return _read_csv(root, split, report, label_of, images_dir, keep_landmarks)
    return _read_npy(root, split, report, label_of, keep_landmarks)


def _detect_layout(root: Path) -> str:
    if (root / "Manually_Annotated_file_lists").is_dir():
        return "csv"
    if any((root / d).is_dir() for d in NPY_DIRS.values()):
        return "npy"
    raise DataError(
        f"AffectNet layout not recognised under {root}: expected Manually_Annotated_file_lists/ (CSV release) "
        f"or train_set/ and val_set/ (npy release)"
    )


class _Protocol(str):
    """A skip reason for a record the protocol leaves out (counted, never an error)."""


def _drop(report: SkipReport, where: str, reason: str) -> None:
    if isinstance(reason, _Protocol):
        filtered(report, where, reason)
    else:
        report.skip(where, reason)


def _label_filter(n_classes: int):
    """expression value -> class index, or a skip reason string (a _Protocol one for the classes left out)."""

    def label_of(value) -> int | str:
        try:
            label = parse_int(value)
        except ValueError:
            return "expression is not an integer"
        if label in NON_CLASSES:
            return _Protocol(f"expression {label} ({NON_CLASSES[label]}) is not an expression class")
        if not 0 <= label < len(AFFECTNET_CLASSES):
            return f"unknown expression label {label}"
        if label >= n_classes:
            return _Protocol(f"expression {label} ({AFFECTNET_CLASSES[label]}) is not in the {n_classes}-class task")
        return label

    return label_of


def parse_landmarks(text) -> np.ndarray | None:
    """'x1;y1;x2;y2;...' (136 values) or a 136-value array -> (68, 2) float array; None if malformed."""
    try:
        if isinstance(text, str):
            points = np.array([float(v) for v in text.split(";") if v.strip()], dtype=np.float64)
        else:
            points = np.asarray(text, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None
    if points.size != 136 or not np.all(np.isfinite(points)):
        return None
    return points.reshape(68, 2)


# ---- (A) CSV lists + full images -----------------------------------------------------------------------------


def _read_csv(root: Path, split: str, report: SkipReport, label_of, images_dir, keep_landmarks) -> list[Sample]:
    csv_path = require_file(root / "Manually_Annotated_file_lists" / CSV_FILES[split], "AffectNet file list")
    image_dir = images_dir or next((d for d in IMAGE_DIR_CANDIDATES if (root / d).is_dir()), IMAGE_DIR_CANDIDATES[0])
    out = []
    row_no = 0
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = csv.reader(f)
            columns = {name: i for i, name in enumerate(CSV_COLUMNS)}
            for row_no, row in enumerate(rows, 1):
                if row_no == 1 and row and row[0].strip().lower() == CSV_COLUMNS[0].lower():
                    columns = _header_columns(row, csv_path)
                    continue
                if not row or not any(cell.strip() for cell in row):
                    continue
                sample = _csv_row(
                    root, image_dir, row, columns, f"{csv_path.name}:{row_no}", report, label_of, keep_landmarks
                )
                if sample is not None:
                    out.append(sample)
    except (UnicodeDecodeError, csv.Error) as err:
        raise csv_error(csv_path, row_no, err) from err
    return out


def _header_columns(header: list[str], path: Path) -> dict[str, int]:
    index = {name.strip().lower(): i for i, name in enumerate(header)}
    missing = [c for c in CSV_COLUMNS if c.lower() not in index]
    if missing:
        raise DataError(f"{path}: header lacks the column(s) {', '.join(missing)}")
    return {c: index[c.lower()] for c in CSV_COLUMNS}


def _csv_row(root, image_dir, row, columns, where, report, label_of, keep_landmarks) -> Sample | None:
    if len(row) <= max(columns.values()):
        report.skip(where, f"row has {len(row)} columns, expected {len(CSV_COLUMNS)}")
        return None
    cell = {name: row[i].strip() for name, i in columns.items()}
    label = label_of(cell["expression"])
    if isinstance(label, str):
        _drop(report, where, label)
        return None
    rel_path = cell["subDirectory_filePath"].replace("\\", "/").lstrip("/")
    if not rel_path:
        report.skip(where, "empty subDirectory_filePath")
        return None
    try:
        face = tuple(parse_float(cell[k]) for k in ("face_x", "face_y", "face_width", "face_height"))
    except ValueError:
        report.skip(where, "face box is not four finite numbers")
        return None
    if face[2] <= 0 or face[3] <= 0:
        report.skip(where, "face box has a non-positive width or height")
        return None
    image = f"{image_dir}/{rel_path}"
    size = size_or_skip(root, image, report, f"{where} ({image})")
    if size is None:
        return None
    try:
        box = normalise_box(xywh_to_xyxy(*face), *size)
    except UnusableBox as err:
        report.skip(where, str(err))
        return None
    meta = {
        "expression": parse_int(cell["expression"]),
        "valence": _maybe_float(cell["valence"]),
        "arousal": _maybe_float(cell["arousal"]),
        "face_xywh": list(face),
        "row": where,
    }
    if keep_landmarks:
        points = parse_landmarks(cell["facial_landmarks"])
        meta["landmarks"] = None if points is None else points.tolist()
    return Sample(
        id=rel_path, task="expression", image=image, boxes=[Box(box, 0)], label=label, meta=meta, root=str(root)
    )


def _maybe_float(value) -> float | None:
    try:
        return parse_float(value)
    except ValueError:
        return None


# ---- (B) npy redistribution: pre-cropped faces ---------------------------------------------------------------


def _read_npy(root: Path, split: str, report: SkipReport, label_of, keep_landmarks) -> list[Sample]:
    base = NPY_DIRS[split]
    annotations = root / base / "annotations"
    if not annotations.is_dir():
        raise DataError(f"AffectNet annotations not found: expected the folder {annotations}")
    files = DirectoryIndex(root)
    ids = sorted(
        (n[: -len("_exp.npy")] for n in files.names(f"{base}/annotations") if n.endswith("_exp.npy")),
        key=lambda s: (0, int(s), "") if s.isdigit() else (1, 0, s),
    )
    out = []
    for image_id in ids:
        where = f"{base}/annotations/{image_id}_exp.npy"
        try:
            expression = _scalar(annotations / f"{image_id}_exp.npy")
        except ValueError as err:
            report.skip(f"{where} ({err})", "unreadable expression .npy file")
            continue
        label = label_of(expression)
        if isinstance(label, str):
            _drop(report, where, label)
            continue
        candidates = (f"{base}/images/{image_id}{ext}" for ext in IMAGE_EXTENSIONS)
        image = next((c for c in candidates if files.exists(c)), None)
        if image is None:
            report.skip(where, "image: image file not found")
            continue
        meta = {
            "expression": parse_int(expression),
            "valence": _optional_scalar(annotations / f"{image_id}_val.npy"),
            "arousal": _optional_scalar(annotations / f"{image_id}_aro.npy"),
        }
        if keep_landmarks:
            points = _optional_array(annotations / f"{image_id}_lnd.npy")
            meta["landmarks"] = None if points is None else points.tolist()
        out.append(
            Sample(
                id=f"{base}/{image_id}",
                task="expression",
                image=image,
                boxes=[Box(WHOLE_IMAGE, 0)],
                label=label,
                meta=meta,
                root=str(root),
            )
        )
    return out


def _scalar(path: Path):
    """The value of a 0-d (or 1-element) array; string-typed arrays ('7', '0.25') are returned as str."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{type(err).__name__}: {err}") from None
    if array.size != 1:
        raise ValueError(f"expected one value, got shape {array.shape}")
    return array.reshape(-1)[0].item()


def _optional_scalar(path: Path) -> float | None:
    try:
        return parse_float(_scalar(path))
    except (ValueError, OSError):
        return None


def _optional_array(path: Path) -> np.ndarray | None:
    try:
        return parse_landmarks(np.load(path, allow_pickle=False))
    except (OSError, ValueError, EOFError):
        return None

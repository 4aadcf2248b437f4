"""HaGRIDv2 (hukenovs/hagrid, branch Hagrid_v2-1M): one full-frame gesture sample per annotated image.

Layout: `hagrid_annotations/{split}/<class>.json` ({image_key: record}) and `hagrid_dataset/<class>/<key>.jpg`;
the split is decided only by the annotation file (DATASETS.md 3.2). Labels follow `dataset/dataset.py::
ClassificationDataset`: images of a gesture folder whose hands are all `no_gesture` are dropped (counted), the
target is the first hand label that is not `no_gesture`, and `no_gesture`-folder images are `no_gesture`.

Boxes (normalised xywh in the file, may stray outside [0, 1]) become xyxy clipped to [0, 1]. The sample's boxes
are those that carry the target: the united (two-hand) box when the record has one for it, else the hands with
the target label. `meta` also keeps the official detection targets (`gesture_boxes`/`gesture_labels`: the
united boxes when present, else every hand, as DetectionDataset) and every hand box (`hand_boxes`, one-class).
"""

from __future__ import annotations

from pathlib import Path

from ...core.schema import Box, DataError, Sample
from ...tasks.gesture import HAGRID_CLASSES
from ..skips import SkipReport
from . import DATASETS
from ._boxes import UnusableBox, coords, normalise_box, xywh_to_xyxy
from ._common import DirectoryIndex, check_split, filtered, load_json

NO_GESTURE = "no_gesture"
CLASS_INDEX = {name: i for i, name in enumerate(HAGRID_CLASSES)}
# download.py fetches `hands_heart2` while the label and README say `hand_heart2` (DATASETS.md 3.4)
FOLDER_ALIASES = {"hand_heart2": ("hands_heart2",)}


class _Bad(ValueError):
    """A record that cannot be used; the message is the skip reason."""


class _Protocol(_Bad):
    """A record the official classifier leaves out: counted, never an error."""


@DATASETS.register("hagrid_v2")
def read(root: Path, split: str, report: SkipReport, annotations_dir="hagrid_annotations", images_dir="hagrid_dataset"):
    """Options: `annotations_dir` and `images_dir` (folders under root, e.g. for the 512px release's names)."""
    check_split("hagrid_v2", split, ("train", "val", "test"))
    split_dir = root / annotations_dir / split
    if not split_dir.is_dir():
        raise DataError(f"HaGRID annotations not found: expected the folder {split_dir} with <class>.json files")
    files = _annotation_files(split_dir, report)
    if not files:
        raise DataError(f"HaGRID annotations not found: expected {split_dir}/<class>.json (e.g. like.json)")
    images = DirectoryIndex(root / images_dir)
    out = []
    for folder_class, path in files:
        records = load_json(path, "HaGRID annotation file")
        if not isinstance(records, dict):
            report.skip(path.name, "annotation file is not a {image_key: record} object")
            continue
        folder = _image_folder(images, folder_class)
        for key, record in records.items():
            where = f"{split}/{path.name}:{key}"
            image = f"{folder}/{key}.jpg"
            try:
                sample = _sample(key, record, folder_class, f"{images_dir}/{image}", root)
            except _Protocol as err:
                filtered(report, where, str(err))
                continue
            except _Bad as err:
                report.skip(where, str(err))
                continue
            if not images.exists(image):  # the official loader keeps only keys whose image exists
                report.skip(where, "image: image file not found")
                continue
            out.append(sample)
    return out


def _annotation_files(split_dir: Path, report: SkipReport) -> list[tuple[str, Path]]:
    """(class, file) in the official target order; files of unknown classes are counted, not read."""
    stem_to_class = {name: name for name in HAGRID_CLASSES}
    stem_to_class.update({alias: name for name, aliases in FOLDER_ALIASES.items() for alias in aliases})
    found: dict[str, Path] = {}
    for path in sorted(split_dir.glob("*.json")):
        name = stem_to_class.get(path.stem)
        if name is None:
            report.skip(f"{split_dir.name}/{path.name}", "annotation file of an unknown class")
        elif name not in found or path.stem == name:
            found[name] = path
    return [(name, found[name]) for name in HAGRID_CLASSES if name in found]


def _image_folder(images: DirectoryIndex, folder_class: str) -> str:
    for folder in (folder_class, *FOLDER_ALIASES.get(folder_class, ())):
        if images.names(folder):
            return folder
    return folder_class


def _sample(key: str, record, folder_class: str, image: str, root: Path) -> Sample:
    if not isinstance(record, dict):
        raise _Bad("record is not an object")
    hands = _hands(record)
    united = _united(record)
    labels = [label for _, label in hands]
    if folder_class == NO_GESTURE:
        target = NO_GESTURE
    else:
        target = next((label for label in labels if label != NO_GESTURE), None)
        if target is None:  # ClassificationDataset drops labels == ["no_gesture"] outside the no_gesture folder
            raise _Protocol("only no_gesture hands in a gesture folder (dropped by the official classifier)")
    boxes = [box for box, label in united if label in (target, None)] or [
        box for box, label in hands if label == target
    ]
    # a no_gesture-folder image whose hands carry gesture labels is still no_gesture (full-frame): mark every hand
    boxes = boxes or [box for box, _ in hands]
    detection = [(box, label or target) for box, label in united] if united else hands
    user_id = record.get("user_id")
    return Sample(
        id=key,
        task="gesture",
        image=image,
        boxes=[Box(b, 0) for b in boxes],
        label=CLASS_INDEX[target],
        root=str(root),
        meta={
            "group": None if user_id is None else f"user:{user_id}",
            "user_id": None if user_id is None else str(user_id),
            "class_folder": folder_class,
            "labels": labels,
            "hand_boxes": [_rounded(b) for b, _ in hands],
            "gesture_boxes": [_rounded(b) for b, _ in detection],
            "gesture_labels": [label for _, label in detection],
        },
    )


def _hands(record: dict) -> list[tuple[tuple, str]]:
    bboxes, labels = record.get("bboxes"), record.get("labels")
    if not isinstance(bboxes, list) or not isinstance(labels, list):
        raise _Bad("record lacks the bboxes and labels lists")
    if len(bboxes) != len(labels):
        raise _Bad("record has different numbers of bboxes and labels")
    if not bboxes:
        raise _Bad("record has no hands")
    return [(_unit_box(b), _known(label)) for b, label in zip(bboxes, labels)]


def _united(record: dict) -> list[tuple[tuple, str | None]]:
    """The non-null united boxes with their labels (None if not given); [] for the three "no union" encodings:
    a null field (final README and converters), a list of nulls (dataset.py), an empty list (DATASETS.md 3.3)."""
    united = record.get("united_bbox")
    if united is None:
        return []
    if not isinstance(united, list):
        raise _Bad("united_bbox is neither null nor a list")
    united_labels = record.get("united_label")
    united_labels = united_labels if isinstance(united_labels, list) else []
    out = []
    for i, box in enumerate(united):
        if box is None:
            continue
        label = united_labels[i] if i < len(united_labels) else None
        out.append((_unit_box(box), None if label is None else _known(label)))
    return out


def _unit_box(xywh) -> tuple:
    try:
        x, y, w, h = coords(xywh)
        if w <= 0 or h <= 0:
            raise UnusableBox("hand box has a non-positive width or height")
        return normalise_box(xywh_to_xyxy(x, y, w, h), 1.0, 1.0)  # clip; the file may stray slightly outside
    except UnusableBox as err:
        raise _Bad(str(err)) from None


def _known(label) -> str:
    if not isinstance(label, str) or label not in CLASS_INDEX:
        raise _Bad(f"unknown gesture label {label!r}")
    return label


def _rounded(box: tuple) -> list[float]:
    return [round(v, 6) for v in box]

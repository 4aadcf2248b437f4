"""PISC social relationships (Zenodo 1059155): one sample per labelled person pair of a split's images.

Files (DATASETS.md 4.2-4.3): `annotation_image_info.json` ([{id: int, imgH, imgW, bbox: [[x1, y1, x2, y2], ...]}],
pixel boxes that may leave the image), `relationship.json` (fine, 6 classes) or `domain.json` (coarse, 3 classes),
both {"<image id>": {"<i> <j>": label}} with 1-based person indices and 1-based labels, and the split lists
`relationship_split/relation_{split}idx.json` / `domain_split/...` (image ids as strings). The domain split file
names are unverified, so several candidates are accepted.

Boxes are clipped to [0, imgW] x [0, imgH] (SRR clamps to W-1, H-1 in integer pixels; we keep continuous
coordinates) and normalised by the annotated image size. Person i is role 0, person j role 1; labels become 0-based.
"""

from __future__ import annotations

from pathlib import Path

from ...core.schema import Box, DataError, Sample
from ...tasks.relation import PISC_COARSE, PISC_FINE
from ..skips import SkipReport
from . import DATASETS
from ._boxes import UnusableBox, normalise_box
from ._common import DirectoryIndex, check_split, choice_option, first_existing, load_json, parse_int

LEVELS = {
    # level: (label file, classes, split folder, split file name patterns)
    "fine": ("relationship.json", PISC_FINE, "relationship_split", ("relation_{split}idx.json",)),
    "coarse": (
        "domain.json",
        PISC_COARSE,
        "domain_split",
        ("domain_{split}idx.json", "relation_{split}idx.json", "{split}idx.json", "domain_{split}.json"),
    ),
}


@DATASETS.register("pisc")
def read(root: Path, split: str, report: SkipReport, level="fine") -> list[Sample]:
    """Options: `level` fine (6 relationships) or coarse (3 domains); the two levels use different image sets."""
    check_split("pisc", split, ("train", "val", "test"))
    level = choice_option("level", level, tuple(LEVELS))
    label_file, classes, split_dir, patterns = LEVELS[level]
    images = _image_info(root, report)
    labels = load_json(root / label_file, f"PISC {level} labels")
    if not isinstance(labels, dict):
        raise DataError(f"{root / label_file}: expected an object {{image id: {{'i j': label}}}}")
    labels = {_norm_id(k): v for k, v in labels.items()}
    split_path = first_existing(
        [root / split_dir / p.format(split=split) for p in patterns], f"PISC {level} {split} split"
    )
    image_ids = load_json(split_path, "PISC split list")
    if not isinstance(image_ids, list):
        raise DataError(f"{split_path}: expected a list of image ids")
    files = DirectoryIndex(root)
    out = []
    for raw_id in image_ids:
        image_id = _norm_id(raw_id)  # ids are str in the splits and labels, int in annotation_image_info.json
        where = f"{split_path.name}:{raw_id!r}"
        if image_id is None:
            report.skip(where, "image id is not an integer")
            continue
        info = images.get(image_id)
        pairs = labels.get(image_id)
        if info is None:
            report.skip(where, "image id not in annotation_image_info.json")
            continue
        if not isinstance(pairs, dict) or not pairs:
            report.skip(where, f"image has no {level} labels")
            continue
        image = f"image/{int(image_id):05d}.jpg"
        if not files.exists(image):
            report.skip(f"{where} ({image})", "image: image file not found")
            continue
        for key, value in pairs.items():
            sample = _pair(
                root, image_id, image, info, key, value, classes, level, f"{label_file}:{image_id}:{key}", report
            )
            if sample is not None:
                out.append(sample)
    return out


def _image_info(root: Path, report: SkipReport) -> dict[str, tuple[float, float, list]]:
    path = root / "annotation_image_info.json"
    records = load_json(path, "PISC image info")
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a list of image records")
    out = {}
    for k, record in enumerate(records):
        try:
            image_id = _norm_id(record["id"])
            w, h = float(parse_int(record["imgW"])), float(parse_int(record["imgH"]))
            boxes = record["bbox"]
            if image_id is None or w <= 0 or h <= 0 or not isinstance(boxes, list):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            report.skip(f"{path.name}[{k}]", "image record lacks a valid id, imgW, imgH or bbox list")
            continue
        out[image_id] = (w, h, boxes)
    return out


def _pair(root, image_id, image, info, key, value, classes, level, where, report) -> Sample | None:
    width, height, boxes = info
    try:
        i, j = (parse_int(v) for v in str(key).split())
    except ValueError:
        report.skip(where, 'pair key is not "<i> <j>"')
        return None
    if not (1 <= i <= len(boxes) and 1 <= j <= len(boxes)) or i == j:
        report.skip(where, "pair indices are not two different people of the image (1-based)")
        return None
    try:
        label = parse_int(value)
    except ValueError:
        label = None
    if label is None or not 1 <= label <= len(classes):
        report.skip(where, f"unknown {level} label")
        return None
    try:
        first = normalise_box(boxes[i - 1], width, height)
        second = normalise_box(boxes[j - 1], width, height)
    except UnusableBox as err:
        report.skip(where, str(err))
        return None
    return Sample(
        id=f"{image_id}:{i}-{j}",
        task="relation",
        image=image,
        boxes=[Box(first, 0), Box(second, 1)],
        label=label - 1,
        root=str(root),
        meta={"image_id": image_id, "pair": [i, j], "level": level, "label_1based": label},
    )


def _norm_id(value) -> str | None:
    try:
        return str(parse_int(value))
    except ValueError:
        return None

"""The tiny fixtures of DATASETS.md section 7, written in the official layouts (each writer fills `root`, the
dataset root, and returns it). Expected outputs are in DATASETS.md 7 and asserted in tests/unit/test_adapter_*.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def write_jpeg(path: Path, size: tuple[int, int], colour=(128, 96, 64)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG", quality=90)
    return path


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


# ---- 7.1 LAM -------------------------------------------------------------------------------------------------

LAM_FRAME_SIZE = (640, 360)


def lam_box(frame: int, x: float, y: float, w: float, h: float) -> dict:
    return {"x": x, "y": y, "width": w, "height": h, "frame": frame, "video_frame": 1000 + frame, "clip_frame": None}


def lam_clip(persons: list[dict], looking: list[dict], clip_uid: str = "clip-0001") -> dict:
    return {
        "clip_uid": clip_uid,
        "source_clip_uid": "src-0001",
        "video_uid": "vid-0001",
        "video_start_sec": 10.0,
        "video_end_sec": 310.0,
        "video_start_frame": 300,
        "video_end_frame": 9300,
        "clip_start_sec": 0.0,
        "clip_end_sec": 300.0,
        "clip_start_frame": 0,
        "clip_end_frame": 9000,
        "valid": True,
        "camera_wearer": {"person_id": "1"},
        "persons": persons,
        "missing_voice_segments": [],
        "transcriptions": [],
        "social_segments_talking": [],
        "social_segments_looking": looking,
    }


def lam_person(person_id: str, tracks: dict[str, list[dict]], camera_wearer: bool = False) -> dict:
    return {
        "person_id": person_id,
        "camera_wearer": camera_wearer,
        "voice_segments": [],
        "tracking_paths": [
            {"track_id": tid, "suspect": False, "unmapped_frames_count": 0, "unmapped_frames": [], "track": boxes}
            for tid, boxes in tracks.items()
        ],
    }


def lam_segment(person, start: int, end: int, is_at_me: bool = True) -> dict:
    return {
        "start_time": start / 30,
        "end_time": end / 30,
        "start_frame": start,
        "end_frame": end,
        "video_start_time": 10 + start / 30,
        "video_end_time": 10 + end / 30,
        "video_start_frame": 300 + start,
        "video_end_frame": 300 + end,
        "person": person,
        "target": None,
        "is_at_me": is_at_me,
    }


def lam_persons() -> list[dict]:
    return [
        lam_person("1", {}, camera_wearer=True),
        lam_person(
            "2",
            {
                "trk-a": [
                    lam_box(1, 100, 50, 40, 48),
                    lam_box(2, 102, 50, 40, 48),
                    lam_box(4, 106, 52, 40, 48),  # gap at 3
                    lam_box(5, -3, 10, 40, 48),  # x clamped to 0 (then x2 = 0 + 40)
                    lam_box(6, 200, 50, 0, 48),  # width 0: dropped
                ]
            },
        ),
        lam_person(
            "3", {"trk-b": [lam_box(0, 300, 60, 30, 30), lam_box(1, 300, 60, 30, 30), lam_box(2, 302, 60, 30, 30)]}
        ),
    ]


def write_lam(root: Path) -> Path:
    root = Path(root)
    looking = [lam_segment("2", 2, 4), lam_segment(None, 1, 7)]
    av = {
        "date": "2022-01-01",
        "version": "1.0",
        "description": "fixture",
        "videos": [{"video_uid": "vid-0001", "split": "val", "clips": [lam_clip(lam_persons(), looking)]}],
    }
    _write_json(root / "json" / "av_val.json", av)
    (root / "split").mkdir(parents=True, exist_ok=True)
    (root / "split" / "val.list").write_text("clip-0001\n")
    for frame in range(1, 8):
        write_jpeg(root / "video_imgs" / "clip-0001" / f"img_{frame:05d}.jpg", LAM_FRAME_SIZE)
    for name in ("00001_u001.jpg", "00002_u002.jpg"):
        write_jpeg(root / "videos_challenge" / "clip-0002" / "trk-z" / name, (224, 224))
    return root


# ---- 7.2 AffectNet -------------------------------------------------------------------------------------------

AFFECTNET_HEADER = (
    "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
)
AFFECTNET_ROWS = [
    ("1/aaaa0001.jpg", 0, 0, 224, 224, 0, 0.05, -0.1),  # Neutral
    ("1/aaaa0002.jpg", 20, 20, 180, 180, 7, -0.4, 0.3),  # Contempt: kept for 8-class, dropped for 7-class
    ("2/aaaa0003.jpg", 0, 0, 224, 224, 8, 0.1, 0.2),  # None: dropped
    ("2/aaaa0004.jpg", 0, 0, 224, 224, 10, -2, -2),  # No-Face, VA = -2: dropped
]


def affectnet_landmarks() -> list[float]:
    return [float(v) for v in range(136)]


def write_affectnet_csv(root: Path) -> Path:
    root = Path(root)
    marks = ";".join(f"{v:.1f}" for v in affectnet_landmarks())
    lines = [AFFECTNET_HEADER] + [
        f"{p},{x},{y},{w},{h},{marks},{e},{va},{ar}" for p, x, y, w, h, e, va, ar in AFFECTNET_ROWS
    ]
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "training.csv").write_text("\n".join(lines) + "\n")
    (lists / "validation.csv").write_text(AFFECTNET_HEADER + "\n")
    for row in AFFECTNET_ROWS:
        write_jpeg(root / "Manually_Annotated_Images" / row[0], (224, 224))
    return root


def write_affectnet_npy(root: Path) -> Path:
    root = Path(root)
    for split_dir, ids in (("train_set", ("0", "1")), ("val_set", ("2",))):
        for image_id in ids:
            write_jpeg(root / split_dir / "images" / f"{image_id}.jpg", (224, 224))
            ann = root / split_dir / "annotations"
            ann.mkdir(parents=True, exist_ok=True)
            np.save(ann / f"{image_id}_exp.npy", np.array(image_id))  # string-typed 0-d arrays, as in some copies
            np.save(ann / f"{image_id}_val.npy", np.array("0.25"))
            np.save(ann / f"{image_id}_aro.npy", np.array("-0.5"))
            np.save(ann / f"{image_id}_lnd.npy", np.array(affectnet_landmarks(), dtype=np.float32))
    return root


# ---- 7.3 HaGRIDv2 --------------------------------------------------------------------------------------------

HAGRID_SIZE = (192, 108)
HAGRID_KEYS = {
    "like_1": "0a1b2c3d-0000-4000-8000-000000000001",
    "like_2": "0a1b2c3d-0000-4000-8000-000000000002",
    "hand_heart": "0a1b2c3d-0000-4000-8000-000000000003",
    "no_gesture": "0a1b2c3d-0000-4000-8000-000000000004",
}
_LANDMARKS = [[0.1 + 0.001 * i, 0.2 + 0.001 * i] for i in range(21)]
_META = {"age": [30.0], "gender": ["female"], "race": ["White"]}


def hagrid_records() -> dict[str, dict]:
    """{class file: {key: record}}; record 1 of like.json has united_bbox null, record 2 has [null]."""
    return {
        "like": {
            HAGRID_KEYS["like_1"]: {
                "bboxes": [[0.1, 0.2, 0.2, 0.3], [0.6, 0.25, 0.15, 0.3]],
                "labels": ["like", "no_gesture"],
                "united_bbox": None,
                "united_label": None,
                "user_id": "user-a",
                "hand_landmarks": [_LANDMARKS, []],
                "meta": _META,
            },
            HAGRID_KEYS["like_2"]: {
                "bboxes": [[-0.001, 0.3, 0.25, 0.4]],
                "labels": ["like"],
                "united_bbox": [None],
                "united_label": [None],
                "user_id": "user-b",
                "hand_landmarks": [_LANDMARKS],
                "meta": _META,
            },
        },
        "hand_heart": {
            HAGRID_KEYS["hand_heart"]: {
                "bboxes": [[0.2, 0.3, 0.15, 0.2], [0.4, 0.3, 0.15, 0.2]],
                "labels": ["hand_heart", "hand_heart"],
                "united_bbox": [[0.2, 0.3, 0.35, 0.2]],
                "united_label": ["hand_heart"],
                "user_id": "user-c",
                "hand_landmarks": [_LANDMARKS, _LANDMARKS],
                "meta": _META,
            },
        },
        "no_gesture": {
            HAGRID_KEYS["no_gesture"]: {
                "bboxes": [[0.5, 0.5, 0.1, 0.2]],
                "labels": ["no_gesture"],
                "united_bbox": None,
                "united_label": None,
                "user_id": "user-d",
                "hand_landmarks": [_LANDMARKS],
                "meta": _META,
            },
        },
    }


def write_hagrid(root: Path, split: str = "test") -> Path:
    root = Path(root)
    for class_name, records in hagrid_records().items():
        _write_json(root / "hagrid_annotations" / split / f"{class_name}.json", records)
        for key in records:
            write_jpeg(root / "hagrid_dataset" / class_name / f"{key}.jpg", HAGRID_SIZE)
    return root


# ---- 7.4 PISC ------------------------------------------------------------------------------------------------

PISC_IMAGE_INFO = [
    {"id": 1, "imgH": 120, "imgW": 160, "bbox": [[5, 10, 60, 118], [70, 12, 120, 119], [125, 30, 165, 119]]},
    {"id": 2, "imgH": 100, "imgW": 100, "bbox": [[0, 0, 40, 99], [50, 5, 99, 99]]},
]


def write_pisc(root: Path) -> Path:
    root = Path(root)
    _write_json(root / "annotation_image_info.json", PISC_IMAGE_INFO)
    _write_json(root / "relationship.json", {"1": {"1 2": 2, "1 3": 6}, "2": {"1 2": 4}})
    _write_json(root / "domain.json", {"1": {"1 2": 1, "1 3": 3, "2 3": 3}, "2": {"1 2": 2}})
    for folder, prefix in (("relationship_split", "relation"), ("domain_split", "domain")):
        for split, ids in (("train", ["2"]), ("val", []), ("test", ["1"])):
            _write_json(root / folder / f"{prefix}_{split}idx.json", ids)
    write_jpeg(root / "image" / "00001.jpg", (160, 120))
    write_jpeg(root / "image" / "00002.jpg", (100, 100))
    return root


# ---- 7.5 GazeFollow ------------------------------------------------------------------------------------------

GAZEFOLLOW_TRAIN = """\
train/00000000/00000001.jpg,1,0.1,0.1,0.4,0.8,0.30,0.25,0.70,0.60,40.0,20.0,80.0,60.0,1,coco,orig_a.jpg
train/00000000/00000001.jpg,2,0.5,0.1,0.4,0.8,0.65,0.30,-1,-1,120.0,30.0,150.0,62.0,0,coco,orig_a.jpg
train/00000000/00000002.jpg,1,0.1,0.1,0.4,0.8,0.40,0.30,0.20,0.80,90.0,50.0,60.0,20.0,1,sun,orig_b.jpg
train/00000000/00000002.jpg,3,0.1,0.1,0.4,0.8,0.20,0.20,0.50,0.50,10.0,10.0,30.0,30.0,-1,sun,orig_b.jpg
"""
GAZEFOLLOW_TEST = """\
test2/00000000/00000001.jpg,7,0.1,0.1,0.4,0.8,0.30,0.25,0.25,0.50,40.0,20.0,80.0,60.0,pascal,orig_c.jpg
test2/00000000/00000001.jpg,8,0.1,0.1,0.4,0.8,0.30,0.25,0.30,0.50,40.0,20.0,80.0,60.0,pascal,orig_c.jpg
test2/00000000/00000001.jpg,9,0.1,0.1,0.4,0.8,0.30,0.25,0.20,0.60,40.0,20.0,80.0,60.0,pascal,orig_c.jpg
test2/00000000/00000001.jpg,10,0.5,0.1,0.4,0.8,0.70,0.20,0.10,0.90,-4.0,5.0,170.0,40.0,pascal,orig_c.jpg
"""
GAZEFOLLOW_SIZE = (160, 120)


def write_gazefollow(root: Path) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "train_annotations_release.txt").write_text(GAZEFOLLOW_TRAIN)
    (root / "test_annotations_release.txt").write_text(GAZEFOLLOW_TEST)
    for rel in ("train/00000000/00000001.jpg", "train/00000000/00000002.jpg", "test2/00000000/00000001.jpg"):
        write_jpeg(root / rel, GAZEFOLLOW_SIZE)
    return root

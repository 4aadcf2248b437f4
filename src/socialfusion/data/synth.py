"""Synthetic social scenes written in the five OFFICIAL dataset layouts (see docs DATASETS.md §1-§5, §7).

`generate(out_dir, n, seed, image_size)` renders procedural scenes (PIL drawing in `synth_draw.py`) and writes

    out_dir/ego4d_lam/            json/av_{train,val}.json, split/{train,val}.list, video_imgs/<clip>/img_%05d.jpg
    out_dir/affectnet/            Manually_Annotated_file_lists/{training,validation}.csv, Manually_Annotated_Images/
    out_dir/hagrid/               hagrid_annotations/{train,val,test}/<class>.json, hagrid_dataset/<class>/<uuid>.jpg
    out_dir/pisc/                 annotation_image_info.json, relationship.json, domain.json, *_split/, image/%05d.jpg
    out_dir/gazefollow_extended/  {train,test}_annotations_release.txt, train/..., test2/...

so the official adapters read them unchanged. Every label is decidable from large shape cues in the pixels (see
`synth_draw`). Output is a pure function of (n, seed, image_size): one `numpy.random.Generator` per dataset, fixed
JPEG quality, no timestamps.

The returned summary maps each adapter name (ego4d_lam, affectnet, hagrid_v2, pisc, gazefollow) to
{split: number of samples an adapter should produce}; it also has "paths" (adapter name -> dataset root), "dropped"
(rows written deliberately bad, which adapters must drop: AffectNet labels 8-10, GazeFollow inout -1), "root",
"seed", "n" and "image_size".
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..tasks import TASK_NAMES, TASKS, load_all
from ..tasks.gesture import HAGRID_CLASSES as _GESTURE_CLASSES
from . import synth_draw as sd

DATASETS = ("ego4d_lam", "affectnet", "hagrid_v2", "pisc", "gazefollow")
DATASET_DIRS = {
    "ego4d_lam": "ego4d_lam",
    "affectnet": "affectnet",
    "hagrid_v2": "hagrid",
    "pisc": "pisc",
    "gazefollow": "gazefollow_extended",
}


def task_dirs() -> dict[str, str]:
    """The folder of each built-in task's data in the synthetic benchmark, by task, in the tasks' order (the
    presets' and the demo's): the DATASET_DIRS folder of the dataset the task reads by default."""
    load_all()
    return {name: DATASET_DIRS[TASKS.get(name).default_dataset] for name in TASK_NAMES}


_SEED_KEY = {"ego4d_lam": 11, "affectnet": 12, "hagrid_v2": 13, "pisc": 14, "gazefollow": 15}
MARKER = "SocialFusion synthetic data"
JPEG_QUALITY = 90

HAGRID_CLASSES = list(_GESTURE_CLASSES)  # constants.targets order, shared with the gesture task
PISC_RELATIONS = {1: "friends", 2: "family", 3: "couple", 4: "professional", 5: "commercial", 6: "no_relation"}
PISC_DOMAIN_OF = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 3}  # 1 intimate, 2 non-intimate, 3 no relation
OPEN_EYED = (0, 2, 3, 4, 6, 7)  # expressions whose pupils stay visible (LAM and gaze faces)
# (valence, arousal) centre per AffectNet expression 0..7
_VA = {
    0: (0.0, 0.0),
    1: (0.7, 0.35),
    2: (-0.6, -0.3),
    3: (0.2, 0.7),
    4: (-0.5, 0.65),
    5: (-0.6, 0.3),
    6: (-0.6, 0.6),
    7: (-0.4, 0.2),
}

README = f"""{MARKER}
=============================

Everything under this folder was generated procedurally by socialfusion.data.synth.generate(): drawn faces,
hands and people on random clutter. It is NOT real data; it exists to test the pipeline end to end.

Each sub-folder follows the layout and file formats of one official dataset, so the official adapters read it
unchanged:

  ego4d_lam/            Ego4D Social "Looking At Me" (av_*.json, split lists, video_imgs/<clip_uid>/img_%05d.jpg)
  affectnet/            AffectNet, CSV distribution (Manually_Annotated_file_lists/*.csv + Manually_Annotated_Images/)
  hagrid/               HaGRIDv2 (hagrid_annotations/<split>/<class>.json + hagrid_dataset/<class>/<uuid>.jpg)
  pisc/                 PISC (annotation_image_info.json, relationship.json, domain.json, *_split/, image/)
  gazefollow_extended/  GazeFollow with Chong et al.'s extended annotations (train/test_annotations_release.txt)

Deliberately invalid rows (to be dropped by the adapters): AffectNet expression labels 8, 9, 10 and GazeFollow
rows with inout = -1.
"""


# ----------------------------------------------------------------------------------------------------- helpers
def _f(v: float, nd: int = 6) -> str:
    s = f"{float(v):.{nd}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _r(v: float, nd: int = 2) -> float:
    return float(round(float(v), nd))


def _save(img, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=JPEG_QUALITY)


def _write_json(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f)


def _write_text(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16), version=4))


def _balanced(rng: np.random.Generator, count: int, classes) -> list:
    labels = [classes[i % len(classes)] for i in range(count)]
    return [labels[i] for i in rng.permutation(count)]


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v / (np.linalg.norm(v) + 1e-9)


# --------------------------------------------------------------------------------------------------------- LAM
def _lam_clip(
    root: Path, rng: np.random.Generator, video_uid: str, W: int, H: int, max_frames: int = 12
) -> tuple[dict, int, int]:
    """One annotated clip: its frames written under `root`, its Ego4D clip record, its number of person-frames and
    of looking-at-me person-frames. The steps draw from `rng` in a fixed order (clip, persons, frames, source uid),
    which keeps the output a pure function of the seed."""
    clip_uid = _uuid(rng)
    T = min(max_frames, int(rng.integers(8, 13)))
    n_persons = 1 if rng.random() < 0.4 else 2
    v0 = int(rng.integers(0, 40000))
    persons = [_lam_person(rng, p, n_persons, T, W, H) for p in range(n_persons)]
    bg, _ = sd.canvas(rng, W, H)
    n_pos = 0
    for f in range(1, T + 1):
        img = bg.copy()
        d = sd.ImageDraw.Draw(img)
        for p in persons:
            n_pos += _lam_draw_person(d, rng, p, f, T, v0, W, H)
        _save(img, root / "video_imgs" / clip_uid / f"img_{f:05d}.jpg")
    segments = _lam_segments(persons, T, v0)
    clip = _lam_clip_record(clip_uid, _uuid(rng), video_uid, v0, T, persons, segments)
    return clip, T * n_persons, n_pos


def _lam_looking(rng: np.random.Generator, T: int) -> np.ndarray:
    """Frames 0..T where a person looks at the camera wearer: always, never, or one run with non-looking frames
    around it, so that the segment annotations have starts and ends to get right."""
    mode = rng.choice(["all", "none", "segment"], p=[0.15, 0.15, 0.7])
    if mode == "all":
        return np.ones(T + 1, bool)
    if mode == "none":
        return np.zeros(T + 1, bool)
    a = int(rng.integers(1, T - 1))  # a looking run with non-looking frames around it
    b = int(rng.integers(a + 1, T + 1)) if a > 1 else int(rng.integers(a + 1, T))
    looking = np.zeros(T + 1, bool)
    looking[a : b + 1] = True
    return looking


def _lam_person(rng: np.random.Generator, p: int, n_persons: int, T: int, W: int, H: int) -> dict:
    """Person `p` of a clip, fixed for the whole clip (place, drift, looking frames, the pose when looking away,
    colours), so that only the head turn changes from frame to frame."""
    r = rng.uniform(0.27, 0.36) * H if n_persons == 1 else rng.uniform(0.2, 0.26) * H
    if n_persons == 1:
        x0 = rng.uniform(0.3, 0.7) * W
    else:
        x0 = rng.uniform(0.18, 0.34) * W if p == 0 else rng.uniform(0.66, 0.82) * W
    x0 = float(np.clip(x0, r, W - r))
    y0 = rng.uniform(max(1.15 * r, 0.34 * H), max(1.15 * r + 1, 0.55 * H))
    drift = rng.normal(0, 0.02, 2) * (W, H)
    looking = _lam_looking(rng, T)
    if rng.random() < 0.8:  # turned aside
        away = (float(rng.choice([-1, 1]) * rng.uniform(0.7, 1.0)), float(rng.uniform(-0.3, 0.45)))
    else:  # looking down
        away = (float(rng.uniform(-0.3, 0.3)), float(rng.uniform(0.75, 1.0)))
    return dict(
        pid=str(p + 2),
        track_id=_uuid(rng),
        r=r,
        x0=x0,
        y0=y0,
        drift=drift,
        looking=looking,
        away=away,
        skin=sd.pick(rng, sd.SKIN),
        hair=sd.pick(rng, sd.HAIR),
        shirt=sd.pick(rng, sd.BRIGHT),
        expr=int(sd.pick(rng, OPEN_EYED)),
        track=[],
    )


def _lam_draw_person(d, rng: np.random.Generator, p: dict, f: int, T: int, v0: int, W: int, H: int) -> int:
    """Draws person `p` in frame `f` and appends the face box to its track; returns 1 when the person looks at
    the camera wearer in that frame (a positive to count), else 0."""
    k = (f - 1) / max(1, T - 1)
    cx = float(np.clip(p["x0"] + p["drift"][0] * k, p["r"], W - p["r"]))
    cy = float(np.clip(p["y0"] + p["drift"][1] * k, 1.1 * p["r"], H - p["r"]))
    r = p["r"]
    d.ellipse([cx - 1.7 * r, cy + 0.8 * r, cx + 1.7 * r, cy + 3.6 * r], fill=p["shirt"], outline=sd.OUTLINE)
    if p["looking"][f]:
        turn = tuple(rng.uniform(-0.06, 0.06, 2))
        look = (0.0, 0.0)
        positive = 1
    else:
        turn = (p["away"][0] + rng.uniform(-0.05, 0.05), p["away"][1] + rng.uniform(-0.05, 0.05))
        look = (float(np.clip(turn[0] * 1.1, -1, 1)), float(np.clip(turn[1], -1, 1)))
        positive = 0
    face = sd.draw_face(d, cx, cy, r, p["skin"], p["hair"], turn=turn, look=look, expression=p["expr"])
    x1, y1, x2, y2 = face["box"]
    x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(W - 1.0, x2), min(H - 1.0, y2)
    p["track"].append(
        {
            "x": _r(x1),
            "y": _r(y1),
            "width": _r(x2 - x1),
            "height": _r(y2 - y1),
            "frame": f,
            "video_frame": v0 + f,
            "clip_frame": None,
        }
    )
    return positive


def _lam_segments(persons: list[dict], T: int, v0: int) -> list[dict]:
    """The looking-at-me segments of the Ego4D layout: one per maximal run of looking frames of each person, in
    clip and in video time (no randomness)."""
    segments = []
    for p in persons:
        lk = p["looking"]
        f = 1
        while f <= T:
            if lk[f]:
                g = f
                while g + 1 <= T and lk[g + 1]:
                    g += 1
                segments.append(
                    {
                        "start_time": _r(f / 30.0, 4),
                        "end_time": _r(g / 30.0, 4),
                        "start_frame": f,
                        "end_frame": g,
                        "video_start_time": _r((v0 + f) / 30.0, 4),
                        "video_end_time": _r((v0 + g) / 30.0, 4),
                        "video_start_frame": v0 + f,
                        "video_end_frame": v0 + g,
                        "person": p["pid"],
                        "target": None,
                        "is_at_me": True,
                    }
                )
                f = g + 1
            else:
                f += 1
    return segments


def _lam_clip_record(
    clip_uid: str, source_clip_uid: str, video_uid: str, v0: int, T: int, persons: list[dict], segments: list[dict]
) -> dict:
    """The clip's record in av_<split>.json, with every field the official files carry (the adapter reads only
    some of them), so the layout matches the real one."""
    wearer = {"person_id": "1", "camera_wearer": True, "voice_segments": []}
    return {
        "clip_uid": clip_uid,
        "source_clip_uid": source_clip_uid,
        "video_uid": video_uid,
        "video_start_sec": _r(v0 / 30.0, 4),
        "video_end_sec": _r((v0 + T) / 30.0, 4),
        "video_start_frame": v0,
        "video_end_frame": v0 + T,
        "clip_start_sec": 0,
        "clip_end_sec": _r(T / 30.0, 4),
        "clip_start_frame": 0,
        "clip_end_frame": T,
        "valid": True,
        "camera_wearer": dict(wearer),
        "persons": [dict(wearer, tracking_paths=[])]
        + [
            {
                "person_id": p["pid"],
                "camera_wearer": False,
                "voice_segments": [],
                "tracking_paths": [
                    {
                        "track_id": p["track_id"],
                        "suspect": False,
                        "unmapped_frames_count": 0,
                        "unmapped_frames": [],
                        "track": p["track"],
                    }
                ],
            }
            for p in persons
        ],
        "missing_voice_segments": [],
        "transcriptions": [],
        "social_segments_talking": [],
        "social_segments_looking": segments,
    }


def write_lam(root: Path, rng: np.random.Generator, n: int, S: int) -> dict:
    W, H = int(round(S * 4 / 3)), S
    counts, stats = {}, {}
    for split, target in (("train", n), ("val", max(8, n // 4))):
        videos, uids, count, pos = [], [], 0, 0
        while count < target:
            video_uid = _uuid(rng)
            clips = []
            for _ in range(int(rng.integers(1, 3))):
                if count >= target:
                    break
                # shorter clips for a small n, so even a small split has several clips to carve a holdout from
                clip, c, p = _lam_clip(root, rng, video_uid, W, H, max_frames=max(3, target // 4))
                clips.append(clip)
                uids.append(clip["clip_uid"])
                count, pos = count + c, pos + p
            videos.append({"video_uid": video_uid, "split": split, "clips": clips})
        doc = {
            "date": "2022-02-01",
            "version": "synthetic-1",
            "description": f"{MARKER}: Ego4D AV/social layout",
            "videos": videos,
        }
        _write_json(doc, root / "json" / f"av_{split}.json")
        _write_text("".join(u + "\n" for u in uids), root / "split" / f"{split}.list")
        counts[split] = count
        stats[split] = {"clips": len(uids), "positives": pos}
    return {"counts": counts, "stats": stats}


# --------------------------------------------------------------------------------------------------- AffectNet
def write_affectnet(root: Path, rng: np.random.Generator, n: int, S: int) -> dict:
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal\n"
    counts, dropped = {}, {}
    for split, fname, count in (("train", "training.csv", n), ("val", "validation.csv", max(64, n // 4))):
        n_bad = max(3, int(round(0.03 * count)))
        labels = _balanced(rng, count, list(range(8))) + [8 + (i % 3) for i in range(n_bad)]
        labels = [labels[i] for i in rng.permutation(len(labels))]
        lines = [header]
        for label in labels:
            W, H = S + int(rng.integers(0, S // 4 + 1)), S + int(rng.integers(0, S // 4 + 1))
            img, d = sd.canvas(rng, W, H)
            side = rng.uniform(0.55, 0.75) * min(W, H)
            cx, cy = rng.uniform(side / 2, W - side / 2), rng.uniform(side / 2, H - side / 2)
            r = side / 2 / 1.04
            if label == 10:  # No-Face: no face drawn
                lm = np.tile([[cx, cy]], (68, 1))
            else:
                expr = label if label < 8 else int(rng.integers(0, 8))
                d.ellipse(
                    [cx - 1.6 * r, cy + 0.75 * r, cx + 1.6 * r, cy + 3.2 * r],
                    fill=sd.pick(rng, sd.BRIGHT),
                    outline=sd.OUTLINE,
                )
                face = sd.draw_face(
                    d,
                    cx,
                    cy,
                    r,
                    sd.pick(rng, sd.SKIN),
                    sd.pick(rng, sd.HAIR),
                    turn=tuple(rng.uniform(-0.12, 0.12, 2)),
                    look=tuple(rng.uniform(-0.3, 0.3, 2)),
                    expression=expr,
                )
                lm = face["landmarks"]
            x, y, s = int(round(cx - side / 2)), int(round(cy - side / 2)), int(round(side))
            x, y = max(0, x), max(0, y)
            s = min(s, W - x, H - y)
            sub, name = str(int(rng.integers(1, 40))), rng.bytes(28).hex()
            rel = f"{sub}/{name}.jpg"
            _save(img, root / "Manually_Annotated_Images" / rel)
            if label in (9, 10):
                va = (-2.0, -2.0)
            else:
                c = _VA[label] if label < 8 else (0.0, 0.0)
                va = tuple(float(np.clip(c[k] + rng.normal(0, 0.12), -1, 1)) for k in range(2))
            lms = ";".join(_f(v, 2) for v in np.asarray(lm).reshape(-1))
            lines.append(f"{rel},{x},{y},{s},{s},{lms},{label},{_f(va[0])},{_f(va[1])}\n")
        _write_text("".join(lines), root / "Manually_Annotated_file_lists" / fname)
        counts[split], dropped[split] = count, n_bad
    return {"counts": counts, "dropped": dropped}


# ------------------------------------------------------------------------------------------------------ HaGRID
def _fit_gesture(rng, gesture, W, H, s, rot):
    """Scale/place a gesture so its union box lies inside the image; returns (cx, cy, s)."""
    for _ in range(8):
        hands = sd.draw_gesture(None, gesture, 0.0, 0.0, s, rot, (0, 0, 0), (0, 0, 0), dry=True)
        bx0, by0 = min(h["box"][0] for h in hands), min(h["box"][1] for h in hands)
        bx1, by1 = max(h["box"][2] for h in hands), max(h["box"][3] for h in hands)
        if bx1 - bx0 < 0.94 * W and by1 - by0 < 0.94 * H:
            break
        s *= 0.85 * min(W / (bx1 - bx0), H / (by1 - by0), 1.0)
    m = 2.0
    cx = rng.uniform(-bx0 + m, max(-bx0 + m, W - bx1 - m))
    cy = rng.uniform(-by0 + m, max(-by0 + m, H - by1 - m))
    return cx, cy, s, (cx + bx0, cy + by0, cx + bx1, cy + by1)


def _hagrid_image(rng, gesture, W, H):
    img, d = sd.canvas(rng, W, H)
    skin = sd.pick(rng, sd.SKIN)
    shirt = sd.pick(rng, sd.BRIGHT)
    # the subject, behind the hands: torso and head
    pcx, hr = W * rng.uniform(0.35, 0.65), 0.12 * H
    d.polygon(
        [(pcx - 0.42 * W, H), (pcx - 0.3 * W, 0.36 * H), (pcx + 0.3 * W, 0.36 * H), (pcx + 0.42 * W, H)],
        fill=shirt,
        outline=sd.OUTLINE,
    )
    sd.draw_face(
        d,
        pcx,
        0.2 * H,
        hr,
        skin,
        sd.pick(rng, sd.HAIR),
        turn=tuple(rng.uniform(-0.2, 0.2, 2)),
        expression=int(rng.integers(0, 8)),
    )
    two = gesture in sd.TWO_HANDED
    base = min(W, H) if two else H
    s = base * (rng.uniform(0.13, 0.16) if two else rng.uniform(0.15, 0.19))
    rot = rng.uniform(-8, 8) if two else rng.uniform(-12, 12)
    cx, cy, s, ubox = _fit_gesture(rng, gesture, W, H, s, rot)
    hands_out = []
    if gesture != "no_gesture" and not two and rng.random() < 0.3:  # a free, relaxed second hand
        s2 = s * 0.8
        side = -1 if cx > W / 2 else 1
        for _ in range(4):
            ex = W / 2 + side * W * rng.uniform(0.22, 0.4)
            ey = H * rng.uniform(0.7, 0.85)
            rot2 = rng.uniform(-15, 15)
            eh = sd.draw_gesture(None, "no_gesture", ex, ey, s2, rot2, skin, shirt, dry=True)[0]["box"]
            inside = eh[0] >= 0 and eh[1] >= 0 and eh[2] <= W and eh[3] <= H
            ix = max(0.0, min(eh[2], ubox[2]) - max(eh[0], ubox[0])) * max(
                0.0, min(eh[3], ubox[3]) - max(eh[1], ubox[1])
            )
            if inside and ix == 0:
                extra = sd.draw_gesture(d, "no_gesture", ex, ey, s2, rot2, skin, shirt)[0]
                hands_out.append(("no_gesture", extra))
                break
    hands = sd.draw_gesture(d, gesture, cx, cy, s, rot, skin, shirt)
    return img, [(gesture, h) for h in hands] + hands_out


def write_hagrid(root: Path, rng: np.random.Generator, n: int, S: int) -> dict:
    counts, users_seen = {}, set()
    per_class = {
        "train": max(2, int(round(n / len(HAGRID_CLASSES)))),
        "val": max(2, int(round(n / 4 / len(HAGRID_CLASSES)))),
        "test": max(2, int(round(n / 4 / len(HAGRID_CLASSES)))),
    }
    for split in ("train", "val", "test"):
        k = per_class[split]
        users = []
        while len(users) < max(2, (k * len(HAGRID_CLASSES)) // 4):
            u = rng.bytes(20).hex()
            if u not in users_seen:
                users_seen.add(u)
                users.append(u)
        total = 0
        for gesture in HAGRID_CLASSES:
            records = {}
            for _ in range(k):
                W, H = (int(round(S * 3 / 4)), S) if rng.random() < 0.75 else (int(round(S * 4 / 3)), S)
                img, hands = _hagrid_image(rng, gesture, W, H)
                key = _uuid(rng)
                _save(img, root / "hagrid_dataset" / gesture / f"{key}.jpg")
                bboxes, labels, lms = [], [], []
                for label, h in hands:
                    x1, y1, x2, y2 = h["box"]
                    bboxes.append([_r(x1 / W, 6), _r(y1 / H, 6), _r((x2 - x1) / W, 6), _r((y2 - y1) / H, 6)])
                    labels.append(label)
                    if label == "no_gesture" and gesture != "no_gesture" and rng.random() < 0.5:
                        lms.append([])
                    else:
                        lms.append([[_r(x / W, 4), _r(y / H, 4)] for x, y in h["landmarks"]])
                if gesture in sd.TWO_HANDED:
                    x1 = min(b[0] for b in bboxes[:2])
                    y1 = min(b[1] for b in bboxes[:2])
                    x2 = max(b[0] + b[2] for b in bboxes[:2])
                    y2 = max(b[1] + b[3] for b in bboxes[:2])
                    united, ulabel = [[_r(x1, 6), _r(y1, 6), _r(x2 - x1, 6), _r(y2 - y1, 6)]], [gesture]
                else:
                    united, ulabel = None, None
                records[key] = {
                    "bboxes": bboxes,
                    "labels": labels,
                    "united_bbox": united,
                    "united_label": ulabel,
                    "user_id": sd.pick(rng, users),
                    "hand_landmarks": lms,
                    "meta": {
                        "age": [_r(rng.uniform(18, 65), 1)],
                        "gender": [sd.pick(rng, ["male", "female"])],
                        "race": [
                            sd.pick(rng, ["White", "Black", "Asian", "Indian", "Latino_Hispanic", "Middle Eastern"])
                        ],
                    },
                }
            _write_json(records, root / "hagrid_annotations" / split / f"{gesture}.json")
            total += len(records)
        counts[split] = total
    return {"counts": counts}


# -------------------------------------------------------------------------------------------------------- PISC
def _people_style(rng, outfit="casual"):
    shirt = sd.pick(rng, sd.DARK_SUIT) if outfit == "suit" else sd.pick(rng, sd.BRIGHT)
    pants = shirt if outfit == "suit" else sd.pick(rng, sd.PANTS)
    return dict(skin=sd.pick(rng, sd.SKIN), hair=sd.pick(rng, sd.HAIR), shirt=shirt, pants=pants, outfit=outfit)


def _pisc_scene(rng, rel: int, W: int, H: int, third: bool):
    """A PISC image of a pair in relation `rel` (and a background stranger when `third`); returns the image and
    the (role, box) of each person in drawing order. The stranger is drawn before the pair, which each relation
    stages in its own function."""
    img, d = sd.canvas(rng, W, H)
    feet = H * rng.uniform(0.9, 0.98)
    hA = H * rng.uniform(0.62, 0.78)
    people = []  # (box, role) in drawing order
    if third:
        box, (lo, hi) = _pisc_stranger(rng, d, W, H, feet)
        people.append(("third", box))
    else:
        lo, hi = 0.3, 0.7
    stage = _PiscStage(rng, d, W, H, feet, hA, W * rng.uniform(lo, hi))
    people.extend(_PISC_PAIRS.get(rel, _pisc_no_relation)(stage))
    return img, people


def _pisc_stranger(rng, d, W: int, H: int, feet: float):
    """A small stranger in the background, facing away, at the far side; returns their box and the range of the
    pair's centre (as fractions of the width) that keeps the pair clear of them."""
    side = rng.choice([-1, 1])
    h3 = H * rng.uniform(0.38, 0.48)
    x3 = W / 2 + side * W * rng.uniform(0.36, 0.42)
    st = _people_style(rng)
    box = sd.draw_person(d, x3, feet - H * 0.12 - h3, h3, back=True, **st)["box"]
    return box, ((0.2, 0.55) if side > 0 else (0.45, 0.8))


@dataclass
class _PiscStage:
    """What every relation's staging shares: the drawing, the image size, the ground line, the first person's
    height and the pair's centre before it is fitted to the image."""

    rng: np.random.Generator
    d: object
    W: int
    H: int
    feet: float
    hA: float
    mid: float

    def turn0(self) -> tuple:
        """A near-frontal head turn, for people whose facing carries no label."""
        return tuple(self.rng.uniform(-0.15, 0.15, 2))

    def fit(self, g: float) -> float:
        """The pair's centre moved so that a pair `g` apart stays inside the image."""
        half = g / 2 + 0.23 * self.hA
        return float(np.clip(self.mid, half, max(half, self.W - half)))


def _pisc_friends(stage: _PiscStage) -> list:
    """Friends: side by side, casual, different bright shirts."""
    rng, d, feet, hA, turn0 = stage.rng, stage.d, stage.feet, stage.hA, stage.turn0
    people = []
    g = hA * rng.uniform(0.46, 0.56)
    mid = stage.fit(g)
    a, b = _people_style(rng), _people_style(rng)
    while b["shirt"] == a["shirt"]:
        b = _people_style(rng)
    h2 = hA * rng.uniform(0.93, 1.05)
    people.append(("a", sd.draw_person(d, mid - g / 2, feet - hA, hA, turn=turn0(), expression=1, **a)["box"]))
    people.append(
        (
            "b",
            sd.draw_person(d, mid + g / 2, feet - h2, h2, turn=turn0(), expression=int(rng.choice([0, 1])), **b)["box"],
        )
    )
    return people


def _pisc_family(stage: _PiscStage) -> list:
    """Family: adult + child in matching clothes, adult's hand on the child's shoulder."""
    rng, d, feet, hA, turn0 = stage.rng, stage.d, stage.feet, stage.hA, stage.turn0
    people = []
    hc = hA * rng.uniform(0.5, 0.6)
    g = hA * rng.uniform(0.22, 0.28)
    mid = stage.fit(g)
    st = _people_style(rng)
    sgn = rng.choice([-1, 1])
    xa, xc = mid - sgn * g / 2, mid + sgn * g / 2
    hand = (xc - sgn * 0.05 * hc, feet - hc + 0.3 * hc)
    hands = (hand, None) if sgn < 0 else (None, hand)
    people.append(("a", sd.draw_person(d, xa, feet - hA, hA, turn=turn0(), hands=hands, **st)["box"]))
    people.append(("b", sd.draw_person(d, xc, feet - hc, hc, child=True, turn=turn0(), expression=1, **st)["box"]))
    return people


def _pisc_couple(stage: _PiscStage) -> list:
    """Couple: very close, holding hands, faces turned to each other."""
    rng, d, feet, hA = stage.rng, stage.d, stage.feet, stage.hA
    people = []
    g = hA * rng.uniform(0.19, 0.23)
    mid = stage.fit(g)
    h2 = hA * rng.uniform(0.9, 1.0)
    a, b = _people_style(rng), _people_style(rng)
    joint = (mid, feet - hA + 0.56 * hA)
    people.append(
        (
            "a",
            sd.draw_person(
                d,
                mid - g / 2,
                feet - hA,
                hA,
                turn=(rng.uniform(0.45, 0.65), 0.0),
                hands=(None, joint),
                expression=1,
                **a,
            )["box"],
        )
    )
    people.append(
        (
            "b",
            sd.draw_person(
                d,
                mid + g / 2,
                feet - h2,
                h2,
                turn=(-rng.uniform(0.45, 0.65), 0.0),
                hands=(joint, None),
                expression=1,
                **b,
            )["box"],
        )
    )
    return people


def _pisc_professional(stage: _PiscStage) -> list:
    """Professional: both in dark suits with ties, one carrying a briefcase."""
    rng, d, feet, hA, turn0 = stage.rng, stage.d, stage.feet, stage.hA, stage.turn0
    people = []
    g = hA * rng.uniform(0.44, 0.54)
    mid = stage.fit(g)
    h2 = hA * rng.uniform(0.93, 1.05)
    a, b = _people_style(rng, "suit"), _people_style(rng, "suit")
    ta, tb = (
        sd.pick(rng, [(180, 30, 40), (40, 60, 170), (120, 30, 120)]),
        sd.pick(rng, [(180, 30, 40), (40, 60, 170), (200, 160, 40)]),
    )
    pa = sd.draw_person(d, mid - g / 2, feet - hA, hA, turn=turn0(), tie=ta, **a)
    people.append(("a", pa["box"]))
    pb = sd.draw_person(d, mid + g / 2, feet - h2, h2, turn=turn0(), tie=tb, **b)
    people.append(("b", pb["box"]))
    bx = (mid + g / 2 + 0.21 * h2) if rng.random() < 0.5 else (mid - g / 2 - 0.21 * hA)
    by = feet - hA + 0.57 * hA
    d.rectangle([bx - 0.07 * hA, by, bx + 0.07 * hA, by + 0.11 * hA], fill=(70, 45, 25), outline=sd.OUTLINE, width=2)
    return people


def _pisc_commercial(stage: _PiscStage) -> list:
    """Commercial: clerk in an apron behind a counter, customer at the counter (placed from the pair's centre as
    drawn, not fitted: the counter's clamp keeps it inside)."""
    rng, d, W, H, feet, hA, mid = stage.rng, stage.d, stage.W, stage.H, stage.feet, stage.hA, stage.mid
    people = []
    sgn = rng.choice([-1, 1])  # clerk on the left (-1) or right (+1) of the customer
    cw = hA * rng.uniform(0.55, 0.7)
    xk = float(np.clip(mid + sgn * hA * 0.25, cw / 2 + 4, W - cw / 2 - 4))
    xc = xk - sgn * (cw / 2 + hA * 0.16)
    hk = hA * rng.uniform(0.95, 1.05)
    top_k = feet - 0.1 * H - hk  # clerk stands a bit further back
    ctop = feet - hA * 0.45
    pk = sd.draw_person(
        d, xk, top_k, hk, turn=(-sgn * rng.uniform(0.4, 0.6), 0.0), expression=1, **_people_style(rng, "apron")
    )
    sd.draw_counter(d, xk - cw / 2, ctop, xk + cw / 2, feet, rng)
    kb = pk["box"]
    people.append(("a", (kb[0], kb[1], kb[2], ctop)))
    people.append(
        (
            "b",
            sd.draw_person(d, xc, feet - hA, hA, turn=(sgn * rng.uniform(0.4, 0.6), 0.0), **_people_style(rng))["box"],
        )
    )
    return people


def _pisc_no_relation(stage: _PiscStage) -> list:
    """No relation: far apart, different depth, facing away from each other."""
    rng, d, W, H, feet, hA = stage.rng, stage.d, stage.W, stage.H, stage.feet, stage.hA
    people = []
    h2 = hA * rng.uniform(0.55, 0.8)
    x1, x2 = W * rng.uniform(0.12, 0.2), W * rng.uniform(0.8, 0.88)
    if rng.random() < 0.5:
        x1, x2 = x2, x1
    back_a = rng.random() < 0.6
    people.append(
        (
            "b",
            sd.draw_person(d, x2, feet - H * rng.uniform(0.05, 0.12) - h2, h2, back=True, **_people_style(rng))["box"],
        )
    )
    away = -1.0 if x1 < x2 else 1.0
    people.append(
        (
            "a",
            sd.draw_person(
                d, x1, feet - hA, hA, back=back_a, turn=(away * rng.uniform(0.6, 0.9), 0.0), **_people_style(rng)
            )["box"],
        )
    )
    return people


# staging of the pair by PISC relation id; any other id stages strangers, as relation 6 does
_PISC_PAIRS = {
    1: _pisc_friends,
    2: _pisc_family,
    3: _pisc_couple,
    4: _pisc_professional,
    5: _pisc_commercial,
    6: _pisc_no_relation,
}


def write_pisc(root: Path, rng: np.random.Generator, n: int, S: int) -> dict:
    info, relationship, domain, split_ids, counts = [], {}, {}, {}, {}
    next_id = 1
    for split, target, floor in (("train", n, 1), ("val", max(6 * 8, n // 4), 8), ("test", max(6 * 8, n // 4), 8)):
        ids, count, per_class = [], 0, Counter()
        cycle = []
        while count < target or min(per_class[c] for c in PISC_RELATIONS) < floor:
            if not cycle:
                cycle = list(rng.permutation(6) + 1)
            rel = int(cycle.pop())
            W, H = (int(round(S * 4 / 3)), S) if rng.random() < 0.6 else (S, S)
            third = rel != 6 and W > H and rng.random() < 0.25
            img, people = _pisc_scene(rng, rel, W, H, third)
            order = rng.permutation(len(people))
            boxes, index = [], {}
            for j, k in enumerate(order):
                role, b = people[k]
                boxes.append([int(math.floor(b[0])), int(math.floor(b[1])), int(math.ceil(b[2])), int(math.ceil(b[3]))])
                index[role] = j + 1
            pairs = {}

            def key(u, v):
                return f"{min(u, v)} {max(u, v)}"

            pairs[key(index["a"], index["b"])] = rel
            if "third" in index:
                pairs[key(index["a"], index["third"])] = 6
                pairs[key(index["b"], index["third"])] = 6
            iid = next_id
            next_id += 1
            _save(img, root / "image" / f"{iid:05d}.jpg")
            info.append({"id": iid, "imgH": H, "imgW": W, "bbox": boxes})
            relationship[str(iid)] = dict(sorted(pairs.items()))
            domain[str(iid)] = {k: PISC_DOMAIN_OF[v] for k, v in sorted(pairs.items())}
            ids.append(str(iid))
            count += len(pairs)
            per_class.update(pairs.values())
        split_ids[split], counts[split] = ids, count
    _write_json(info, root / "annotation_image_info.json")
    _write_json(relationship, root / "relationship.json")
    _write_json(domain, root / "domain.json")
    for split, ids in split_ids.items():
        _write_json(ids, root / "relationship_split" / f"relation_{split}idx.json")
        _write_json(ids, root / "domain_split" / f"domain_{split}idx.json")
    return {"counts": counts}


# -------------------------------------------------------------------------------------------------- GazeFollow
def _gaze_scene(rng, W: int, H: int, inframe: bool):
    img, d = sd.canvas(rng, W, H)
    r = rng.uniform(0.09, 0.13) * H
    skin, hair, shirt = sd.pick(rng, sd.SKIN), sd.pick(rng, sd.HAIR), sd.pick(rng, sd.BRIGHT)
    for _ in range(int(rng.integers(0, 3))):  # faint distractors
        kind = int(rng.integers(0, 4))
        base = np.array(img.getpixel((int(rng.integers(0, W)), int(rng.integers(0, H)))), float)
        sd.draw_target(
            d,
            rng.uniform(0.1, 0.9) * W,
            rng.uniform(0.1, 0.9) * H,
            rng.uniform(0.04, 0.07) * H,
            kind,
            sd.col(base + rng.normal(0, 25, 3)),
        )
    target = None
    if inframe:
        for _ in range(60):
            hx, hy = rng.uniform(0.12, 0.88) * W, rng.uniform(0.22, 0.58) * H
            tx, ty = rng.uniform(0.08, 0.92) * W, rng.uniform(0.1, 0.92) * H
            far = math.hypot(tx - hx, ty - hy) >= max(0.3 * max(W, H), 3.5 * r)
            on_body = abs(tx - hx) < 2.3 * r and ty > hy - 1.5 * r
            if far and not on_body:
                break
        target = (tx, ty)
        u = _unit((tx - hx, ty - hy))
    else:  # looking out of the frame: head near the border it faces
        side = int(rng.integers(0, 3))  # 0 left, 1 right, 2 top
        if side == 0:
            hx, hy, u = rng.uniform(0.12, 0.3) * W, rng.uniform(0.25, 0.58) * H, _unit((-1.0, rng.uniform(-0.5, 0.5)))
        elif side == 1:
            hx, hy, u = rng.uniform(0.7, 0.88) * W, rng.uniform(0.25, 0.58) * H, _unit((1.0, rng.uniform(-0.5, 0.5)))
        else:
            hx, hy, u = rng.uniform(0.2, 0.8) * W, rng.uniform(0.25, 0.4) * H, _unit((rng.uniform(-0.6, 0.6), -1.0))
    hy = max(hy, 1.1 * r)
    body = [
        (hx - 1.7 * r, hy + 1.2 * r),
        (hx + 1.7 * r, hy + 1.2 * r),
        (hx + 1.5 * r, min(H, hy + 5.5 * r)),
        (hx - 1.5 * r, min(H, hy + 5.5 * r)),
    ]
    d.polygon(body, fill=shirt, outline=sd.OUTLINE)
    if target is not None:
        sd.draw_target(
            d, target[0], target[1], rng.uniform(0.06, 0.09) * H, int(rng.integers(0, 4)), sd.pick(rng, sd.BRIGHT)
        )
    face = sd.draw_face(
        d, hx, hy, r, skin, hair, turn=tuple(u * 0.9), look=tuple(u), expression=int(sd.pick(rng, OPEN_EYED))
    )
    hb = face["box"]
    pad = 0.04 * (hb[2] - hb[0])
    head = (max(0.0, hb[0] - pad), max(0.0, hb[1] - pad), min(float(W), hb[2] + pad), min(float(H), hb[3] + pad))
    bx0, by0 = max(0.0, hx - 1.7 * r), max(0.0, hb[1])
    bx1, by1 = min(float(W), hx + 1.7 * r), min(float(H), hy + 5.5 * r)
    return img, {"eye": face["eyes"], "head": head, "target": target, "body": (bx0, by0, bx1 - bx0, by1 - by0)}


def write_gazefollow(root: Path, rng: np.random.Generator, n: int, S: int) -> dict:
    sources = ["sun", "coco", "pascal", "imagenet", "places", "actions40"]
    counts, dropped = {}, {}
    for split, count in (("train", n), ("test", max(16, n // 4))):
        lines, idx, n_bad = [], 0, 0
        bad_at = (
            set(rng.choice(count, size=max(1, int(round(0.03 * count))), replace=False).tolist())
            if split == "train"
            else set()
        )
        for i in range(count):
            W, H = (int(round(S * 4 / 3)), S) if rng.random() < 0.7 else (S, S)
            inframe = split == "test" or rng.random() >= 0.2
            img, g = _gaze_scene(rng, W, H, inframe)
            folder = "train" if split == "train" else "test2"
            rel = f"{folder}/{i // 1000:08d}/{i + 1:08d}.jpg"
            _save(img, root / rel)
            bx, by, bw, bh = g["body"]
            ex, ey = g["eye"][0] / W, g["eye"][1] / H
            hx0, hy0, hx1, hy1 = g["head"]
            common = [_f(bx / W), _f(by / H), _f(bw / W), _f(bh / H), _f(ex), _f(ey)]
            head = [_f(hx0, 2), _f(hy0, 2), _f(hx1, 2), _f(hy1, 2)]
            src, meta = sd.pick(rng, sources), f"synth_{rng.bytes(6).hex()}.jpg"
            gx, gy = (g["target"][0] / W, g["target"][1] / H) if g["target"] is not None else (-1.0, -1.0)
            if split == "train":
                idx += 1
                lines.append(
                    ",".join([rel, str(idx)] + common + [_f(gx), _f(gy)] + head + ["1" if inframe else "0", src, meta])
                    + "\n"
                )
                if i in bad_at:  # an invalid duplicate annotation, to be dropped (inout = -1)
                    idx += 1
                    n_bad += 1
                    lines.append(
                        ",".join([rel, str(idx)] + common + [_f(gx), _f(gy)] + head + ["-1", src, meta]) + "\n"
                    )
            else:
                for _ in range(int(rng.integers(4, 9))):  # several annotators per person
                    idx += 1
                    jx = float(np.clip(gx + rng.normal(0, 0.02), 0, 1))
                    jy = float(np.clip(gy + rng.normal(0, 0.02), 0, 1))
                    lines.append(",".join([rel, str(idx)] + common + [_f(jx), _f(jy)] + head + [src, meta]) + "\n")
        _write_text("".join(lines), root / f"{split}_annotations_release.txt")
        counts[split] = count
        if split == "train":
            dropped[split] = n_bad
    return {"counts": counts, "dropped": dropped}


# ------------------------------------------------------------------------------------------------------ public
_WRITERS = {
    "ego4d_lam": write_lam,
    "affectnet": write_affectnet,
    "hagrid_v2": write_hagrid,
    "pisc": write_pisc,
    "gazefollow": write_gazefollow,
}


def generate(out_dir, n: int = 200, seed: int = 0, image_size: int = 224, datasets=DATASETS) -> dict:
    """Render the synthetic datasets under `out_dir` (see the module docstring); returns the summary.

    `n` is the approximate number of samples per task in each training split; val/test splits get about n/4 (with
    a per-class floor). Existing dataset folders are replaced only if `out_dir` holds this generator's README.
    """
    if n < 1 or image_size < 64:
        raise ValueError(f"need n >= 1 and image_size >= 64, got n={n}, image_size={image_size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    readme = out / "README.txt"
    ours = readme.exists() and readme.read_text(encoding="utf-8", errors="replace").startswith(MARKER)
    for name in datasets:
        if name not in _WRITERS:
            raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
        target = out / DATASET_DIRS[name]
        if target.exists():
            if not ours:
                raise FileExistsError(
                    f"{target} exists and {out} holds no synthetic-data README; refusing to overwrite it"
                )
            shutil.rmtree(target)
    _write_text(README, readme)
    summary: dict = {
        "paths": {},
        "dropped": {},
        "stats": {},
        "root": str(out),
        "seed": seed,
        "n": n,
        "image_size": image_size,
    }
    for name in datasets:
        root = out / DATASET_DIRS[name]
        root.mkdir(parents=True, exist_ok=True)
        res = _WRITERS[name](root, np.random.default_rng([seed, _SEED_KEY[name]]), n, image_size)
        summary[name] = res["counts"]
        summary["paths"][name] = str(root)
        if res.get("dropped"):
            summary["dropped"][name] = res["dropped"]
        if res.get("stats"):
            summary["stats"][name] = res["stats"]
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write synthetic social-scene datasets in the official layouts.")
    ap.add_argument("out_dir")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--image-size", type=int, default=224)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    summary = generate(args.out_dir, n=args.n, seed=args.seed, image_size=args.image_size)
    print(
        json.dumps(
            {k: summary[k] for k in DATASETS}
            | {"dropped": summary["dropped"], "seconds": round(time.perf_counter() - t0, 2)},
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

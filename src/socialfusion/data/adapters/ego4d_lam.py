"""Ego4D Social "Looking At Me": one sample per (clip, track, frame) face box, label 1 = looking at the wearer.

Reproduces the baseline EGO4D/social-interactions (branch `lam`): `scripts/get_json.py` (tracks of every
non-wearer person), `scripts/get_lam_result.py` (looking segments, `person` null skipped, `is_at_me` ignored),
`dataset/data_loader.py::check` (track cleaning and interpolation) and `make_dataset` (inclusive segments,
per-track stride, frames `img_{frame:05d}.jpg`). Deviations, each documented where it happens: the camera wearer
is found by its `camera_wearer` flag, a missing frame image is a counted skip (the baseline zero-pads it), a
duplicate frame inside a track keeps its first box (the metric de-duplicates uids the same way).

Sample id = the metric's uid `clip_uid:frame:track_id`. Split `test` reads the challenge face crops
`videos_challenge/<video_id>/<track_id>/<frame>_<unique_id>.jpg` as unlabelled samples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.schema import Box, DataError, Sample
from ..skips import SkipReport
from . import DATASETS
from ._boxes import WHOLE_IMAGE, normalise_box
from ._common import (
    DirectoryIndex,
    bool_option,
    check_split,
    filtered,
    int_option,
    load_json,
    parse_float,
    parse_int,
    size_or_skip,
)

SPLITS = ("train", "val", "test")


@DATASETS.register("ego4d_lam")
def read(root: Path, split: str, report: SkipReport, stride=1, challenge=None, respect_is_at_me=False) -> list[Sample]:
    """Options: `stride` keeps every stride-th sample of each track (the baseline trains and validates with 13);
    `challenge` reads the unlabelled test crops (default: only for split 'test'); `respect_is_at_me` also drops
    looking segments whose `is_at_me` is false (the baseline ignores the flag)."""
    check_split("ego4d_lam", split, SPLITS)
    stride = int_option("stride", stride, minimum=1)
    challenge = split == "test" if challenge is None else bool_option("challenge", challenge)
    if challenge:
        return _challenge_crops(root, report, stride)
    clips = _clips_of_split(root, split, report)
    respect = bool_option("respect_is_at_me", respect_is_at_me)
    frames = DirectoryIndex(root)
    samples: list[Sample] = []
    seen: set[str] = set()
    for clip in clips:
        samples.extend(_clip_samples(root, clip, report, stride, respect, frames, seen))
    return samples


def frames_needed(root: Path, split: str, report: SkipReport) -> dict[str, set[int]]:
    """The frame numbers each clip's samples read (`video_imgs/<clip>/img_{frame:05d}.jpg`), before any stride:
    every frame of every cleaned (interpolated) track of a non-wearer person, for `data extract-frames`."""
    check_split("ego4d_lam", split, SPLITS)
    needed: dict[str, set[int]] = {}
    for clip in _clips_of_split(root, split, report):
        frames = needed.setdefault(clip["clip_uid"], set())
        for person in _tracked_persons(clip):
            pid = person.get("person_id")
            for path in person.get("tracking_paths") or []:
                if isinstance(path, dict) and path.get("track_id"):
                    where = f"{clip['clip_uid']}:person {pid}:track {path['track_id']}"
                    track = _clean_track(path.get("track"), "" if pid is None else str(pid), report, where)
                    frames.update(frame for frame, _, _ in track)
    return needed


# ---- which clips -----------------------------------------------------------------------------------------


def _clips_of_split(root: Path, split: str, report: SkipReport) -> list[dict]:
    """Clips of `json/av_{split}.json`, or of the merged `json/av.json` (scripts/merge.py) filtered by the list."""
    per_split, merged = root / "json" / f"av_{split}.json", root / "json" / "av.json"
    list_file = root / "split" / f"{split}.list"
    if per_split.is_file():
        source = per_split
    elif merged.is_file():
        source = merged
        if not list_file.is_file():
            raise DataError(f"split list not found: expected {list_file} (needed to pick {split} clips from {merged})")
    else:
        raise DataError(f"LAM annotations not found: expected {per_split} or {merged}")
    data = load_json(source, "LAM annotations")
    videos = data.get("videos") if isinstance(data, dict) else data
    if not isinstance(videos, list):
        raise DataError(f"{source}: expected a top-level 'videos' list")
    by_uid: dict[str, dict] = {}
    for v, video in enumerate(videos):
        clips = video.get("clips") if isinstance(video, dict) else None
        for c, clip in enumerate(clips or []):
            uid = clip.get("clip_uid") if isinstance(clip, dict) else None
            if not isinstance(uid, str) or not uid:
                report.skip(f"{source.name}:videos[{v}].clips[{c}]", "clip without a clip_uid")
                continue
            by_uid.setdefault(uid, {**clip, "_video_uid": video.get("video_uid")})
    if not list_file.is_file():
        return list(by_uid.values())
    wanted = [line.strip() for line in list_file.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    for uid in wanted:
        if uid not in by_uid:
            report.skip(f"{list_file.name}:{uid}", "clip listed in the split has no annotations")
    return [by_uid[uid] for uid in wanted if uid in by_uid]


# ---- one clip --------------------------------------------------------------------------------------------


def _clip_samples(root, clip, report, stride, respect_is_at_me, frames, seen) -> list[Sample]:
    uid = clip["clip_uid"]
    positives = _looking_frames(clip, report, respect_is_at_me)
    clip_size: tuple[int, int] | None = None  # every frame of a clip comes from one ffmpeg run: one size
    out = []
    for person in _tracked_persons(clip):
        pid = person.get("person_id")
        pid = "" if pid is None else str(pid)
        for t, path in enumerate(person.get("tracking_paths") or []):
            track_id = str(path.get("track_id", "")) if isinstance(path, dict) else ""
            where = f"{uid}:person {pid}:track {track_id or t}"
            if not track_id:
                report.skip(where, "tracking path without a track_id")
                continue
            track = _clean_track(path.get("track"), pid, report, where)
            for idx, (frame, xyxy, interpolated) in enumerate(track):
                if idx % stride:  # make_dataset: `if idx % stride == 0` over the cleaned track
                    continue
                sample_id = f"{uid}:{frame}:{track_id}"
                image = f"video_imgs/{uid}/img_{frame:05d}.jpg"
                if sample_id in seen:
                    report.skip(sample_id, "duplicate (clip, frame, track): the metric keeps the first")
                    continue
                if not frames.exists(image):
                    report.skip(f"{image} (sample {sample_id})", "frame image missing")
                    continue
                if clip_size is None:
                    clip_size = size_or_skip(root, image, report, f"{image} (sample {sample_id})")
                    if clip_size is None:
                        continue
                # the baseline crops img[y1:y2, x1:x2], i.e. clips to the frame; a box fully outside gives an
                # empty crop that it zero-pads but still scores, so such a box is kept (degenerate, flagged)
                box = normalise_box(xyxy, *clip_size, allow_empty=True)
                seen.add(sample_id)
                out.append(
                    Sample(
                        id=sample_id,
                        task="lam",
                        image=image,
                        boxes=[Box(box, 0)],
                        label=int((pid, frame) in positives),
                        root=str(root),
                        meta={
                            "group": f"clip:{uid}",
                            "clip_uid": uid,
                            "video_uid": clip.get("_video_uid"),
                            "frame": frame,
                            "track_id": track_id,
                            "person_id": pid,
                            "interpolated": interpolated,
                            "box_px": [round(v, 6) for v in xyxy],
                            "empty_box": box[2] <= box[0] or box[3] <= box[1],
                        },
                    )
                )
    return out


def _tracked_persons(clip: dict) -> list[dict]:
    """Every person but the camera wearer. get_json.py skips persons[0] assuming it is the wearer (unverified,
    DATASETS.md 1.4); we use the `camera_wearer` flag, and fall back to persons[0] only if no person has it."""
    persons = [p for p in clip.get("persons") or [] if isinstance(p, dict)]
    if any("camera_wearer" in p for p in persons):
        return [p for p in persons if not p.get("camera_wearer")]
    return persons[1:]


def _looking_frames(clip: dict, report: SkipReport, respect_is_at_me: bool) -> set[tuple[str, int]]:
    """(person_id, frame) pairs inside a looking segment, bounds inclusive (make_dataset's range(start, end + 1))."""
    positives: set[tuple[str, int]] = set()
    for k, seg in enumerate(clip.get("social_segments_looking") or []):
        where = f"{clip['clip_uid']}:social_segments_looking[{k}]"
        if not isinstance(seg, dict) or seg.get("person") is None:
            continue  # get_lam_result.py skips segments whose person is null
        if respect_is_at_me and seg.get("is_at_me") is False:
            continue
        try:
            start, end = parse_int(seg.get("start_frame")), parse_int(seg.get("end_frame"))
        except ValueError:
            report.skip(where, "looking segment without integer start_frame/end_frame")
            continue
        person = str(seg["person"])
        positives.update((person, f) for f in range(start, end + 1))
    return positives


def _clean_track(track, person_id: str, report: SkipReport, where: str) -> list[tuple[int, tuple, bool]]:
    """data_loader.py::check: drop w<=0, h<=0, frame 0 and empty person ids; clamp x, y at 0; xyxy; linearly
    interpolate the four coordinates over gaps between the first and last kept frame (interp1d == np.interp here)."""
    if not isinstance(track, list):
        report.skip(where, "tracking path without a track list")
        return []
    if not person_id:  # check() drops boxes whose person id is empty
        if track:
            filtered(report, where, "track of a person with an empty person_id (dropped by the baseline)")
        return []
    kept: dict[int, tuple[float, float, float, float]] = {}
    for k, item in enumerate(sorted((i for i in track if isinstance(i, dict)), key=_frame_key)):
        try:
            frame = parse_int(item.get("frame"))
            x, y, w, h = (parse_float(item.get(key)) for key in ("x", "y", "width", "height"))
        except ValueError:
            report.skip(f"{where}:box {k}", "track box with a missing or non-numeric frame/x/y/width/height")
            continue
        if w <= 0 or h <= 0 or frame <= 0:
            continue  # the baseline's own cleaning, not bad data
        if frame in kept:
            report.skip(f"{where}:frame {frame}", "duplicate frame in a track: the first box is kept")
            continue
        x, y = max(x, 0.0), max(y, 0.0)  # clamp before adding the size, as check() does
        kept[frame] = (x, y, x + w, y + h)
    if not kept:
        return []
    known = np.array(sorted(kept))
    boxes = np.array([kept[f] for f in known])
    every = np.arange(known[0], known[-1] + 1)
    filled = np.stack([np.interp(every, known, boxes[:, c]) for c in range(4)], axis=1)
    return [(int(f), tuple(float(v) for v in b), int(f) not in kept) for f, b in zip(every, filled)]


def _frame_key(item: dict):
    try:
        return (0, parse_int(item.get("frame")))
    except ValueError:
        return (1, 0)


# ---- the challenge test set --------------------------------------------------------------------------------


def _challenge_crops(root: Path, report: SkipReport, stride: int) -> list[Sample]:
    """Unlabelled face crops named `<frame>_<unique_id>.jpg`; the EvalAI submission is keyed by unique_id."""
    base = root / "videos_challenge"
    if not base.is_dir():
        raise DataError(f"LAM challenge crops not found: expected the folder {base}")
    out = []
    for video in sorted(p for p in base.iterdir() if p.is_dir()):
        for track in sorted(p for p in video.iterdir() if p.is_dir()):
            crops = []
            for f in sorted(track.iterdir()):
                stem, dot, ext = f.name.rpartition(".")
                frame_text, sep, unique_id = stem.partition("_")
                where = f"videos_challenge/{video.name}/{track.name}/{f.name}"
                try:
                    frame = parse_int(frame_text)
                except ValueError:
                    frame = None
                if not dot or ext.lower() not in ("jpg", "jpeg", "png") or not sep or not unique_id or frame is None:
                    report.skip(where, "challenge crop name is not <frame>_<unique_id>.jpg")
                    continue
                crops.append((frame, unique_id, where))
            crops.sort(key=lambda c: c[0])
            for idx, (frame, unique_id, image) in enumerate(crops):
                if idx % stride:
                    continue
                out.append(
                    Sample(
                        id=f"{video.name}:{frame}:{track.name}:{unique_id}",
                        task="lam",
                        image=image,
                        boxes=[Box(WHOLE_IMAGE, 0)],
                        label=None,
                        root=str(root),
                        meta={"video_id": video.name, "track_id": track.name, "frame": frame, "unique_id": unique_id},
                    )
                )
    return out

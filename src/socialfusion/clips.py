"""A clip in, answers per person and frame: sampled frames -> detection -> IoU tracks -> every task per track.

    summary = predict_clip(predictor, "street.mp4", tasks=["lam", "expression", "gaze"], fps=2)
    summary["rows"][0]["tracks"]     # per frame: each tracked face / hand / person with its boxes and answers
    summary["tracks"]                # per track: frames seen, label fractions, dominant label, gaze targets

A clip is a video file (decoded with PyAV, the `video` extra) sampled at `fps` frames per second the way ffmpeg's
`fps` filter samples (`data.video.frames_at_rate`), or a folder of frames (every image, in name order). Each frame
is searched by the detectors (`socialfusion.detect`), and the boxes of each kind are linked into tracks
(`socialfusion.tracks`: the IoU rule). A face track carries its face and the head made from it (lam, expression,
gaze read them), a hand track its hand (gesture), and the two largest persons of a frame form the pair relation
reads. A frame with nobody in it has no tracks; nothing falls back to the whole frame. Decoding streams: memory
stays flat over a clip of any length when `on_frame` takes the frames (the CLI writes them out as they come).

Bad input is a `ClipError` (a `DataError`: one line for the CLI) found by `probe` before any model work: not a
video, no video stream, no frame, frames larger than `core.images.max_pixels()`. A file that stops decoding
part-way (truncated) keeps the frames decoded until then, and its summary says where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import detect as detection
from .core.images import IMAGE_SUFFIXES, ImageError, image_size, load_image, max_pixels
from .core.schema import DataError
from .data.video import VideoError, frames_at_rate
from .detect import head_from_face, largest
from .tracks import IouTracker

DEFAULT_FPS = 2.0
VIDEO_SUFFIXES = {
    ".mp4",
    ".m4v",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".ts",
    ".3gp",
}  # --images refuses these
SUBJECT_KINDS = {"face": ("face", "head"), "hand": ("hand",)}  # what a track of each kind offers the tasks


class ClipError(DataError):
    """A clip that cannot be used (the message names it and says why)."""


@dataclass(frozen=True)
class ClipInfo:
    path: str
    source: str  # "video" or "frames"
    width: int
    height: int
    fps: float | None  # the sampling rate (None for a folder of frames: every frame is taken)
    duration_s: float | None
    expected_frames: int | None  # how many frames sampling will give (an estimate for a video)


# ------------------------------------------------------------------------------------------ reading clips
def _frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _check_size(path, w: int, h: int) -> None:
    if w <= 0 or h <= 0:
        raise ClipError(f"{path}: frames have an empty size {w}x{h}")
    if w * h > max_pixels():
        raise ClipError(
            f"{path}: frames of {w}x{h} = {w * h} pixels exceed the "
            f"limit of {max_pixels()} (SOCIALFUSION_MAX_IMAGE_PIXELS)"
        )


def probe(path: str | Path, fps: float = DEFAULT_FPS) -> ClipInfo:
    """What a clip holds, checked cheaply (header and first frame) before any model loads; ClipError if unusable."""
    path = Path(path)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ClipError(f"--fps must be a positive number, got {fps!r}")
    if path.is_dir():
        files = _frame_files(path)
        if not files:
            raise ClipError(
                f"{path}: a folder of frames with no image in it (image "
                f"files end in {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        for file in files:  # the first frame that opens gives the size (a broken one is skipped when read)
            try:
                w, h = image_size(file)
                break
            except ImageError:
                continue
        else:
            raise ClipError(f"{path}: none of its {len(files)} image files opens as an image")
        _check_size(path, w, h)
        return ClipInfo(str(path), "frames", w, h, None, None, len(files))
    if not path.is_file():
        raise ClipError(f"{path}: no such file or folder")
    if path.stat().st_size == 0:
        raise ClipError(f"{path}: the file is empty (0 bytes)")
    return _probe_video(path, fps)


def _import_av():
    try:
        import av
    except ImportError as err:
        raise ClipError("reading videos needs PyAV", hint="pip install 'socialfusion[video]'") from err
    return av


def _probe_video(path: Path, fps: float) -> ClipInfo:
    av = _import_av()
    try:
        container = av.open(str(path))
    except av.error.EOFError as err:
        raise ClipError(f"{path}: the file ends before its first frame (an empty or truncated video)") from err
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise ClipError(
            f"{path}: not a video FFmpeg can read ({_reason(err)}; a truncated MP4 loses its index too)"
        ) from err
    with container:
        if not container.streams.video:
            raise ClipError(f"{path}: no video stream in the file")
        stream = container.streams.video[0]
        _check_size(path, stream.codec_context.width, stream.codec_context.height)
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as err:
            raise ClipError(f"{path}: the first frame does not decode ({_reason(err)})") from err
        if first is None:
            raise ClipError(f"{path}: the video has no frames")
        rate = float(stream.average_rate) if stream.average_rate else None
        duration = (
            float(stream.duration * stream.time_base)
            if stream.duration
            else (container.duration / 1e6 if container.duration else None)
        )
        # sampling faster than the clip's own rate would repeat frames: never more than the source gives
        sample = min(fps, rate) if rate else fps
        expected = max(1, round(duration * sample)) if duration else None
        return ClipInfo(str(path), "video", first.width, first.height, sample, duration, expected)


def _reason(err: BaseException) -> str:
    """FFmpeg's message without the file name it repeats ("[Errno 1094995529] Invalid data ...: 'x.avi'")."""
    text = getattr(err, "strerror", None) or str(err)
    return str(text).split(": '")[0]


def frames(info: ClipInfo, report: Callable[[str], None] | None = None) -> Iterator[tuple[int, float | None, object]]:
    """(index from 0, time in seconds or None, PIL image) for each sampled frame. A frame file that does not
    decode is reported (`report`) and left out; a video that stops decoding raises VideoError after the frames
    decoded until then."""
    if info.source == "frames":
        index = 0
        for path in _frame_files(Path(info.path)):
            try:
                image = load_image(path)
            except ImageError as err:
                if report:
                    report(f"frame skipped: {err}")
                continue
            yield index, None, image
            index += 1
        return
    for number, frame in frames_at_rate(Path(info.path), info.fps):
        yield number - 1, round((number - 1) / info.fps, 3), frame.to_image().convert("RGB")


# ------------------------------------------------------------------------------------------ one frame
def _task_groups(predictor, names: list[str]) -> dict[str, list[str]]:
    """Which tracks answer which task: a task whose boxes a face track offers (face, head) runs per face track,
    one that reads hands per hand track, relation (two persons) on the frame's pair; anything else cannot run on
    a clip and is left out (the summary says so)."""
    groups: dict[str, list[str]] = {"face": [], "hand": [], "pair": [], "unsupported": []}
    for name in names:
        kinds = set(predictor.model.tasks[name].box_kinds)
        if kinds and kinds <= set(SUBJECT_KINDS["face"]):
            groups["face"].append(name)
        elif kinds == {"hand"}:
            groups["hand"].append(name)
        elif kinds == {"person"} and len(predictor.model.tasks[name].box_kinds) == 2:
            groups["pair"].append(name)
        else:
            groups["unsupported"].append(name)
    return groups


def _box(xyxy, kind: str, size: tuple[int, int], role: int | None = None) -> dict:
    """A detected box as a frame row holds it (pixels and normalised) and as `predict` reads it (normalised)."""
    w, h = size
    pixels = [xyxy[0] * w, xyxy[1] * h, xyxy[2] * w, xyxy[3] * h]
    return {"kind": kind, "xyxy": pixels, "xyxy_normalized": list(xyxy), **({} if role is None else {"role": role})}


def _for_predict(boxes: list[dict]) -> list[dict]:
    return [
        {
            "xyxy": b["xyxy_normalized"],
            "kind": b["kind"],
            "normalized": True,
            **({"role": b["role"]} if "role" in b else {}),
        }
        for b in boxes
    ]


def predict_frame(predictor, image, dets, ids, groups: dict[str, list[str]]) -> dict:
    """One frame's row: its tracks (id, kind, score, boxes) each with the answers of the tasks it reads, and the
    frame's pair of persons (the two largest) with relation's answer. All answers of a frame come from one
    `predict` call, so the frame is encoded once whatever the number of tracks."""
    size = image.size
    tracks, entries = [], []
    for d, track in zip(dets, ids):
        boxes = [_box(d.xyxy, d.kind, size)] + (
            [_box(head_from_face(d.xyxy), "head", size)] if d.kind == "face" else []
        )
        tracks.append({"track": track, "kind": d.kind, "score": round(d.score, 4), "boxes": boxes, "tasks": {}})
        if groups.get(d.kind):
            entries.append((tracks[-1]["tasks"], groups[d.kind], _for_predict(boxes)))
    row = {"width": size[0], "height": size[1], "tracks": tracks, "pair": None}
    pair = largest(dets, "person", 2)
    if groups["pair"] and len(pair) == 2:
        boxes = [_box(d.xyxy, "person", size, role) for role, d in enumerate(pair)]
        row["pair"] = {
            "tracks": [next(t for x, t in zip(dets, ids) if x is d) for d in pair],
            "boxes": boxes,
            "tasks": {},
        }
        entries.append((row["pair"]["tasks"], groups["pair"], _for_predict(boxes)))
    if entries:
        names = groups["face"] + groups["hand"] + groups["pair"]
        results = predictor.predict(
            [image] * len(entries), boxes=[e[2] for e in entries], tasks=names, batch_size=len(entries)
        )
        for (answers, wanted, _), result in zip(entries, results):
            answers.update({n: result["tasks"][n] for n in wanted})
    return row


# ------------------------------------------------------------------------------------------ the clip
def predict_clip(
    predictor,
    clip: str | Path,
    tasks="all",
    fps: float = DEFAULT_FPS,
    on_frame: Callable | None = None,
    progress: bool = False,
    threads: int | None = None,
) -> dict:
    """Every sampled frame of `clip` through detection, tracking and the tasks; the clip's summary (module
    docstring), with the frames' rows in "rows" unless `on_frame(row, image)` receives each row as it is made."""
    from tqdm.auto import tqdm

    names = predictor.resolve_tasks(tasks)
    detection.require()
    info = probe(clip, fps)
    groups = _task_groups(predictor, names)
    summary = ClipSummary(info, names, groups["unsupported"])
    tracker, kept = IouTracker(), []
    bar = tqdm(
        total=info.expected_frames, desc=Path(info.path).name, unit="frame", disable=not progress, dynamic_ncols=True
    )
    try:
        for index, time_s, image in frames(info, report=summary.notes.append):
            found = detection.detect(
                image, kinds=("face", "hand", "person"), threads=threads, settings=detection.FRAME_SETTINGS
            )
            dets = [d for d in found if d.kind != "head"]  # a face track makes its own head
            ids = [0] * len(dets)
            for kind in ("face", "hand", "person"):
                which = [i for i, d in enumerate(dets) if d.kind == kind]
                for i, track in zip(
                    which, tracker.update(index, kind, [dets[i].xyxy for i in which], [dets[i].score for i in which])
                ):
                    ids[i] = track
            row = {
                "clip": info.path,
                "frame": index,
                "time_s": time_s,
                **predict_frame(predictor, image, dets, ids, groups),
            }
            summary.add(row)
            if on_frame is None:
                kept.append(row)
            else:
                on_frame(row, image)
            bar.update(1)
    except VideoError as err:  # a truncated or damaged file: what decoded so far stands, and the summary says so
        summary.stopped(str(err))
    finally:
        bar.close()
    summary.check_length()
    out = summary.result()
    if on_frame is None:
        out["rows"] = kept
    return out


# ------------------------------------------------------------------------------------------ the summary
def _inside(point, xyxy) -> bool:
    return xyxy[0] <= point[0] <= xyxy[2] and xyxy[1] <= point[1] <= xyxy[3]


def gaze_target(row: dict, track: dict, answer: dict) -> str:
    """What a face track's gaze point falls on in its frame: the smallest box of another track that holds it
    ("face 2", "hand 4", "person 7"), "out of frame" when the in/out head says so (< 0.5), else "elsewhere"."""
    if answer.get("inout") is not None and answer["inout"] < 0.5:
        return "out of frame"
    hits = []
    for other in row["tracks"]:
        x1, y1, x2, y2 = other["boxes"][0]["xyxy"]  # a track's own box: the face, the hand, the person
        if other["track"] != track["track"] and _inside(answer["point"], (x1, y1, x2, y2)):
            hits.append(((x2 - x1) * (y2 - y1), f"{other['kind']} {other['track']}"))
    return min(hits)[1] if hits else "elsewhere"


class _Counts:
    """Counts of one task's answers on one track (or pair): labels, or gaze targets; fractions and the dominant."""

    def __init__(self, key: str = "labels"):
        self.key, self.n, self.labels = key, 0, {}

    def add(self, label: str) -> None:
        self.n += 1
        self.labels[label] = self.labels.get(label, 0) + 1

    def result(self) -> dict:
        ranked = sorted(self.labels.items(), key=lambda kv: (-kv[1], kv[0]))
        fractions = {k: round(v / self.n, 4) for k, v in ranked}
        return {"frames": self.n, "dominant": ranked[0][0] if ranked else None, self.key: fractions}


class ClipSummary:
    """Per-track accumulators over a clip: constant size per track, whatever the clip's length."""

    def __init__(self, info: ClipInfo, tasks: list[str], unsupported: list[str]):
        self.info, self.tasks, self.notes = info, tasks, []
        if unsupported:
            self.notes.append(
                "not run on clips (their boxes are neither a face track's, "
                f"a hand track's nor a pair of persons): {', '.join(unsupported)}"
            )
        self.frames = self.frames_with_anyone = 0
        self.tracks: dict[int, dict] = {}
        self.pairs: dict[tuple[int, int], dict] = {}
        self.stop = self.last_s = None

    def add(self, row: dict) -> None:
        self.frames += 1
        self.last_s = row["time_s"]
        self.frames_with_anyone += bool(row["tracks"])
        for t in row["tracks"]:
            s = self.tracks.setdefault(
                t["track"],
                {
                    "track": t["track"],
                    "kind": t["kind"],
                    "first_frame": row["frame"],
                    "first_s": row["time_s"],
                    "frames": 0,
                    "tasks": {},
                },
            )
            s["frames"] += 1
            s["last_frame"], s["last_s"] = row["frame"], row["time_s"]
            for name, answer in t["tasks"].items():
                if "label" in answer:
                    s["tasks"].setdefault(name, _Counts()).add(answer["label"])
                elif "point" in answer:
                    s["tasks"].setdefault(name, _Counts("targets")).add(gaze_target(row, t, answer))
        if row["pair"]:
            key = tuple(row["pair"]["tracks"])
            p = self.pairs.setdefault(key, {"tracks": list(key), "frames": 0, "tasks": {}})
            p["frames"] += 1
            for name, answer in row["pair"]["tasks"].items():
                if "label" in answer:
                    p["tasks"].setdefault(name, _Counts()).add(answer["label"])

    def check_length(self) -> None:
        """A video whose frames end well before the duration its header gives was cut short (a truncated copy):
        FFmpeg then just stops, so say it."""
        info = self.info
        if self.stop or not (info.duration_s and info.fps and self.last_s is not None):
            return
        if self.last_s + 1 / info.fps < info.duration_s - max(2 / info.fps, 0.5):
            self.stopped(
                f"the frames end at {self.last_s:.2f} s although the "
                f"header says {info.duration_s:.2f} s (a truncated file?)"
            )

    def stopped(self, why: str) -> None:
        self.stop = why
        self.notes.append(f"decoding stopped early, the answers cover the frames before: {why}")

    def result(self) -> dict:
        def done(entry: dict) -> dict:
            return {**entry, "tasks": {name: counts.result() for name, counts in entry["tasks"].items()}}

        nobody = self.frames > 0 and self.frames_with_anyone == 0
        if nobody:
            self.notes.append(
                f"nobody in the clip: no face, hand or person was detected in any of its {self.frames} frames"
            )
        return {
            "clip": self.info.path,
            "source": self.info.source,
            "width": self.info.width,
            "height": self.info.height,
            "fps": self.info.fps,
            "duration_s": self.info.duration_s,
            "frames": self.frames,
            "frames_with_anyone": self.frames_with_anyone,
            "nobody": nobody,
            "tasks": self.tasks,
            "tracks": [done(t) for t in self.tracks.values()],
            "pairs": [done(p) for p in self.pairs.values()],
            "decoding_stopped": self.stop,
            "notes": self.notes,
        }

"""Frames out of videos, numbered as the Ego4D social baseline's ffmpeg call numbers them.

The baseline (`scripts/extract_frame.sh` of EGO4D/social-interactions) runs, per clip,
`ffmpeg -i <clip_uid>.mp4 -f image2 -vf fps=30 -qscale:v 2 video_imgs/<clip_uid>/img_%05d.jpg`:
output image n (numbered from 1) is the output slot n - 1 of ffmpeg's `fps=30` filter, i.e. time (n - 1) / 30 s.
The fps filter rounds each input frame's timestamp to the nearest slot and fills every slot with the latest frame
placed at or before it (repeating frames of a slower video, dropping extra frames of a faster one), up to the end
of the last frame. Checked against ffmpeg 5.1 for 15, 24, 25, 30 and 60 fps clips (the same source frame in every
image). We do the same
with PyAV (the FFmpeg libraries as a Python package), so a constant 30 fps clip maps frame i to image i + 1, and
other rates map as ffmpeg maps them. JPEG quality 95 stands in for `-qscale:v 2` (both near-lossless).

PyAV is an optional dependency (`pip install socialfusion[video]`); it is imported only when a video is opened.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

from ..core.schema import DataError

FRAME_PATTERN = "img_{:05d}.jpg"


class VideoError(DataError):
    """A video that cannot be opened or decoded (the caller counts it as a skip naming the file)."""


def _import_av():
    try:
        import av  # PyAV, the optional `video` extra (FFmpeg bindings): only extract-frames needs it
    except ImportError as err:
        raise DataError("reading videos needs PyAV: pip install 'socialfusion[video]'") from err
    return av


def frames_at_rate(path: Path, fps: float = 30.0) -> Iterator[tuple[int, object]]:
    """(image number from 1, decoded frame) for every output slot of ffmpeg's `fps` filter over the video at
    `path`; `frame.to_image()` gives the PIL image (converted only for the images that are written)."""
    av = _import_av()
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise VideoError(f"{path}: cannot open the video ({err})") from err
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        stream = container.streams.video[0]
        start = stream.start_time if stream.start_time is not None else 0
        slot_rate = Fraction(fps).limit_denominator(1001)
        previous, next_slot = None, 0
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                # round=near (halves away from zero, as ffmpeg's av_rescale_rnd)
                slot = math.floor((frame.pts - start) * stream.time_base * slot_rate + Fraction(1, 2))
                while previous is not None and next_slot < slot:  # earlier slots repeat the previous frame
                    yield next_slot + 1, previous
                    next_slot += 1
                previous = frame  # a later frame of the same slot replaces it (a faster video drops frames)
                next_slot = max(next_slot, slot)
        except av.error.FFmpegError as err:
            raise VideoError(f"{path}: decoding failed after image {next_slot} ({err})") from err
        if previous is None:
            return
        # at the end of the stream ffmpeg fills the slots up to the end of the last frame (its pts + duration)
        duration = previous.duration or (1 / (stream.average_rate or slot_rate)) / stream.time_base
        end = math.floor((previous.pts - start + duration) * stream.time_base * slot_rate + Fraction(1, 2))
        while next_slot < end:
            yield next_slot + 1, previous
            next_slot += 1


def _write_jpeg(frame, target: Path) -> None:
    """Write to a temporary name and rename, so an interrupted run never leaves half an image behind."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".jpg", dir=target.parent)
    os.close(fd)
    try:
        frame.to_image().convert("RGB").save(tmp, format="JPEG", quality=95)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def extract_frames(video: Path, out_dir: Path, wanted: Iterable[int] | None = None, fps: float = 30.0) -> dict:
    """Write `out_dir/img_%05d.jpg` for the image numbers in `wanted` (every image when None).

    Resumable: images already on disk are kept, and decoding stops after the last wanted number.
    Returns {"written", "existing", "missing"}: missing = wanted numbers past the end of the video."""
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted_set = None if wanted is None else set(wanted)
    todo = None if wanted_set is None else {n for n in wanted_set if not (out_dir / FRAME_PATTERN.format(n)).exists()}
    stats = {"written": 0, "existing": 0 if wanted_set is None else len(wanted_set) - len(todo), "missing": 0}
    if todo is not None and not todo:
        return stats
    last = None if todo is None else max(todo)
    for number, frame in frames_at_rate(video, fps):
        if last is not None and number > last:
            break
        if todo is not None and number not in todo:
            continue
        target = out_dir / FRAME_PATTERN.format(number)
        if todo is None and target.exists():
            stats["existing"] += 1
            continue
        _write_jpeg(frame, target)
        stats["written"] += 1
        if todo is not None:
            todo.discard(number)
    stats["missing"] = 0 if todo is None else len(todo)
    return stats

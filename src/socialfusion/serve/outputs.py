"""The files `socialfusion predict` writes into --out, streamed as results come (memory stays flat over any run).

* predictions.jsonl: one JSON object a line (an image, or a clip's frame); the schema is in docs/USAGE.md.
* gaze_heatmaps.npy: every gaze heatmap of the run, float32 (N, 64, 64), in the order written; each gaze answer
  names its row as `"heatmap_file": "gaze_heatmaps.npy", "heatmap_index": k` (`numpy.load(path, mmap_mode="r")[k]`).
* vis/: overlays (PNG per image, MP4 per clip) with --visualize.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

HEATMAPS = "gaze_heatmaps.npy"


class NpyAppender:
    """Arrays of one shape appended to a .npy file as they come. The header is written with room for any row
    count and rewritten in place on `close`, so the file never holds more than the rows written and is a valid
    .npy (format 1.0) readable by numpy.load, memory-mapped or not."""

    HEADER_BYTES = 128  # magic (6) + version (2) + length (2) + the padded dict; a multiple of 64, as numpy aligns

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype=np.float32):
        self.path, self.row_shape, self.dtype = Path(path), tuple(row_shape), np.dtype(dtype)
        self.rows = 0
        self._fh = open(self.path, "wb")
        self._write_header()

    def _write_header(self) -> None:
        header = repr({"descr": self.dtype.str, "fortran_order": False, "shape": (self.rows, *self.row_shape)})
        text = header.ljust(self.HEADER_BYTES - 10 - 1) + "\n"
        self._fh.seek(0)
        self._fh.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1"))
        self._fh.seek(0, 2)

    def append(self, array) -> int:
        """Write one row; returns its index."""
        row = np.ascontiguousarray(array, dtype=self.dtype)
        if row.shape != self.row_shape:
            raise ValueError(f"row of shape {row.shape}, expected {self.row_shape}")
        self._fh.write(row.tobytes())
        self.rows += 1
        return self.rows - 1

    def close(self) -> None:
        if not self._fh.closed:
            self._write_header()
            self._fh.close()


class Outputs:
    """predictions.jsonl, gaze_heatmaps.npy (created at the first heatmap) and unique names under vis/."""

    def __init__(self, out: Path, visualize: bool):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.vis = self.out / "vis"
        if visualize:
            self.vis.mkdir(exist_ok=True)
        self._jsonl = open(self.out / "predictions.jsonl", "w", encoding="utf-8")
        self._heatmaps: NpyAppender | None = None
        self._names: set[str] = set()

    def store_heatmaps(self, tasks: dict) -> dict:
        """`tasks` (one image's or track's answers) with each heatmap array written out and replaced by its
        reference (file and row)."""
        out = {}
        for name, answer in tasks.items():
            if "heatmap" in answer:
                answer = dict(answer)
                heat = np.asarray(answer.pop("heatmap"), dtype=np.float32)
                if self._heatmaps is None:
                    self._heatmaps = NpyAppender(self.out / HEATMAPS, heat.shape)
                answer["heatmap_file"], answer["heatmap_index"] = HEATMAPS, self._heatmaps.append(heat)
            out[name] = answer
        return out

    def write(self, row: dict) -> None:
        self._jsonl.write(json.dumps(row, allow_nan=False) + "\n")

    def vis_path(self, given: str, suffix: str) -> Path:
        """vis/<stem><suffix>, numbered when two inputs share a stem."""
        stem = Path(given).stem or "input"
        name, k = f"{stem}{suffix}", 1
        while name in self._names:
            k += 1
            name = f"{stem}-{k}{suffix}"
        self._names.add(name)
        return self.vis / name

    @property
    def heatmap_rows(self) -> int:
        return self._heatmaps.rows if self._heatmaps else 0

    def close(self) -> None:
        self._jsonl.close()
        if self._heatmaps is not None:
            self._heatmaps.close()


class VideoWriter:
    """An H.264 MP4 (yuv420p, what every player reads) written frame by frame with PyAV; opened at the first
    frame, whose size every later frame must have."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = Path(path), fps
        self._container = self._stream = None
        self.frames = 0

    def add(self, image) -> None:
        from fractions import Fraction

        import av

        if self._container is None:
            self._container = av.open(str(self.path), mode="w")
            self._stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.width, self._stream.height = image.size
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": "23", "preset": "veryfast"}
        for packet in self._stream.encode(av.VideoFrame.from_image(image)):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None

"""Linking one kind of box across the frames of a clip into tracks: greedy IoU matching, no motion model.

The rule (docs/USAGE.md, "Clips"): at each sampled frame, every live track of a kind is compared with every new box
of that kind by IoU (intersection over union) against the track's box in the last frame it was seen. Pairs are
taken greedily, highest IoU first (ties: the older track, then the better-scoring box), and a pair links only at
IoU >= `iou_min` (0.3). A box left over starts a new track; a track that found no box for more than `max_gap`
sampled frames (2) ends, and its id is never reused. Ids count from 1 in order of first appearance, per clip.

This is the IoU tracker of Bochinski, Eiselein and Sikora (AVSS 2017), which links detections by overlap alone;
it needs no image features and no extra dependency. Its limit: a box that moves by more than about half its size
between two sampled frames (a fast walker at a low --fps, two people crossing) starts a new track, so a person
may hold several ids over a clip. A higher --fps keeps consecutive boxes overlapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IOU_MIN = 0.3
MAX_GAP = 2


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in `a` (n, 4) against every box in `b` (m, 4), xyxy -> (n, m)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


@dataclass
class _Track:
    id: int
    box: tuple[float, float, float, float]
    last_frame: int


@dataclass
class IouTracker:
    """Tracks of one clip, every kind kept apart; `update` once per sampled frame, in order."""

    iou_min: float = IOU_MIN
    max_gap: int = MAX_GAP
    _live: dict[str, list[_Track]] = field(default_factory=dict)
    _next_id: int = 1

    def update(self, frame: int, kind: str, boxes: list, scores: list | None = None) -> list[int]:
        """The track id of each box (normalised xyxy) of `kind` found in `frame`, in the order given."""
        scores = list(scores) if scores is not None else [0.0] * len(boxes)
        live = [t for t in self._live.get(kind, []) if frame - t.last_frame <= self.max_gap + 1]
        ids: list[int | None] = [None] * len(boxes)
        if live and boxes:
            iou = iou_matrix([t.box for t in live], boxes)
            # every candidate pair, best first: highest IoU, then the older track, then the better box
            pairs = sorted(
                ((iou[i, j], i, j) for i in range(len(live)) for j in range(len(boxes)) if iou[i, j] >= self.iou_min),
                key=lambda p: (-p[0], live[p[1]].id, -scores[p[2]]),
            )
            used_tracks: set[int] = set()
            for _, i, j in pairs:
                if i in used_tracks or ids[j] is not None:
                    continue
                used_tracks.add(i)
                ids[j] = live[i].id
                live[i].box, live[i].last_frame = tuple(boxes[j]), frame
        for j, box in enumerate(boxes):
            if ids[j] is None:
                live.append(_Track(self._next_id, tuple(box), frame))
                ids[j] = self._next_id
                self._next_id += 1
        self._live[kind] = live
        return [int(i) for i in ids]

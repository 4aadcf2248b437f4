"""A selection split carved from a training split: the split named "holdout".

Ego4D LAM and AffectNet publish no test labels (papers report on the official val), and GazeFollow has no val, so
a study selects (early stopping, checkpoints/best, the probes' regularisation) on part of train and reports on the
official split. Whole groups move together, so nothing in the selection split shares a clip (Ego4D), a user
(HaGRID) or an image (every face, head or pair annotated on it) with the training split: the group is
`meta["group"]` where the adapter sets one, else the image path.

Which groups: the `round(fraction x groups)` (at least 1, at most all but 1) whose SHA-1 of "holdout:<group>" is
smallest. That is a seeded shuffle with the seed fixed in the string, so every run, seed and process of a study
carves the same split, whatever order the adapter reads the records in.
"""

from __future__ import annotations

import hashlib

from ..core.schema import DataError, Sample

HOLDOUT = "holdout"


def group_of(sample: Sample) -> str:
    return str(sample.meta.get("group") or f"image:{sample.image}")


def _rank(group: str) -> bytes:
    return hashlib.sha1(f"holdout:{group}".encode()).digest()


def held_out_groups(samples: list[Sample], fraction: float, where: str) -> set[str]:
    groups = sorted({group_of(s) for s in samples}, key=_rank)
    if len(groups) < 2:
        raise DataError(
            f"{where}: a holdout split needs at least 2 groups (clips, "
            f"users or images) in the training split, found {len(groups)}"
        )
    count = min(len(groups) - 1, max(1, round(fraction * len(groups))))
    return set(groups[:count])


def carve(read: list[Sample], kept: list[Sample], fraction: float, side: str, where: str) -> list[Sample]:
    """The `kept` samples of `side`: "holdout" (the held-out groups) or "train" (the rest). The groups are drawn
    from every record the adapter `read`, so both sides see the same draw whichever records each one drops."""
    held = held_out_groups(read, fraction, where)
    keep_held = side == HOLDOUT
    return [s for s in kept if (group_of(s) in held) == keep_held]

"""Run a SocialFusion model on your own images: boxes in, labels and gaze heatmaps out.

    from socialfusion.api import SocialFusion

    sf = SocialFusion.from_pretrained("runs/joint/checkpoint")       # or a preset name, e.g. "tiny"
    sf.card_summary                                                  # what the checkpoint learned from, one line
    [result] = sf.predict("photo.jpg", boxes=[{"xyxy": [120, 40, 210, 150], "kind": "face"},
                                              {"xyxy": [300, 220, 360, 290], "kind": "hand"}], tasks="all")
    result["tasks"]["lam"]["label"], result["tasks"]["gesture"]["label"]

Images: a path, a PIL image, a numpy array (H x W x 3, H x W or H x W x 4; uint8, or floats in [0, 1]), raw
encoded bytes, or a list of them. Paths and bytes are loaded upright (EXIF orientation applied) as 8-bit RGB;
PIL images and arrays are used as they are.

Boxes, per image: a list of ``{"xyxy": [x1, y1, x2, y2], "kind": "face", "role": 0, "normalized": bool}``.
Without ``normalized``, a box is in pixels when any coordinate is > 1 and normalised otherwise.
``kind`` (face, hand, head, person) says what the box marks; each task reads the kind its dataset annotates
(`Task.box_kinds`: lam and expression a face, gesture a hand or both hands, gaze a head, relation two persons),
so one call can carry a face, a hand, a head and a pair of persons, and a task whose kind is missing is skipped
with the reason ("no hand box"), never run on another box. Of several person boxes, relation takes the two whose
``role`` is 0 and 1, or the two listed when there are exactly two.
Boxes without ``kind`` (the older form) are read by role, 0 the subject and 1 the second person, and only where
that is unambiguous: when every requested task takes the same kinds of box (a single task, or lam with
expression); otherwise BoxError asks for kinds. One image's boxes either all have a kind or none does.
Without boxes, the whole image is the box of each single-box task (a crop of a face, a hand or a head) and
relation is skipped (it needs two people). With ``detect=True`` an image without boxes gets them from
`socialfusion.detect` (the optional ``detect`` extra; docs/DETECTION.md): the largest face, the head made from it,
the best hand and the two largest persons, each with its "score" and "source": "detected"; a task whose kind was
not found is skipped ("no hand box"), and a note says what was found; the result's "detections" lists every
detection, those no task reads included.

Clips: `predict_video(clip, tasks, fps)` runs a video file or a folder of frames through detection, IoU tracks and
every task per track and frame (`socialfusion.clips`). `threads` (from_pretrained): the process's CPU threads.

All tasks asked for one batch of images share one encoder pass, and the tasks that use the same boxes share one
decoder pass (`SocialFusionModel.infer_tasks`).

Result per image: {"image": path or None, "width", "height", "boxes": [{"xyxy" (pixels), "xyxy_normalized",
"kind", "role", "source": "given" | "detected" | "whole_image"}], "detections": None or every detection,
"notes": [...], "model_card": the checkpoint's one-line
summary, "warning": None or why not to trust the answers (an untrained preset, a task this checkpoint never
trained), "tasks": {name: ...}} where a classification task gives {"label", "probs": {class: p}} (probabilities
sum to 1), gaze gives {"heatmap": 64x64 float32 numpy array summing to 1, "point": [x, y] in image pixels,
"point_normalized", "inout": in-frame probability or None, "head_center"}; the point is the heatmap argmax at
(col / 64 * W, row / 64 * H), the GazeFollow evaluation convention. Each task's answer names the boxes it read
("boxes": indices into the result's "boxes"). A task that cannot run on an image's boxes gives {"skipped": "why"}.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import split_list
from .data.adapters._boxes import UnusableBox, clip_to_image
from .data.images import load_image_bytes
from .errors import UserError
from .tasks.base import BOX_KINDS

MAX_BOXES = 64  # per image; more is certainly a mistake (and memory grows with it)
MAX_ROLE = 15


class UntrainedModelWarning(UserWarning):
    """A preset (not a trained checkpoint) was loaded for prediction: its answers carry no information."""


class PredictInputError(UserError, ValueError):
    """Input a caller got wrong (boxes, tasks, image arrays); the message says what and where."""


class BoxError(PredictInputError):
    pass


class TaskError(PredictInputError):
    pass


# ---------------------------------------------------------------------------------------------- images


def _array_to_image(array: np.ndarray, name: str):
    from PIL import Image

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise PredictInputError(f"{name}: an image array must be H x W, H x W x 3 or H x W x 4, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise PredictInputError(f"{name}: the image array is empty (shape {a.shape})")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        finite = np.nan_to_num(a.astype(np.float64))
        scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0  # floats in [0, 1] are the common convention
        a = np.clip(np.rint(finite * scale), 0, 255).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        if a.dtype != np.uint8:
            if a.min(initial=0) < 0 or a.max(initial=0) > 255:
                raise PredictInputError(f"{name}: integer image values must lie in 0..255 (dtype {a.dtype})")
            a = a.astype(np.uint8)
    else:
        raise PredictInputError(f"{name}: unsupported image array dtype {a.dtype}")
    image = Image.fromarray(np.ascontiguousarray(a))
    if image.mode == "RGBA":
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


def to_pil(image: Any, name: str = "image"):
    """Any supported image input -> 8-bit RGB PIL image (see the module docstring)."""
    from PIL import Image

    from .data.images import _to_rgb, load_image

    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return load_image_bytes(bytes(image), name)
    if isinstance(image, Image.Image):
        w, h = image.size
        if w <= 0 or h <= 0:
            raise PredictInputError(f"{name}: the image has an empty size {w}x{h}")
        return image if image.mode == "RGB" else _to_rgb(image)
    if isinstance(image, np.ndarray):
        return _array_to_image(image, name)
    if isinstance(image, torch.Tensor):
        raise PredictInputError(f"{name}: pass a numpy array (H x W x 3) or a PIL image, not a torch tensor")
    raise PredictInputError(
        f"{name}: unsupported image type {type(image).__name__} (a path, PIL image, numpy array or bytes)"
    )


# ---------------------------------------------------------------------------------------------- boxes


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BoxError(f"{where}: coordinates must be numbers, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise BoxError(f"{where}: coordinates must be finite, got {value!r}")
    return v


def parse_box(box: Any, size: tuple[int, int], where: str = "box") -> dict:
    """One user box -> {"xyxy": pixel coords, "xyxy_normalized": [0, 1] coords, "kind": str | None, "role": int |
    None}; BoxError if wrong. A box without kind has role 0 unless it says otherwise; a kinded one keeps the role
    it gives (None: not given)."""
    if not isinstance(box, dict):
        raise BoxError(
            f"{where}: a box is an object {{'xyxy': [x1, y1, x2, y2], 'kind': 'face'}}, got {type(box).__name__}"
        )
    unknown = set(box) - {"xyxy", "kind", "role", "normalized", "label"}
    if unknown:
        raise BoxError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: xyxy, kind, role, normalized)")
    kind = box.get("kind")
    if kind is not None and kind not in BOX_KINDS:
        raise BoxError(f"{where}: 'kind' must be one of {', '.join(BOX_KINDS)}, got {kind!r}")
    xyxy = box.get("xyxy")
    if not isinstance(xyxy, (list, tuple, np.ndarray)) or len(xyxy) != 4:
        raise BoxError(f"{where}: 'xyxy' must be a list of 4 numbers [x1, y1, x2, y2], got {xyxy!r}")
    x1, y1, x2, y2 = (_number(v, where) for v in xyxy)
    role = box.get("role", None if kind else 0)
    if role is not None and (
        isinstance(role, bool) or not isinstance(role, (int, np.integer)) or not 0 <= int(role) <= MAX_ROLE
    ):
        raise BoxError(
            f"{where}: 'role' must be an integer 0..{MAX_ROLE} (0 = subject, 1 = second person), got {role!r}"
        )
    normalized = box.get("normalized")
    if normalized is None:
        normalized = max(x1, y1, x2, y2) <= 1.0
    elif not isinstance(normalized, bool):
        raise BoxError(f"{where}: 'normalized' must be true or false, got {normalized!r}")
    if x2 < x1 or y2 < y1:
        raise BoxError(f"{where}: impossible box {[x1, y1, x2, y2]}: needs x1 <= x2 and y1 <= y2")
    w, h = size
    limit = (1.0, 1.0) if normalized else (float(w), float(h))
    unit = "normalised" if normalized else f"pixel (image is {w}x{h})"
    try:  # a box slightly past the border is clipped (and says so); one further out, or wholly outside, is refused
        clipped_box, clipped = clip_to_image([x1, y1, x2, y2], *limit)
    except UnusableBox as err:
        raise BoxError(f"{where}: box {[x1, y1, x2, y2]} in {unit} coordinates: {err}") from None
    n = list(clipped_box)
    out = {
        "xyxy": [n[0] * w, n[1] * h, n[2] * w, n[3] * h],
        "xyxy_normalized": n,
        "kind": kind,
        "role": None if role is None else int(role),
    }
    return {**out, "clipped": True} if clipped else out


def parse_boxes(boxes: Any, size: tuple[int, int], where: str = "image") -> list[dict]:
    if boxes is None:
        return []
    if isinstance(boxes, dict):
        boxes = [boxes]
    if not isinstance(boxes, (list, tuple)):
        raise BoxError(f"{where}: boxes must be a list of box objects, got {type(boxes).__name__}")
    if len(boxes) > MAX_BOXES:
        raise BoxError(f"{where}: {len(boxes)} boxes; at most {MAX_BOXES} per image")
    parsed = [parse_box(b, size, f"{where}, box {i}") for i, b in enumerate(boxes)]
    kinded = [b["kind"] is not None for b in parsed]
    if any(kinded) and not all(kinded):
        i = kinded.index(False)
        raise BoxError(
            f"{where}, box {i}: no 'kind' while other boxes have one; give every box a kind ({', '.join(BOX_KINDS)})"
        )
    return parsed


# ---------------------------------------------------------------------------------------------- the predictor


def _roles_needed(task) -> list[int]:
    return list(range(max(1, int(getattr(task, "num_roles", 1)))))


def _kinds_text(task) -> str:
    return " + ".join(task.box_kinds) if task.box_kinds else "untagged boxes"


def _by_role(task, boxes: list[dict]) -> tuple[list[tuple[int, int]] | None, str | None]:
    """Untagged boxes (the older form): role r of the task reads the boxes of role r."""
    needed = _roles_needed(task)
    chosen = [(i, b["role"]) for i, b in enumerate(boxes) if b["role"] in needed]
    missing = [r for r in needed if not any(role == r for _, role in chosen)]
    if missing:
        if len(needed) > 1:
            return None, f"{task.name} needs {len(needed)} boxes, one per role {needed} (roles missing: {missing})"
        return None, f"{task.name} needs a role-{needed[0]} box"
    return chosen, None


def _by_kind(task, boxes: list[dict]) -> tuple[list[tuple[int, int]] | None, str | None]:
    """Kinded boxes: role r of the task reads the boxes of kind `task.box_kinds[r]`. A kind that fills one role
    takes every box of that kind (both hands of a gesture); a kind that fills several (relation's two persons)
    needs one box per role, by the boxes' own roles or, with exactly that many boxes, in the order given."""
    if not task.box_kinds:
        return None, f"{task.name} declares no box kind (Task.box_kinds): send it boxes without 'kind'"
    chosen: list[tuple[int, int]] = []
    for kind in dict.fromkeys(task.box_kinds):
        slots = [r for r, k in enumerate(task.box_kinds) if k == kind]
        found = [i for i, b in enumerate(boxes) if b["kind"] == kind]
        if not found:
            return None, f"no {kind} box" if len(slots) == 1 else f"no {kind} boxes ({task.name} needs {len(slots)})"
        if len(slots) == 1:
            chosen += [(i, slots[0]) for i in found]
            continue
        with_role = [i for i in found if boxes[i]["role"] is not None and boxes[i]["role"] < len(slots)]
        if with_role:
            roles = sorted(boxes[i]["role"] for i in with_role)
            if roles != list(range(len(slots))):
                return (
                    None,
                    f"{task.name} needs one {kind} box per role 0..{len(slots) - 1}; the roles given are {roles}",
                )
            chosen += [(i, slots[boxes[i]["role"]]) for i in with_role]
        elif len(found) == len(slots):
            chosen += [(i, slot) for i, slot in zip(found, slots)]
        else:
            return None, (
                f"{task.name} needs {len(slots)} {kind} boxes and {len(found)} were given: mark the pair with "
                f"'role' 0 and 1"
            )
    return chosen, None


class _DetectedBoxes(list):
    """An image's boxes found by detection; empty means nothing was found, not "use the whole image"."""


def _detected_boxes(pil, threads: int | None = None) -> tuple[_DetectedBoxes, str, list[dict]]:
    """The boxes the tasks read, the note saying what was found, and every detection (`detect.listing`)."""
    from . import detect as detection  # the optional extra: loaded only when asked for

    found = detection.detect(pil, threads=threads)
    boxes, note = detection.boxes_for_tasks(found, pil.size)
    return _DetectedBoxes(boxes), note, detection.listing(found, boxes, pil.size)


class SocialFusion:
    """A trained (or preset) SocialFusion model ready for inference; thread-safe (calls are serialised).

    `card` is the checkpoint's model card (`models.card`): `card_summary` its one line, `warning` set when the
    answers are not to be trusted at all (an untrained preset)."""

    def __init__(
        self,
        model,
        config=None,
        device: str | torch.device = "auto",
        precision: str = "auto",
        name: str | None = None,
        card: dict | None = None,
        threads: int | str | None = "auto",
    ):
        from .models.card import NO_CARD
        from .runtime import resolve_device, set_threads

        # torch's CPU threads are per process: "auto" is half the cores (1 on 2 cores), measured in docs/USAGE.md
        self.threads = set_threads(threads)
        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.precision = precision
        self.name = name or (getattr(config, "name", None) if config is not None else None) or "socialfusion"
        self.card = card
        self.card_summary = card["summary"] if card else NO_CARD
        self.warning = card["summary"] if card and card.get("trained") is False else None
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        path_or_preset: str | Path,
        device: str = "auto",
        precision: str = "auto",
        threads: int | str | None = "auto",
    ) -> SocialFusion:
        """A checkpoint directory (`load_model`) or a preset name / YAML config (random init where it says so);
        either model type (`model.type`: socialfusion or a VLM baseline) through the one factory. A preset warns
        (UntrainedModelWarning), and every answer it gives carries that warning. `threads`: torch's (and the
        detectors') CPU threads for this process: a count, "auto" (half the cores, at least 1) or None (unchanged)."""
        import warnings

        from .config import load_config
        from .models.card import read_card, untrained_card
        from .models.checkpoint import load_model
        from .models.factory import build_model
        from .runtime import set_threads
        from .tasks import tasks_from_config

        set_threads(threads)  # before loading: the load itself computes

        path = Path(path_or_preset)
        # a directory, or a path that is no preset or YAML: a checkpoint (load_model says what is wrong with it)
        if path.is_dir() or (len(path.parts) > 1 and path.suffix not in (".yaml", ".yml")):
            model, config = load_model(path)
            return cls(
                model, config, device=device, precision=precision, name=str(path), card=read_card(path), threads=threads
            )
        config = load_config(str(path_or_preset))
        model = build_model(config.model, tasks=tasks_from_config(config))
        card = untrained_card(config)
        warnings.warn(card["summary"], UntrainedModelWarning, stacklevel=2)
        return cls(model, config, device=device, precision=precision, name=config.name, card=card, threads=threads)

    # ------------------------------------------------------------------ tasks

    @property
    def task_names(self) -> list[str]:
        return list(self.model.tasks)

    def describe_tasks(self) -> list[dict]:
        out = []
        for task in self.model.tasks.values():
            d = task.describe()
            out.append(
                {
                    "name": d["name"],
                    "kind": d["kind"],
                    "classes": d["classes"],
                    "roles": _roles_needed(task),
                    "box_kinds": list(task.box_kinds),
                    "output": "label" if d["classes"] else "heatmap",
                    "instruction": task.instruction().replace("<image>\n", ""),
                }
            )
        return out

    def resolve_tasks(self, tasks: str | Iterable[str] = "all") -> list[str]:
        if tasks is None or (isinstance(tasks, str) and tasks.strip().lower() == "all"):
            return self.task_names
        if isinstance(tasks, str):
            tasks = split_list(tasks) or []
        names = []
        for t in tasks:
            if not isinstance(t, str):
                raise TaskError(f"task names are strings, got {t!r}")
            t = t.strip()
            if t.lower() == "all":
                return self.task_names
            if t not in self.model.tasks:
                raise TaskError(f"unknown task {t!r} (known: {', '.join(self.task_names)})")
            if t not in names:
                names.append(t)
        if not names:
            raise TaskError(f"no task given (use 'all' or some of: {', '.join(self.task_names)})")
        return names

    def _warning(self, names: list[str]) -> str | None:
        """Why the answers for `names` are not to be trusted, if they are not: an untrained preset, or tasks the
        checkpoint's card says were never trained."""
        if self.warning:
            return self.warning
        untrained = [n for n in names if n in ((self.card or {}).get("untrained_tasks") or [])]
        if untrained:
            return f"not trained in this checkpoint: {', '.join(untrained)} (answers from untrained weights)"
        return None

    def check_untagged_boxes(self, boxes: list[dict], names: list[str], where: str) -> None:
        """Boxes without a kind are read by role, which is only unambiguous when the requested tasks all take the
        same kinds of box; BoxError otherwise."""
        if not boxes or boxes[0]["kind"] is not None:
            return
        kinds = {n: self.model.tasks[n].box_kinds for n in names if self.model.tasks[n].box_kinds}
        if len(set(kinds.values())) > 1:
            wants = ", ".join(f"{n} takes {' + '.join(k)}" for n, k in kinds.items())
            raise BoxError(
                f"{where}: boxes without 'kind' are ambiguous for these tasks ({wants}); give every box a kind "
                f"({', '.join(BOX_KINDS)})"
            )

    # ------------------------------------------------------------------ prediction

    def predict(
        self,
        images: Any,
        boxes: Any = None,
        tasks: str | Iterable[str] = "all",
        batch_size: int = 8,
        detect: bool = False,
    ) -> list[dict]:
        """One result dict per image (see the module docstring); raises PredictInputError / ImageError on bad input.
        `detect`: find the boxes of images given none (DetectorUnavailable if the extra is not installed)."""
        single = not isinstance(images, (list, tuple))
        image_list = [images] if single else list(images)
        if single:
            box_list = [boxes]
        elif boxes is None:
            box_list = [None] * len(image_list)
        else:
            if not isinstance(boxes, (list, tuple)) or len(boxes) != len(image_list):
                raise BoxError(
                    f"with {len(image_list)} images, boxes must be a list of {len(image_list)} box lists (or None)"
                )
            box_list = list(boxes)
        names = self.resolve_tasks(tasks)
        if batch_size < 1:
            raise PredictInputError(f"batch_size must be >= 1, got {batch_size}")
        # load and check everything first: a bad input fails before any compute
        pils, parsed, labels, found = [], [], [], []
        for i, (image, b) in enumerate(zip(image_list, box_list)):
            label = str(image) if isinstance(image, (str, Path)) else f"image {i}"
            pil = to_pil(image, label)
            pils.append(pil)
            parsed.append(parse_boxes(b, pil.size, label))
            found.append(_detected_boxes(pil, self.threads) if detect and not parsed[-1] else None)
            if found[-1] is not None:
                parsed[-1] = found[-1][0]
            self.check_untagged_boxes(parsed[-1], names, label)
            labels.append(str(image) if isinstance(image, (str, Path)) else None)
        results = []
        for start in range(0, len(pils), batch_size):
            results.extend(
                self._predict_batch(pils[start : start + batch_size], parsed[start : start + batch_size], names)
            )
        for r, det in zip(results, found):
            r["detections"] = None if det is None else det[2]
            if det is not None:
                r["notes"].append(det[1])
            if det is not None and not det[0]:  # nothing found: no task has its box (and no whole-image fallback)
                r["tasks"] = {name: {"skipped": "detection found no face, head, hand or person"} for name in r["tasks"]}
        warning = self._warning(names)
        for r, label, bxs in zip(results, labels, parsed):
            if label is not None:
                r["image"] = label
            r["model_card"], r["warning"] = self.card_summary, warning
            clipped = [i for i, b in enumerate(bxs) if b.get("clipped")]
            if clipped:
                r["notes"].append(f"box(es) {clipped} extended slightly past the image border and were clipped to it")
        return results

    def predict_video(
        self,
        clip: str | Path | list,
        tasks: str | Iterable[str] = "all",
        fps: float = 2.0,
        on_frame=None,
        progress: bool = False,
    ) -> dict | list[dict]:
        """A clip (video file or folder of frames; a list of them gives a list) sampled at `fps`: detection per
        frame, boxes linked into tracks, every task per track and frame. Returns the clip's summary (per track:
        frames seen, label fractions, the dominant label, gaze targets) with "rows", the per-frame rows, unless
        `on_frame(row, image)` takes each row as it comes (constant memory). See `socialfusion.clips`."""
        from .clips import predict_clip

        if isinstance(clip, (list, tuple)):
            return [self.predict_video(c, tasks, fps, on_frame, progress) for c in clip]
        return predict_clip(
            self, clip, tasks=tasks, fps=fps, on_frame=on_frame, progress=progress, threads=self.threads
        )

    def _task_boxes(self, task, boxes: list[dict]) -> tuple[list[dict] | None, str | None]:
        """The boxes `task` reads among an image's boxes, each with the role the task gives it (and its index in the
        result's boxes), or None and why not."""
        if boxes and boxes[0]["source"] == "whole_image":
            if len(_roles_needed(task)) > 1:
                return None, f"{task.name} needs {len(_roles_needed(task))} boxes ({_kinds_text(task)}), one per role"
            pairs, why = [(0, 0)], None
        elif boxes and boxes[0]["kind"] is not None:
            pairs, why = _by_kind(task, boxes)
        else:
            pairs, why = _by_role(task, boxes)
        if pairs is None:
            return None, why
        return [
            {"xyxy": boxes[i]["xyxy"], "xyxy_normalized": boxes[i]["xyxy_normalized"], "role": role, "index": i}
            for i, role in pairs
        ], None

    def _predict_batch(self, pils: list, boxes: list[list[dict]], names: list[str]) -> list[dict]:
        from .data.pipeline import collate
        from .data.schema import Box, Sample
        from .runtime import autocast

        results = []
        for pil, bxs in zip(pils, boxes):
            w, h = pil.size
            used = [{"source": "given", **b} for b in bxs]
            notes = []
            if not used and not isinstance(bxs, _DetectedBoxes):
                used = [
                    {
                        "xyxy": [0.0, 0.0, float(w), float(h)],
                        "xyxy_normalized": [0.0, 0.0, 1.0, 1.0],
                        "kind": None,
                        "role": 0,
                        "source": "whole_image",
                    }
                ]
                notes.append(
                    "no boxes given: the whole image is the box of each "
                    "single-box task (a crop of a face, hand or head)"
                )
            results.append({"image": None, "width": w, "height": h, "tasks": {}, "boxes": used, "notes": notes})
        # tasks that run on the same rows with the same boxes (lam and expression both read the face) form one
        # group: one batch, one `infer_tasks` call sharing the [text + image] prefix
        groups: dict[tuple, tuple[list[int], list[list[dict]], list[str]]] = {}
        for name in names:
            rows, row_boxes = [], []
            for i, r in enumerate(results):
                chosen, why = self._task_boxes(self.model.tasks[name], r["boxes"])
                if chosen is None:
                    r["tasks"][name] = {"skipped": why}
                else:
                    rows.append(i)
                    row_boxes.append(chosen)
            if rows:
                key = (
                    tuple(rows),
                    tuple(tuple((tuple(b["xyxy_normalized"]), b["role"]) for b in c) for c in row_boxes),
                )
                groups.setdefault(key, (rows, row_boxes, []))[2].append(name)
        model, images = self.model, self.model.image_input
        # the same image object given several times (a video frame, once per tracked person) is encoded once
        unique = list({id(p): p for p in pils}.values())
        slot = {id(p): k for k, p in enumerate(unique)}
        with self._lock, torch.no_grad(), autocast(self.device, self.precision):
            # one image pass for every task of this batch, unless the model draws the boxes into the pixels
            shared = (
                None
                if images.wants_boxes
                else model.prepare_inputs({"pixel_values": images.preprocess(unique).to(self.device)})
            )
            for rows, row_boxes, group in groups.values():
                items = []
                for i, chosen in zip(rows, row_boxes):
                    sample = Sample(
                        id=str(i),
                        task=group[0],
                        image="",
                        boxes=[Box(tuple(b["xyxy_normalized"]), b["role"]) for b in chosen],
                    )
                    item = {"sample": sample, "image_size": pils[i].size}
                    if shared is None:
                        item["pixel_values"] = images.preprocess([pils[i]], boxes=[sample.boxes])[0]
                    else:
                        item.update(
                            {k: shared[k][slot[id(pils[i])]] for k in ("pixel_values", "features") if k in shared}
                        )
                    items.append(item)
                predictions = model.predict(collate(items, model.tasks[group[0]]), group)
                for name in group:
                    for j, (i, pred) in enumerate(zip(rows, predictions[name])):
                        r = results[i]
                        answer = model.tasks[name].present(pred, r["width"], r["height"], row_boxes[j])
                        r["tasks"][name] = {**answer, "boxes": sorted({b["index"] for b in row_boxes[j]})}
        for r in results:  # the order the tasks were asked in, whatever the grouping
            r["tasks"] = {name: r["tasks"][name] for name in names}
        return results


PIXEL_DECIMALS = 2  # 1/100 pixel: finer than any box or point means, and no 505.00000000000006


def _normalized_decimals(width: int, height: int) -> int:
    """Decimals of a normalised coordinate that resolve 1/100 pixel of the image's longer side (5 for 640 px)."""
    return PIXEL_DECIMALS + max(1, math.ceil(math.log10(max(width, height, 1))))


def _rounded(values, decimals: int) -> list[float]:
    return [round(float(v), decimals) for v in values]


def _round_boxes(boxes: list[dict] | None, nd: int) -> list[dict] | None:
    if boxes is None:
        return None
    return [
        {**b, "xyxy": _rounded(b["xyxy"], PIXEL_DECIMALS), "xyxy_normalized": _rounded(b["xyxy_normalized"], nd)}
        for b in boxes
    ]


def result_to_json(result: dict, heatmap: str = "list", decimals: int = 4) -> dict:
    """A predict() result as JSON-ready data. heatmap: "list" (64 x 64 nested lists rounded) or "omit". Pixel
    coordinates (boxes, gaze point and head centre) are rounded to 1/100 pixel, normalised ones to the same
    resolution of the image's longer side."""
    out = {k: v for k, v in result.items() if k != "tasks"}
    nd = _normalized_decimals(result["width"], result["height"])
    out["boxes"] = _round_boxes(result["boxes"], nd)
    if "detections" in result:
        out["detections"] = _round_boxes(result["detections"], nd)
    out["tasks"] = {}
    for name, t in result["tasks"].items():
        t = dict(t)
        for key, places in (("point", PIXEL_DECIMALS), ("head_center", PIXEL_DECIMALS), ("point_normalized", nd)):
            if t.get(key) is not None:
                t[key] = _rounded(t[key], places)
        if "heatmap" in t:
            if heatmap == "omit":
                del t["heatmap"]
            else:
                t["heatmap"] = np.round(np.asarray(t["heatmap"], dtype=np.float64), decimals).tolist()
        out["tasks"][name] = t
    return out

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

# parse_box(es), MAX_BOXES and BOX_KINDS: re-exported, part of this module's interface
from .boxes import (
    MAX_BOXES as MAX_BOXES,
    BoxError,
    PredictInputError,
    check_untagged_boxes,
    detected_boxes,
    image_boxes,
    parse_box as parse_box,
    parse_boxes as parse_boxes,
    roles_needed,
    task_groups,
)
from .clips import predict_clip
from .config import load_config, split_list
from .core.images import _to_rgb, load_image, load_image_bytes
from .core.schema import Box, Sample
from .data.pipeline import collate
from .models import factory
from .models.card import NO_CARD, read_card, untrained_card
from .models.checkpoint import load_model
from .runtime import autocast, resolve_device, set_threads
from .tasks import tasks_from_config
from .tasks.base import BOX_KINDS as BOX_KINDS


class UntrainedModelWarning(UserWarning):
    """A preset (not a trained checkpoint) was loaded for prediction: its answers carry no information."""


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


# ---------------------------------------------------------------------------------------------- the predictor


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

        set_threads(threads)  # before loading: the load itself computes

        path = Path(path_or_preset)
        # a directory, or a path that is no preset or YAML: a checkpoint (load_model says what is wrong with it)
        if path.is_dir() or (len(path.parts) > 1 and path.suffix not in (".yaml", ".yml")):
            model, config = load_model(path)
            return cls(
                model, config, device=device, precision=precision, name=str(path), card=read_card(path), threads=threads
            )
        config = load_config(str(path_or_preset))
        model = factory.build_model(config.model, tasks=tasks_from_config(config))
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
                    "roles": roles_needed(task),
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
        check_untagged_boxes(self.model.tasks, boxes, names, where)

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
            found.append(detected_boxes(pil, self.threads) if detect and not parsed[-1] else None)
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
        if isinstance(clip, (list, tuple)):
            return [self.predict_video(c, tasks, fps, on_frame, progress) for c in clip]
        return predict_clip(
            self, clip, tasks=tasks, fps=fps, on_frame=on_frame, progress=progress, threads=self.threads
        )

    def _predict_batch(self, pils: list, boxes: list[list[dict]], names: list[str]) -> list[dict]:
        results = []
        for pil, bxs in zip(pils, boxes):
            used, notes = image_boxes(pil.size, bxs)
            results.append(
                {"image": None, "width": pil.width, "height": pil.height, "tasks": {}, "boxes": used, "notes": notes}
            )
        groups = task_groups(self.model.tasks, names, results)
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
            for rows, row_boxes, group in groups:
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

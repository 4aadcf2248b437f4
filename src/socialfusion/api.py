"""Run a SocialFusion model on your own images: boxes in, labels and gaze heatmaps out.

    from socialfusion.api import SocialFusion

    sf = SocialFusion.from_pretrained("runs/joint/checkpoint")       # or a preset name, e.g. "tiny"
    [result] = sf.predict("photo.jpg", boxes=[{"xyxy": [120, 40, 210, 150], "role": 0}], tasks=["lam", "gaze"])
    result["tasks"]["lam"]["label"], result["tasks"]["gaze"]["point"]

Images: a path, a PIL image, a numpy array (H x W x 3, H x W or H x W x 4; uint8, or floats in [0, 1]), raw
encoded bytes, or a list of them. Paths and bytes are loaded upright (EXIF orientation applied) as 8-bit RGB;
PIL images and arrays are used as they are.

Boxes, per image: a list of ``{"xyxy": [x1, y1, x2, y2], "role": 0, "normalized": bool}``. Without
``normalized``, a box is in pixels when any coordinate is > 1 and normalised otherwise. Role 0 is the subject
(the face for lam/expression, the hand(s) for gesture, the head for gaze, the first person for relation); role 1
is the second person for relation. The single-person tasks use the role-0 box(es); relation uses roles 0 and 1.
Without boxes, the whole image is the role-0 box and relation is skipped (it needs two people).

All tasks asked for one batch of images share one encoder pass, and the tasks that use the same boxes share one
decoder pass (`SocialFusionModel.infer_tasks`).

Result per image: {"image": path or None, "width", "height", "boxes": [{"xyxy" (pixels), "xyxy_normalized",
"role", "source": "given" | "whole_image"}], "notes": [...], "tasks": {name: ...}} where a classification task
gives {"label", "probs": {class: p}} (probabilities sum to 1), gaze gives {"heatmap": 64x64 float32 numpy
array summing to 1, "point": [x, y] in image pixels, "point_normalized", "inout": in-frame probability or None,
"head_center"}; the point is the heatmap argmax at (col / 64 * W, row / 64 * H), the GazeFollow evaluation
convention. A task that cannot run on an image's boxes gives {"skipped": "why"}.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from .data.images import ImageError, load_image_bytes

MAX_BOXES = 64  # per image; more is certainly a mistake (and memory grows with it)
MAX_ROLE = 15


class PredictInputError(ValueError):
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
    raise PredictInputError(f"{name}: unsupported image type {type(image).__name__} (a path, PIL image, numpy array or bytes)")


# ---------------------------------------------------------------------------------------------- boxes


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BoxError(f"{where}: coordinates must be numbers, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise BoxError(f"{where}: coordinates must be finite, got {value!r}")
    return v


def parse_box(box: Any, size: tuple[int, int], where: str = "box") -> dict:
    """One user box -> {"xyxy": pixel coords, "xyxy_normalized": [0, 1] coords, "role": int}; BoxError if wrong."""
    if not isinstance(box, dict):
        raise BoxError(f"{where}: a box is an object {{'xyxy': [x1, y1, x2, y2], 'role': 0}}, got {type(box).__name__}")
    unknown = set(box) - {"xyxy", "role", "normalized", "label"}
    if unknown:
        raise BoxError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: xyxy, role, normalized)")
    xyxy = box.get("xyxy")
    if not isinstance(xyxy, (list, tuple, np.ndarray)) or len(xyxy) != 4:
        raise BoxError(f"{where}: 'xyxy' must be a list of 4 numbers [x1, y1, x2, y2], got {xyxy!r}")
    x1, y1, x2, y2 = (_number(v, where) for v in xyxy)
    role = box.get("role", 0)
    if isinstance(role, bool) or not isinstance(role, (int, np.integer)) or not 0 <= int(role) <= MAX_ROLE:
        raise BoxError(f"{where}: 'role' must be an integer 0..{MAX_ROLE} (0 = subject, 1 = second person), got {role!r}")
    normalized = box.get("normalized")
    if normalized is None:
        normalized = max(x1, y1, x2, y2) <= 1.0
    elif not isinstance(normalized, bool):
        raise BoxError(f"{where}: 'normalized' must be true or false, got {normalized!r}")
    if x2 < x1 or y2 < y1:
        raise BoxError(f"{where}: impossible box {[x1, y1, x2, y2]}: needs x1 <= x2 and y1 <= y2")
    w, h = size
    limit = (1.0, 1.0) if normalized else (float(w), float(h))
    eps = 1e-6 if normalized else 1e-3
    unit = "normalised" if normalized else f"pixel (image is {w}x{h})"
    if min(x1, y1) < -eps or x2 > limit[0] + eps or y2 > limit[1] + eps:
        raise BoxError(f"{where}: box {[x1, y1, x2, y2]} lies outside the image in {unit} coordinates")
    if normalized:
        n = [x1, y1, x2, y2]
    else:
        n = [x1 / w, y1 / h, x2 / w, y2 / h]
    n = [min(max(v, 0.0), 1.0) for v in n]
    return {"xyxy": [n[0] * w, n[1] * h, n[2] * w, n[3] * h], "xyxy_normalized": n, "role": int(role)}


def parse_boxes(boxes: Any, size: tuple[int, int], where: str = "image") -> list[dict]:
    if boxes is None:
        return []
    if isinstance(boxes, dict):
        boxes = [boxes]
    if not isinstance(boxes, (list, tuple)):
        raise BoxError(f"{where}: boxes must be a list of box objects, got {type(boxes).__name__}")
    if len(boxes) > MAX_BOXES:
        raise BoxError(f"{where}: {len(boxes)} boxes; at most {MAX_BOXES} per image")
    return [parse_box(b, size, f"{where}, box {i}") for i, b in enumerate(boxes)]


# ---------------------------------------------------------------------------------------------- the predictor


def _roles_needed(task) -> list[int]:
    return list(range(max(1, int(getattr(task, "num_roles", 1)))))


class SocialFusion:
    """A trained (or preset) SocialFusion model ready for inference; thread-safe (calls are serialised)."""

    def __init__(self, model, config=None, device: str | torch.device = "auto", precision: str = "auto", name: str | None = None):
        from .runtime import resolve_device

        self.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.precision = precision
        self.name = name or (getattr(config, "name", None) if config is not None else None) or "socialfusion"
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(cls, path_or_preset: str | Path, device: str = "auto", precision: str = "auto") -> "SocialFusion":
        """A checkpoint directory (`load_model`) or a preset name / YAML config (random init where it says so);
        either model type (`model.type`: socialfusion or a VLM baseline) through the one factory."""
        from .config import load_config
        from .models.checkpoint import load_model
        from .models.factory import build_model
        from .tasks import tasks_from_config

        path = Path(path_or_preset)
        if path.is_dir():
            model, config = load_model(path)
            return cls(model, config, device=device, precision=precision, name=str(path))
        config = load_config(str(path_or_preset))
        model = build_model(config.model, tasks=tasks_from_config(config))
        return cls(model, config, device=device, precision=precision, name=config.name)

    # ------------------------------------------------------------------ tasks

    @property
    def task_names(self) -> list[str]:
        return list(self.model.tasks)

    def describe_tasks(self) -> list[dict]:
        out = []
        for task in self.model.tasks.values():
            d = task.describe()
            out.append({"name": d["name"], "kind": d["kind"], "classes": d["classes"], "roles": _roles_needed(task),
                        "output": "label" if d["classes"] else "heatmap",
                        "instruction": task.instruction().replace("<image>\n", "")})  # fmt: skip
        return out

    def resolve_tasks(self, tasks: str | Iterable[str] = "all") -> list[str]:
        if tasks is None or (isinstance(tasks, str) and tasks.strip().lower() == "all"):
            return self.task_names
        if isinstance(tasks, str):
            tasks = [t for t in (p.strip() for p in tasks.split(",")) if t]
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

    # ------------------------------------------------------------------ prediction

    def predict(self, images: Any, boxes: Any = None, tasks: str | Iterable[str] = "all", batch_size: int = 8) -> list[dict]:
        """One result dict per image (see the module docstring); raises PredictInputError / ImageError on bad input."""
        single = not isinstance(images, (list, tuple))
        image_list = [images] if single else list(images)
        if single:
            box_list = [boxes]
        elif boxes is None:
            box_list = [None] * len(image_list)
        else:
            if not isinstance(boxes, (list, tuple)) or len(boxes) != len(image_list):
                raise BoxError(f"with {len(image_list)} images, boxes must be a list of {len(image_list)} box lists (or None)")
            box_list = list(boxes)
        names = self.resolve_tasks(tasks)
        if batch_size < 1:
            raise PredictInputError(f"batch_size must be >= 1, got {batch_size}")
        # load and check everything first: a bad input fails before any compute
        pils, parsed, labels = [], [], []
        for i, (image, b) in enumerate(zip(image_list, box_list)):
            label = str(image) if isinstance(image, (str, Path)) else f"image {i}"
            pil = to_pil(image, label)
            pils.append(pil)
            parsed.append(parse_boxes(b, pil.size, label))
            labels.append(str(image) if isinstance(image, (str, Path)) else None)
        results = []
        for start in range(0, len(pils), batch_size):
            results.extend(self._predict_batch(pils[start : start + batch_size], parsed[start : start + batch_size], names))
        for r, label in zip(results, labels):
            if label is not None:
                r["image"] = label
        return results

    def _task_boxes(self, task, boxes: list[dict]) -> tuple[list[dict] | None, str | None]:
        needed = _roles_needed(task)
        chosen = [b for b in boxes if b["role"] in needed]
        missing = [r for r in needed if not any(b["role"] == r for b in chosen)]
        if missing:
            if len(needed) > 1:
                why = f"{task.name} needs {len(needed)} boxes, one per role {needed} (roles missing: {missing})"
            else:
                why = f"{task.name} needs a role-{needed[0]} box"
            return None, why
        return chosen, None

    def _predict_batch(self, pils: list, boxes: list[list[dict]], names: list[str]) -> list[dict]:
        from .data.pipeline import collate
        from .data.schema import Box, Sample
        from .runtime import autocast

        results = []
        for pil, bxs in zip(pils, boxes):
            w, h = pil.size
            used = [dict(b, source="given") for b in bxs]
            notes = []
            if not used:
                used = [{"xyxy": [0.0, 0.0, float(w), float(h)], "xyxy_normalized": [0.0, 0.0, 1.0, 1.0], "role": 0, "source": "whole_image"}]
                notes.append("no boxes given: the whole image is the role-0 box")
            results.append({"image": None, "width": w, "height": h, "tasks": {}, "boxes": used, "notes": notes})
        # tasks that run on the same rows with the same boxes (lam, expression, gesture and gaze all use the
        # role-0 boxes) form one group: one batch, one `infer_tasks` call sharing the [text + image] prefix
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
                key = (tuple(rows), tuple(tuple((tuple(b["xyxy_normalized"]), b["role"]) for b in c) for c in row_boxes))
                groups.setdefault(key, (rows, row_boxes, []))[2].append(name)
        model, images = self.model, self.model.image_input
        with self._lock, torch.no_grad(), autocast(self.device, self.precision):
            # one image pass for every task of this batch, unless the model draws the boxes into the pixels
            shared = None if images.wants_boxes else model.prepare_inputs({"pixel_values": images.preprocess(pils).to(self.device)})
            for rows, row_boxes, group in groups.values():
                items = []
                for i, chosen in zip(rows, row_boxes):
                    sample = Sample(id=str(i), task=group[0], image="", boxes=[Box(tuple(b["xyxy_normalized"]), b["role"]) for b in chosen])
                    item = {"sample": sample, "image_size": pils[i].size}
                    if shared is None:
                        item["pixel_values"] = images.preprocess([pils[i]], boxes=[sample.boxes])[0]
                    else:
                        item.update({k: shared[k][i] for k in ("pixel_values", "features") if k in shared})
                    items.append(item)
                predictions = model.predict(collate(items, model.tasks[group[0]]), group)
                for name in group:
                    for j, (i, pred) in enumerate(zip(rows, predictions[name])):
                        r = results[i]
                        r["tasks"][name] = model.tasks[name].present(pred, r["width"], r["height"], row_boxes[j])
        for r in results:  # the order the tasks were asked in, whatever the grouping
            r["tasks"] = {name: r["tasks"][name] for name in names}
        return results


def result_to_json(result: dict, heatmap: str = "list", decimals: int = 4) -> dict:
    """A predict() result as JSON-ready data. heatmap: "list" (64 x 64 nested lists rounded) or "omit"."""
    out = {k: v for k, v in result.items() if k != "tasks"}
    out["tasks"] = {}
    for name, t in result["tasks"].items():
        t = dict(t)
        if "heatmap" in t:
            if heatmap == "omit":
                del t["heatmap"]
            else:
                t["heatmap"] = np.round(np.asarray(t["heatmap"], dtype=np.float64), decimals).tolist()
        out["tasks"][name] = t
    return out


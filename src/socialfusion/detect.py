"""Boxes by kind in a plain photo: faces, heads, hands and persons, from detectors whose weights ship in packages.

The four kinds feed the tasks' boxes: a face box for expression and lam, a head box for gaze, a hand box for
gesture, two person boxes for relation. All detectors are Google's MediaPipe TFLite models (Apache-2.0), read
from the `mediapipe==0.10.21` wheel (installed with --no-deps, only for its model files: the package itself pins
numpy<2) and run by the LiteRT interpreter (`ai-edge-litert`, Apache-2.0), so numpy stays 2.x and nothing else
of MediaPipe is needed. The pre- and post-processing (letterbox, SSD anchors, box decoding, weighted NMS, the
palm-to-hand region) follow MediaPipe's own graphs; docs/DETECTION.md gives the options and why these models.

* face   : BlazeFace full-range (`face_detection_full_range_sparse.tflite`, 192x192; faces from close up to ~5 m).
* head   : the face box enlarged by HEAD_FROM_FACE (no packaged head detector exists; see `head_from_face`).
* hand   : palm detection (192x192), then the hand-landmark model on MediaPipe's rotated palm region: its
           presence score rejects false palms and the 21 landmarks give a tight hand box.
* person : BlazePose's person detector (224x224) gives the circle that holds the whole body; the pose-landmark
           model, run on that region as MediaPipe does, confirms a person and segments them: the box is the
           mask's extent inside the image (the visible body, whatever is cut off by the frame).

Heavy packages are imported lazily; without them `detect` raises DetectorUnavailable naming what to install.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from .core.images import load_image
from .errors import UserError, verbose_requested

KINDS = ("face", "head", "hand", "person")
EXTRA_HINT = "pip install 'socialfusion[detect]' && pip install --no-deps mediapipe==0.10.21"

# Head = face box scaled about its centre by (sx, sy) after moving the centre up by `up` face heights. A face
# detector's box runs from mid-forehead to chin and cheek to cheek; GazeFollow's head boxes (what the gaze task
# learns from) enclose the whole head: hair or hat on top, ears at the sides, the chin at the bottom. On the three
# packaged portraits of benchmarks/detect_eval (hand-drawn head boxes against BlazeFace's face boxes) the ratios
# were width 1.12-1.42 and height 1.59-1.73, the chin within 0.1 face heights of the face box's bottom; we take
# width 1.35, height 1.65, centre raised so the bottom edge moves down only 0.1 face heights.
HEAD_FROM_FACE = {"sx": 1.35, "sy": 1.65, "up": 0.225}


class DetectorUnavailable(UserError, RuntimeError):
    """The optional detection packages (or the model wheel) are not installed; the hint says how to install them."""

    def __init__(self, message: str):
        super().__init__(message, hint=EXTRA_HINT)


@dataclass(frozen=True)
class Detection:
    kind: str
    xyxy: tuple[float, float, float, float]  # normalised to [0, 1] of the image's width and height
    score: float


# ------------------------------------------------------------------------------------------ model files, runtime
_MODELS = {  # file in the mediapipe wheel, input size, input value range
    "face": ("face_detection/face_detection_full_range_sparse.tflite", 192, (-1.0, 1.0)),
    "palm": ("palm_detection/palm_detection_full.tflite", 192, (0.0, 1.0)),
    "palm_lite": ("palm_detection/palm_detection_lite.tflite", 192, (0.0, 1.0)),
    "hand_landmark": ("hand_landmark/hand_landmark_full.tflite", 224, (0.0, 1.0)),
    "pose": ("pose_detection/pose_detection.tflite", 224, (-1.0, 1.0)),
    "pose_landmark": ("pose_landmark/pose_landmark_full.tflite", 256, (0.0, 1.0)),
}


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        raise DetectorUnavailable(
            "detection needs the LiteRT runtime (ai-edge-litert), from the optional extra socialfusion[detect]"
        ) from err
    return Interpreter


def model_path(name: str) -> Path:
    """Path of a MediaPipe model file inside the installed wheel; never imports mediapipe (it needs numpy<2)."""
    from importlib import metadata

    rel = _MODELS[name][0]
    try:
        path = Path(metadata.distribution("mediapipe").locate_file(f"mediapipe/modules/{rel}"))
    except metadata.PackageNotFoundError as err:
        raise DetectorUnavailable(
            "detection needs the model files of the mediapipe==0.10.21 wheel (installed with --no-deps)"
        ) from err
    if not path.is_file():
        raise DetectorUnavailable(f"{path}: model file missing from the installed mediapipe (detection needs 0.10.21)")
    return path


@contextlib.contextmanager
def _native_stderr_silenced():
    """LiteRT's C++ runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." straight to file
    descriptor 2 when a model is allocated; loads are quiet unless --verbose, so fd 2 goes to /dev/null meanwhile.
    Process-wide for that moment: a model is allocated once per process (and thread count)."""
    if verbose_requested():
        yield
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _Model:
    """One TFLite model; LiteRT interpreters are not thread-safe, so each call holds the model's lock."""

    def __init__(self, name: str, threads: int | None):
        self.name, (_, self.size, self.range) = name, _MODELS[name]
        with _native_stderr_silenced():
            self.interp = _interpreter_class()(model_path=str(model_path(name)), num_threads=threads)
            self.interp.allocate_tensors()
        self.lock = threading.Lock()

    def __call__(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """pixels: HxWx3 uint8 at the model's size -> outputs keyed by tensor name, batch dimension dropped."""
        lo, hi = self.range
        x = pixels.astype(np.float32)[None] * ((hi - lo) / 255.0) + lo
        with self.lock:
            self.interp.set_tensor(self.interp.get_input_details()[0]["index"], x)
            self.interp.invoke()
            return {d["name"]: self.interp.get_tensor(d["index"])[0].copy() for d in self.interp.get_output_details()}


@cache
def _model(name: str, threads: int | None = None) -> _Model:
    return _Model(name, threads)


def require() -> None:
    """DetectorUnavailable unless the runtime and every model file are installed (a front end checks this first)."""
    _interpreter_class()
    for name in _MODELS:
        model_path(name)


def available() -> bool:
    """Whether `detect` can run here (runtime and model files installed)."""
    try:
        require()
    except DetectorUnavailable:
        return False
    return True


# ------------------------------------------------------------------------------------------ SSD decoding
@cache
def _anchors(size: int, strides: tuple[int, ...], per_layer: int) -> np.ndarray:
    """MediaPipe's SsdAnchorsCalculator with fixed_anchor_size (every anchor is 1x1): cell centres, layers that
    share a stride stacked on the same grid, `per_layer` anchors each (2 when interpolated_scale_aspect_ratio=1)."""
    out, i = [], 0
    while i < len(strides):
        stride, n = strides[i], 0
        while i < len(strides) and strides[i] == stride:
            n, i = n + per_layer, i + 1
        fm = math.ceil(size / stride)
        ys, xs = np.meshgrid((np.arange(fm) + 0.5) / fm, (np.arange(fm) + 0.5) / fm, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], 1)
        out.append(np.repeat(centres, n, axis=0))
    return np.concatenate(out).astype(np.float32)


# anchor options of MediaPipe's face_detection_full_range, palm_detection and pose_detection graphs
_SSD = {
    "face": ((4,), 1),
    "palm": ((8, 16, 16, 16), 2),
    "palm_lite": ((8, 16, 16, 16), 2),
    "pose": ((8, 16, 32, 32, 32), 2),
}


def _decode(raw: np.ndarray, logits: np.ndarray, size: int, name: str, min_score: float):
    """TensorsToDetectionsCalculator (reverse_output_order, scales = input size, sigmoid scores clipped at 100):
    -> scores (n,), boxes (n, 4) xyxy and keypoints (n, k, 2), all in the model's [0, 1] input frame."""
    strides, per = _SSD[name]
    anchors = _anchors(size, strides, per)
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100, 100)))
    keep = scores >= min_score
    raw, anchors, scores = raw[keep] / size, anchors[keep], scores[keep]
    cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
    boxes = np.stack([cx - raw[:, 2] / 2, cy - raw[:, 3] / 2, cx + raw[:, 2] / 2, cy + raw[:, 3] / 2], 1)
    kps = raw[:, 4:].reshape(len(raw), (raw.shape[1] - 4) // 2, 2) + anchors[:, None, :]
    return scores, boxes, kps


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def _weighted_nms(scores, boxes, kps, iou: float = 0.3):
    """MediaPipe's WEIGHTED non-max suppression: each cluster (IoU > `iou` with its best member) becomes the
    score-weighted mean of its boxes and keypoints, with the best member's score."""
    order = np.argsort(-scores)
    scores, boxes, kps = scores[order], boxes[order], kps[order]
    out, left = [], np.ones(len(scores), bool)
    for i in range(len(scores)):
        if not left[i]:
            continue
        members = left & (_iou(boxes[i], boxes) > iou)
        members[i] = True
        w = scores[members] / scores[members].sum()
        out.append((float(scores[i]), (boxes[members] * w[:, None]).sum(0), (kps[members] * w[:, None, None]).sum(0)))
        left &= ~members
    return out


def _letterbox(image: Image.Image, size: int):
    """Fit the image into size x size, centred, zero padding (MediaPipe's keep_aspect_ratio). Returns the pixels
    and the map from the model's [0, 1] frame back to image pixels: p_img = (p * size - pad) / scale."""
    w, h = image.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.zeros((size, size, 3), np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas[py : py + nh, px : px + nw] = np.asarray(image.resize((nw, nh), Image.BILINEAR))
    return canvas, (size, scale, np.array([px, py], np.float64))


def _to_pixels(points: np.ndarray, frame) -> np.ndarray:
    size, scale, pad = frame
    return (points * size - pad) / scale


def _tiles(size: tuple[int, int], n: int) -> list[tuple[int, int, int, int]]:
    """The whole image, plus for n > 1 an n x n grid of overlapping tiles: each 2/(n+1) of the image's width and
    height, neighbours overlapping by half a tile, so an object of up to half a tile lies whole in one of them."""
    w, h = size
    out = [(0, 0, w, h)]
    if n > 1:
        tw, th = round(w * 2 / (n + 1)), round(h * 2 / (n + 1))
        for i in range(n):
            for j in range(n):
                x0, y0 = round(j * (w - tw) / (n - 1)), round(i * (h - th) / (n - 1))
                out.append((x0, y0, x0 + tw, y0 + th))
    return out


def _run_ssd(
    image: Image.Image, name: str, min_score: float, threads: int | None, tiles: int = 1, nms_iou: float = 0.3
):
    """One SSD detector on the image (and on its tiles when tiles > 1): [(score, xyxy, keypoints)] in image
    pixels after weighted NMS over every candidate from every tile."""
    model = _model(name, threads)
    scores, boxes, kps = [], [], []
    for x0, y0, x1, y1 in _tiles(image.size, tiles):
        part = image if (x0, y0, x1, y1) == (0, 0, *image.size) else image.crop((x0, y0, x1, y1))
        pixels, frame = _letterbox(part, model.size)
        out = model(pixels)
        raw, logits = sorted(out.values(), key=lambda a: -a.shape[-1])  # regressors are wider than the 1 score
        s, b, k = _decode(raw, logits, model.size, name, min_score)
        offset = np.array([x0, y0], np.float64)
        scores.append(s)
        boxes.append(_to_pixels(b.reshape(-1, 2, 2), frame).reshape(-1, 4) + np.tile(offset, 2))
        kps.append(_to_pixels(k, frame) + offset)
    scores, boxes, kps = np.concatenate(scores), np.concatenate(boxes), np.concatenate(kps)
    return _weighted_nms(scores, boxes, kps, nms_iou)


def _dedupe(found: list, iou: float = 0.5) -> list:
    """Best first, drop a detection whose box overlaps a kept one by IoU > `iou` (two tiles' candidates that NMS
    kept apart but that the second stage turned into the same hand or person)."""
    kept: list = []
    for d in sorted(found, key=lambda d: -d.score):
        if all(_iou(np.array(d.xyxy), np.array([k.xyxy]))[0] <= iou for k in kept):
            kept.append(d)
    return kept


# ------------------------------------------------------------------------------------------ per kind
def _clip_norm(box, w: int, h: int):
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = sorted((min(max(x0 / w, 0.0), 1.0), min(max(x1 / w, 0.0), 1.0)))
    y0, y1 = sorted((min(max(y0 / h, 0.0), 1.0), min(max(y1 / h, 0.0), 1.0)))
    return (x0, y0, x1, y1)


def _valid(box) -> bool:
    return box[2] - box[0] > 1e-4 and box[3] - box[1] > 1e-4


def _faces(image, min_score, threads, cfg):
    w, h = image.size
    found = _run_ssd(image, "face", min_score, threads, cfg["tiles"]["face"], cfg["nms_iou"])
    return [Detection("face", _clip_norm(b, w, h), s) for s, b, _ in found]


def head_from_face(face_xyxy, factors: dict = HEAD_FROM_FACE):
    """Head box from a face box, both normalised xyxy; the head is clipped to the image. Each axis scales on
    its own, so normalised and pixel boxes give the same head."""
    x0, y0, x1, y1 = face_xyxy
    fw, fh = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - factors["up"] * fh
    hw, hh = fw * factors["sx"] / 2, fh * factors["sy"] / 2
    return (max(0.0, cx - hw), max(0.0, cy - hh), min(1.0, cx + hw), min(1.0, cy + hh))


def _heads(faces):
    return [Detection("head", head_from_face(f.xyxy), f.score) for f in faces]


# palm_detection_detection_to_roi: rotation from keypoint 0 (wrist centre) to 2 (middle-finger base) made
# vertical, the box squared on its long side, scaled 2.6 and shifted half a box toward the fingers
_PALM_ROI = {"scale": 2.6, "shift_y": -0.5}
HAND_MARGIN = 0.1  # landmarks sit on joints and fingertips: widen their box by 10% a side to cover the skin


def _upright(start, end) -> float:
    """The rotation (radians, [-pi, pi)) that turns the vector start -> end to point up (DetectionsToRects'
    rotation_vector_target_angle_degrees: 90)."""
    rot = math.pi / 2 - math.atan2(-(end[1] - start[1]), end[0] - start[0])
    return (rot + math.pi) % (2 * math.pi) - math.pi


def _palm_roi(box: np.ndarray, kps: np.ndarray):
    """(centre x, centre y, side, rotation) in pixels/radians of the hand region for one palm detection."""
    (x0, y0, x1, y1) = box
    rot = _upright(kps[0], kps[2])
    w, h = x1 - x0, y1 - y0
    shift = _PALM_ROI["shift_y"] * h
    cx, cy = (x0 + x1) / 2 - shift * math.sin(rot), (y0 + y1) / 2 + shift * math.cos(rot)
    return cx, cy, max(w, h) * _PALM_ROI["scale"], rot


def _crop_rotated(image: Image.Image, roi, size: int):
    """The rotated square `roi` resampled to size x size; returns the pixels and the crop->image affine map."""
    cx, cy, side, rot = roi
    c, s, k = math.cos(rot), math.sin(rot), side / size
    # PIL's AFFINE maps each output pixel to the input: (u, v) -> centre + R(rot) . ((u, v) - size/2) * k
    coeffs = (c * k, -s * k, cx - (c - s) * side / 2, s * k, c * k, cy - (s + c) * side / 2)
    crop = image.transform((size, size), Image.AFFINE, coeffs, resample=Image.BILINEAR)
    return np.asarray(crop), np.array(coeffs).reshape(2, 3)


def _hands(image, min_score, threads, cfg):
    w, h = image.size
    landmarker = _model("hand_landmark", threads)
    found = []
    palm = "palm" if cfg["palm_model"] == "full" else "palm_lite"
    for _, box, kps in _run_ssd(image, palm, min_score, threads, cfg["tiles"]["hand"], cfg["nms_iou"]):
        pixels, affine = _crop_rotated(image, _palm_roi(box, kps), landmarker.size)
        out = landmarker(pixels)
        # hand_landmark_full's outputs: Identity = 21 x (x, y, z) in crop pixels, Identity_1 = presence (a
        # probability), Identity_2 = handedness, Identity_3 = world landmarks
        landmarks, presence = out["Identity"].reshape(21, 3)[:, :2], float(out["Identity_1"].reshape(-1)[0])
        if presence < cfg["hand_presence"]:
            continue
        pts = np.c_[landmarks, np.ones(21)] @ affine.T
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        mx, my = (x1 - x0) * HAND_MARGIN, (y1 - y0) * HAND_MARGIN
        found.append(Detection("hand", _clip_norm((x0 - mx, y0 - my, x1 + mx, y1 + my), w, h), presence))
    return _dedupe(found) if cfg["tiles"]["hand"] > 1 else found


_POSE_ROI_SCALE = 1.25  # pose_detection_to_roi: the body circle's square, enlarged 1.25


def _persons(image, min_score, threads, cfg):
    """BlazePose's detector: keypoint 0 is the hip centre, keypoint 1 lies on the circle that holds the body. The
    region (that circle's square x 1.25, turned so the body stands upright) goes to the pose-landmark model, whose
    presence score confirms the person and whose segmentation (logit > 0; its largest connected part, since
    specks of background also pass) gives the visible body."""
    from scipy import ndimage  # scipy comes with scikit-learn, a core dependency

    w, h = image.size
    landmarker = _model("pose_landmark", threads)
    found = []
    for s, _, kps in _run_ssd(image, "pose", min_score, threads, cfg["tiles"]["person"], cfg["nms_iou"]):
        r = math.hypot(*(kps[1] - kps[0]))
        roi = (kps[0][0], kps[0][1], 2 * r * _POSE_ROI_SCALE, _upright(kps[0], kps[1]))
        pixels, affine = _crop_rotated(image, roi, landmarker.size)
        out = landmarker(pixels)
        # pose_landmark_full's outputs: Identity = 39 x 5 landmarks, Identity_1 = presence (a probability),
        # Identity_2 = 256 x 256 segmentation logits, Identity_3 = heatmaps, Identity_4 = world landmarks
        if float(out["Identity_1"].reshape(-1)[0]) < cfg["pose_presence"]:
            continue
        mask = out["Identity_2"][..., 0] > 0
        parts, n = ndimage.label(mask)
        if n == 0:
            continue
        ys, xs = np.nonzero(parts == 1 + int(np.argmax(ndimage.sum(mask, parts, range(1, n + 1)))))
        pts = np.c_[xs + 0.5, ys + 0.5, np.ones(len(xs))] @ affine.T
        pts = pts[(pts[:, 0] >= 0) & (pts[:, 0] <= w) & (pts[:, 1] >= 0) & (pts[:, 1] <= h)]
        if len(pts):
            found.append(Detection("person", _clip_norm((*pts.min(0), *pts.max(0)), w, h), s))
    return _dedupe(found) if cfg["tiles"]["person"] > 1 else found


# First-stage score thresholds. MediaPipe's default (min_detection_confidence) is 0.5 for all three; the palm
# detector's is 0.4 here: on the tune half of benchmarks/detect_eval it finds one more hand (13/13) with no false
# one, as the landmark model's presence score still rejects the extra palms (docs/DETECTION.md, "Settings").
MIN_SCORE = {"face": 0.5, "hand": 0.4, "person": 0.5}

# The other settings (docs/DETECTION.md, "Settings", gives each one's recall and precision on the labelled set):
# tiles: per kind, n > 1 also runs that kind's first-stage detector on an n x n grid of overlapping tiles (small
#   faces, hands and people get more of the detector's input); palm_model: "full" or "lite"; hand_presence and
#   pose_presence: the landmark models' presence thresholds (MediaPipe's 0.5); nms_iou: the weighted NMS overlap.
# Persons use 2 x 2 tiles: BlazePose's detector is made for one person and, on the whole image, finds one or two of
# a group; with tiles it found 17 of 19 persons of the tune half instead of 15, with no false one.
SETTINGS = {
    "tiles": {"face": 1, "hand": 1, "person": 2},
    "palm_model": "full",
    "hand_presence": 0.5,
    "pose_presence": 0.5,
    "nms_iou": 0.3,
}
# Clips detect on every sampled frame: the person tiles cost 50-90 ms more per 640-px image on 2 cores, so a
# clip finds persons on the whole frame only, as when docs/USAGE.md's throughput was measured.
FRAME_SETTINGS = {"tiles": {"person": 1}}


def settings_with(overrides: dict | None) -> dict:
    """SETTINGS with `overrides` on top (a partial "tiles" dict overrides only the kinds it names)."""
    cfg = {**SETTINGS, **(overrides or {})}
    cfg["tiles"] = {**SETTINGS["tiles"], **(overrides or {}).get("tiles", {})}
    unknown = set(cfg) - set(SETTINGS)
    if unknown or cfg["palm_model"] not in ("full", "lite"):
        raise ValueError(
            f"unknown detection setting(s) {sorted(unknown) or cfg['palm_model']}; known: {sorted(SETTINGS)}"
        )
    return cfg


def detect(
    image, kinds=KINDS, min_score: dict | None = None, threads: int | None = None, settings: dict | None = None
) -> list[Detection]:
    """Detections of the requested kinds, best first within each kind; a kind with nothing found has none.

    `image`: a PIL image, or anything `core.images.load_image` reads (path, bytes). `min_score` overrides
    MIN_SCORE per kind (heads follow faces). `threads`: LiteRT's CPU threads (None: its default). `settings`
    overrides SETTINGS (tiles, palm model, presence thresholds, NMS overlap)."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown detection kind(s) {unknown}; known: {list(KINDS)}")
    if not isinstance(image, Image.Image):
        image = load_image(image)
    image = image.convert("RGB")
    if min(image.size) < 2:
        return []
    scores = {**MIN_SCORE, **(min_score or {})}
    cfg = settings_with(settings)
    out: list[Detection] = []
    if "face" in kinds or "head" in kinds:
        faces = _faces(image, scores["face"], threads, cfg)
        out += [f for f in faces if "face" in kinds] + (_heads(faces) if "head" in kinds else [])
    if "hand" in kinds:
        out += _hands(image, scores["hand"], threads, cfg)
    if "person" in kinds:
        out += _persons(image, scores["person"], threads, cfg)
    return [d for d in out if _valid(d.xyxy)]


def by_kind(detections) -> dict[str, list[Detection]]:
    """{kind: detections, best first}; every kind present, empty when nothing was found."""
    groups: dict[str, list[Detection]] = {k: [] for k in KINDS}
    for d in detections:
        groups[d.kind].append(d)
    return {k: sorted(v, key=lambda d: -d.score) for k, v in groups.items()}


def largest(detections, kind: str, n: int) -> list[Detection]:
    """The `n` largest detections of `kind` by area, larger first, ties by score (relation pairs the two largest
    persons). Normalised areas order boxes as pixel areas do: both axes scale alike for every box."""
    area = lambda d: (d.xyxy[2] - d.xyxy[0]) * (d.xyxy[3] - d.xyxy[1])  # noqa: E731
    return sorted((d for d in detections if d.kind == kind), key=lambda d: (-area(d), -d.score))[:n]


def boxes_for_tasks(detections, size: tuple[int, int]) -> tuple[list[dict], str]:
    """One image's detections -> the kinded boxes the prediction API reads, and a note saying what was found.

    One subject per image, so that expression, lam, gaze and gesture read the same person as far as detection can
    tell: the largest face, the head made from that face, the best-scoring hand. Relation's pair: the two largest
    persons, roles 0 and 1 (a single person is left out: relation is skipped for want of person boxes, and the
    note says one was found). Each box: pixel and normalised xyxy, kind, role, score and source "detected"."""
    w, h = size
    faces = largest(detections, "face", 1)
    chosen: list[tuple[Detection, int | None]] = [(f, None) for f in faces]
    if faces and any(d.kind == "head" for d in detections):
        chosen.append((Detection("head", head_from_face(faces[0].xyxy), faces[0].score), None))
    chosen += [(d, None) for d in by_kind(detections)["hand"][:1]]
    persons = largest(detections, "person", 2)
    chosen += [(d, i) for i, d in enumerate(persons)] if len(persons) == 2 else []
    boxes = [
        {
            "xyxy": [d.xyxy[0] * w, d.xyxy[1] * h, d.xyxy[2] * w, d.xyxy[3] * h],
            "xyxy_normalized": list(d.xyxy),
            "kind": d.kind,
            "role": role,
            "score": round(d.score, 4),
            "source": "detected",
        }
        for d, role in chosen
    ]
    counts = {k: sum(d.kind == k for d in detections) for k in KINDS}
    found = [f"{n} {k}{'s' if n > 1 else ''}" for k, n in counts.items() if n]
    missing = [f"no {k} found" for k, n in counts.items() if not n]
    note = "detected " + (", ".join(found) if found else "nothing")
    if any(n > 1 for k, n in counts.items() if k != "person"):
        note += " (the largest face and the best hand are used)"
    if counts["person"] == 1:
        missing.append("one person found: relation needs two")
    return boxes, note + ("; " + "; ".join(missing) if missing else "")


def listing(detections, boxes: list[dict], size: tuple[int, int]) -> list[dict]:
    """Every detection of an image, for the result's "detections": pixel and normalised xyxy, kind, score, and
    "box", the index in `boxes` (what `boxes_for_tasks` chose) of the box the tasks read, with its "role"; a
    detection no task reads (a second face, a lone person) has "box" None, so what the note counts is all there."""
    w, h = size
    where = {(b["kind"], tuple(b["xyxy_normalized"])): i for i, b in enumerate(boxes)}
    out = []
    for d in sorted(detections, key=lambda d: (KINDS.index(d.kind), -d.score)):
        i = where.get((d.kind, tuple(d.xyxy)))
        out.append(
            {
                "xyxy": [d.xyxy[0] * w, d.xyxy[1] * h, d.xyxy[2] * w, d.xyxy[3] * h],
                "xyxy_normalized": list(d.xyxy),
                "kind": d.kind,
                "score": round(d.score, 4),
                "box": i,
                "role": None if i is None else boxes[i]["role"],
            }
        )
    return out

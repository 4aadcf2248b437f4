"""Procedural PIL drawing for the synthetic social scenes (the dataset layouts live in `synth.py`).

Every cue a label depends on is a large *shape*: head turn and pupil position (LAM, gaze), mouth / brow / eye
shapes (expression), finger configuration and hand orientation (gesture), body size, clothing type, contact,
distance and facing (relation). Colours are randomised per sample and never encode a class on their own (the one
exception is PISC "family", whose members share a shirt colour, as the brief asks, alongside the child's size).

All functions draw with an `ImageDraw.Draw` at the final image size and take their randomness from a
`numpy.random.Generator`, so a scene is a pure function of the generator state.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

SKIN = [
    (255, 224, 189),
    (241, 194, 125),
    (224, 172, 105),
    (198, 134, 66),
    (141, 85, 36),
    (105, 66, 40),
    (250, 208, 178),
]
HAIR = [(28, 20, 16), (72, 46, 26), (118, 78, 40), (196, 160, 92), (95, 95, 95), (150, 62, 30), (12, 12, 12)]
BRIGHT = [
    (215, 40, 40),
    (40, 90, 215),
    (40, 165, 60),
    (235, 195, 30),
    (230, 120, 20),
    (150, 50, 190),
    (20, 175, 190),
    (225, 80, 160),
]
DARK_SUIT = [(30, 30, 42), (32, 44, 82), (58, 58, 64), (22, 22, 22)]
PANTS = [(50, 70, 130), (60, 60, 60), (110, 90, 60), (35, 40, 60)]
OUTLINE = (32, 24, 20)
EXPRESSIONS = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger", "contempt")


def col(v) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(float(x))))) for x in v)  # type: ignore[return-value]


def pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def canvas(rng: np.random.Generator, w: int, h: int, n_shapes: tuple[int, int] = (10, 22)):
    """A muted background with random low-contrast clutter (rectangles, ellipses, strokes)."""
    base = rng.integers(80, 185, 3).astype(float)
    img = Image.new("RGB", (w, h), col(base))
    d = ImageDraw.Draw(img)
    if rng.random() < 0.5:  # a wall / floor split
        y = rng.uniform(0.45, 0.8) * h
        d.rectangle([0, y, w, h], fill=col(base + rng.normal(0, 14, 3)))
    for _ in range(int(rng.integers(*n_shapes))):
        c = col(base + rng.normal(0, 16, 3))
        x0, y0 = rng.uniform(-0.15, 1.0) * w, rng.uniform(-0.15, 1.0) * h
        sw, sh = rng.uniform(0.04, 0.45) * w, rng.uniform(0.04, 0.45) * h
        kind = int(rng.integers(3))
        if kind == 0:
            d.rectangle([x0, y0, x0 + sw, y0 + sh], fill=c)
        elif kind == 1:
            d.ellipse([x0, y0, x0 + sw, y0 + sh], fill=c)
        else:
            d.line(
                [x0, y0, x0 + sw * (1 if rng.random() < 0.5 else -1), y0 + sh], fill=c, width=int(rng.integers(2, 7))
            )
    return img, d


def capsule(d: ImageDraw.ImageDraw, p0, p1, w: float, fill) -> None:
    """A thick stroke with round caps."""
    r = w / 2.0
    d.line([tuple(p0), tuple(p1)], fill=fill, width=max(1, int(round(w))))
    for p in (p0, p1):
        d.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=fill)


def polyline(d: ImageDraw.ImageDraw, pts, w: float, fill) -> None:
    for a, b in zip(pts[:-1], pts[1:]):
        capsule(d, a, b, w, fill)


def _ellipse_pts(cx, cy, rx, ry, n, a0=0.0, a1=2 * math.pi, endpoint=False):
    t = np.linspace(a0, a1, n, endpoint=endpoint)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


# --------------------------------------------------------------------------------------------------------- faces
# per expression: brow (inner, outer) raise for the left and right brow (units of r, + = up), eye openness, mouth
_BROWS = {
    0: ((0, 0), (0, 0)),
    1: ((0.05, 0.05), (0.05, 0.05)),
    2: ((0.13, -0.07), (0.13, -0.07)),
    3: ((0.16, 0.16), (0.16, 0.16)),
    4: ((0.15, 0.0), (0.15, 0.0)),
    5: ((-0.07, -0.03), (-0.07, -0.03)),
    6: ((-0.12, 0.07), (-0.12, 0.07)),
    7: ((0, 0), (0.14, 0.1)),
}
_EYE_OPEN = {0: 1.0, 1: 0.0, 2: 0.8, 3: 1.5, 4: 1.45, 5: 0.35, 6: 0.7, 7: 0.85}


def draw_face(
    d: ImageDraw.ImageDraw,
    cx: float,
    cy: float,
    r: float,
    skin,
    hair,
    *,
    turn=(0.0, 0.0),
    look=None,
    expression: int = 0,
    back: bool = False,
) -> dict:
    """A head of half-height `r` centred at (cx, cy).

    `turn` = (tx, ty) in [-1, 1]: the head's rotation; the face plate, eyes, nose and mouth shift toward it, the
    far eye narrows, the nose tip sticks out and an ear shows on the back side. `look` = pupil direction (defaults
    to `turn`). `back` draws the back of the head (hair only). Returns the head box (xyxy), the eye midpoint and
    68 landmarks (iBUG order).
    """
    tx, ty = float(turn[0]), float(turn[1])
    lx, ly = (tx, ty) if look is None else (float(look[0]), float(look[1]))
    rx = 0.8 * r
    lw = max(2, int(round(0.075 * r)))
    d.ellipse(
        [cx - rx * 1.04, cy - r * 1.04, cx + rx * 1.04, cy + r], fill=hair, outline=OUTLINE, width=max(1, lw // 2)
    )
    box = (cx - rx * 1.04, cy - r * 1.04, cx + rx * 1.04, cy + r)
    if back:
        return {"box": box, "eyes": (cx, cy), "landmarks": np.tile([[cx, cy]], (68, 1))}
    at = abs(tx)
    lm = np.zeros((68, 2))
    _draw_face_plate(d, lm, cx, cy, r, rx, tx, ty, skin, lw)
    fx, fy = cx + tx * 0.42 * r, cy + 0.12 * r + ty * 0.3 * r
    openness = _EYE_OPEN.get(expression, 1.0)
    if ty > 0.5 and openness > 0:  # looking down: lowered lids
        openness = min(openness, 0.55)
    eyes = []
    for k, s in enumerate((-1, 1)):
        eyes.append(_draw_eye(d, lm, k, s, fx, fy, r, tx, (lx, ly), openness, expression, hair, lw))
    _draw_nose(d, lm, fx, fy, r, tx, ty, skin, expression)
    mh = _draw_mouth(d, fx, fy + 0.45 * r, 0.3 * r * (1 - 0.3 * at), r, expression, lw)
    mx, my = fx, fy + 0.45 * r
    mw = 0.3 * r * (1 - 0.3 * at)
    lm[48:60] = _ellipse_pts(mx, my, mw, mh, 12, math.pi, 3 * math.pi)
    lm[60:68] = _ellipse_pts(mx, my, mw * 0.7, mh * 0.5, 8, math.pi, 3 * math.pi)
    em = ((eyes[0][0] + eyes[1][0]) / 2, (eyes[0][1] + eyes[1][1]) / 2)
    return {"box": box, "eyes": em, "landmarks": lm}


def _draw_face_plate(d, lm, cx, cy, r, rx, tx, ty, skin, lw) -> None:
    """The ear on the back side (past a third of a turn) and the skin plate over the hair, shifted toward the
    turn: drawn before the features, which sit on it. Fills the jaw landmarks (0-16) in `lm`."""
    at = abs(tx)
    if at > 0.3:  # ear on the back side
        ex_ = cx - math.copysign(rx * 0.62, tx)
        d.ellipse([ex_ - 0.13 * r, cy - 0.05 * r, ex_ + 0.13 * r, cy + 0.28 * r], fill=skin, outline=OUTLINE)
    pcx, pcy = cx + tx * 0.16 * r, cy + 0.1 * r + ty * 0.06 * r
    prx, pry = rx * (0.92 - 0.14 * at), r * 0.86
    d.ellipse(
        [pcx - prx, pcy - pry, pcx + prx, pcy + pry],
        fill=skin,
        outline=col(np.array(skin) * 0.6),
        width=max(1, lw // 2),
    )
    t = np.linspace(math.pi, 0, 17)
    lm[0:17] = np.stack([pcx + prx * np.cos(t), pcy + pry * 0.55 + pry * 0.45 * np.sin(t)], 1)


def _draw_eye(d, lm, k, s, fx, fy, r, tx, look, openness, expression, hair, lw) -> tuple[float, float]:
    """Eye `k` (side `s`: -1 left, +1 right) and its brow, the shapes the expression and gaze labels read: the far
    eye narrows with the turn, the pupil follows `look`. Fills its eye (36-47) and brow (17-26) landmarks in
    `lm`; returns the eye centre."""
    lx, ly = look
    at = abs(tx)
    far = s * tx < 0
    sc = 1.0 - (0.6 * at if far else 0.1 * at)
    ex = fx + s * 0.33 * r * (1 - 0.3 * at)
    ey = fy - 0.14 * r
    ew, eh = 0.17 * r * sc, 0.1 * r * max(openness, 0.25)
    if openness == 0.0:  # happy: closed, upward-arched eyes
        pts = _ellipse_pts(ex, ey + 0.05 * r, ew, 0.09 * r, 7, math.pi, 2 * math.pi, endpoint=True)
        polyline(d, [tuple(p) for p in pts], lw, OUTLINE)
    else:
        d.ellipse([ex - ew, ey - eh, ex + ew, ey + eh], fill=(250, 250, 250), outline=OUTLINE, width=max(1, lw // 2))
        pr = min(0.085 * r, eh * 0.95, ew * 0.8)
        px, py = ex + lx * (ew - pr) * 0.95, ey + ly * (eh - pr) * 0.8
        d.ellipse([px - pr, py - pr, px + pr, py + pr], fill=(20, 15, 15))
    lm[36 + 6 * k : 42 + 6 * k] = _ellipse_pts(ex, ey, ew, eh, 6, math.pi, 3 * math.pi)
    # brow
    inner, outer = _BROWS.get(expression, ((0, 0), (0, 0)))[k]
    by = ey - 0.2 * r - (0.04 * r if openness > 1.2 else 0)
    pin = (ex - s * ew * 0.9, by - inner * r)
    pout = (ex + s * ew * 1.15, by - outer * r)
    capsule(d, pin, pout, max(2.0, 0.085 * r), hair if sum(hair) < 300 else OUTLINE)
    bp = np.linspace(pout if s < 0 else pin, pin if s < 0 else pout, 5)
    lm[17 + 5 * k : 22 + 5 * k] = bp
    return ex, ey


def _draw_nose(d, lm, fx, fy, r, tx, ty, skin, expression) -> None:
    """The nose, leaning and sticking out toward the turn (a head-pose cue), with disgust's wrinkles beside it.
    Fills the nose landmarks (27-35) in `lm`."""
    dark = col(np.array(skin) * 0.55)
    tip = (fx + tx * 0.34 * r, fy + 0.17 * r + ty * 0.06 * r)
    nose = [(fx, fy - 0.08 * r), (tip[0] + 0.07 * r, tip[1] + 0.02 * r), (tip[0] - 0.07 * r, tip[1] + 0.03 * r)]
    d.polygon(nose, fill=col(np.array(skin) * 0.8), outline=OUTLINE)
    lm[27:31] = np.linspace(nose[0], tip, 4)
    lm[31:36] = np.linspace(nose[2], nose[1], 5)
    if expression == 5:  # disgust: nose wrinkles
        for s in (-1, 1):
            capsule(d, (fx + s * 0.1 * r, fy - 0.02 * r), (fx + s * 0.17 * r, fy + 0.08 * r), max(1.5, 0.04 * r), dark)


def _draw_mouth(d, mx, my, mw, r, expression, lw) -> float:
    """Draws the mouth shape of an expression; returns its half-height (for landmarks)."""
    red, dark, white = (150, 40, 45), (55, 15, 20), (245, 245, 240)
    if expression == 1:  # happiness: wide open smile (lower half disc) with teeth
        d.pieslice(
            [mx - mw * 1.1, my - 0.22 * r, mx + mw * 1.1, my + 0.24 * r],
            0,
            180,
            fill=dark,
            outline=OUTLINE,
            width=lw // 2 + 1,
        )
        d.rectangle([mx - mw * 0.8, my, mx + mw * 0.8, my + 0.06 * r], fill=white)
        return 0.12 * r
    if expression == 2:  # sadness: frown arc
        pts = _ellipse_pts(mx, my + 0.14 * r, mw, 0.16 * r, 9, math.pi * 1.08, math.pi * 1.92, endpoint=True)
        polyline(d, [tuple(p) for p in pts], lw * 1.3, red)
        return 0.08 * r
    if expression == 3:  # surprise: tall O
        d.ellipse([mx - 0.13 * r, my - 0.14 * r, mx + 0.13 * r, my + 0.2 * r], fill=dark, outline=red, width=lw)
        return 0.17 * r
    if expression == 4:  # fear: wide stretched open mouth, upper teeth showing
        d.ellipse([mx - mw * 1.05, my - 0.07 * r, mx + mw * 1.05, my + 0.13 * r], fill=dark, outline=red, width=lw)
        d.rectangle([mx - mw * 0.6, my - 0.05 * r, mx + mw * 0.6, my - 0.01 * r], fill=white)
        return 0.1 * r
    if expression == 5:  # disgust: zigzag, upper lip raised on one side
        pts = [
            (mx - mw, my + 0.05 * r),
            (mx - mw / 2, my - 0.05 * r),
            (mx, my + 0.05 * r),
            (mx + mw / 2, my - 0.1 * r),
            (mx + mw, my - 0.03 * r),
        ]
        polyline(d, pts, lw * 1.2, red)
        return 0.07 * r
    if expression == 6:  # anger: clenched, bared teeth
        x0, x1, y0, y1 = mx - mw * 0.85, mx + mw * 0.85, my - 0.07 * r, my + 0.07 * r
        d.rectangle([x0, y0, x1, y1], fill=white, outline=OUTLINE, width=max(1, lw // 2 + 1))
        d.line([(x0, my), (x1, my)], fill=OUTLINE, width=max(1, lw // 2))
        for k in range(1, 5):
            x = x0 + (x1 - x0) * k / 5
            d.line([(x, y0), (x, y1)], fill=OUTLINE, width=1)
        return 0.07 * r
    if expression == 7:  # contempt: one-sided smirk
        pts = [
            (mx - mw * 0.8, my + 0.02 * r),
            (mx + mw * 0.3, my + 0.02 * r),
            (mx + mw * 0.75, my - 0.04 * r),
            (mx + mw, my - 0.13 * r),
        ]
        polyline(d, pts, lw * 1.2, red)
        return 0.06 * r
    capsule(d, (mx - mw, my), (mx + mw, my), lw * 1.2, red)  # neutral: straight line
    return 0.03 * r


# --------------------------------------------------------------------------------------------------------- hands
# local hand frame: unit = palm width, fingers point to -y ("up") before rotation; thumb on the -x side.
_BASE = {1: (-0.36, -0.46), 2: (-0.12, -0.5), 3: (0.12, -0.5), 4: (0.35, -0.44)}
_LEN = {0: 0.62, 1: 0.88, 2: 1.0, 3: 0.86, 4: 0.6}
_SPREAD = {1: -11.0, 2: -3.0, 3: 5.0, 4: 13.0}
_THUMB_BASE = (-0.42, 0.12)
_THUMB_DIR = {"out": -62.0, "up": -16.0, "in": 96.0, "side": -90.0}
FW = 0.21  # finger width


def _dirv(a_deg: float) -> np.ndarray:
    a = math.radians(a_deg)
    return np.array([math.sin(a), -math.cos(a)])


# fingers: thumb, index, middle, ring, little. E extended, F folded, H half, B bent (claw), R the ok-ring
HAND_POSES: dict[str, dict] = {
    "grabbing": dict(f="BBBBB", spread=1.4, thumb="out", rot=0),
    "grip": dict(f="BBBBB", spread=0.1, thumb="up", rot=90),
    "point": dict(f="FEFFF", rot=90),
    "call": dict(f="EFFFE", spread=1.8, thumb="out", rot=0),
    "three3": dict(f="FFEEE", spread=1.0, rot=0),
    "little_finger": dict(f="FFFFE", spread=1.5, rot=0),
    "middle_finger": dict(f="FFEFF", rot=0),
    "dislike": dict(f="EFFFF", thumb="up", thumb_len=1.05, rot=180),
    "fist": dict(f="FFFFF", rot=0),
    "four": dict(f="FEEEE", spread=0.9, rot=0),
    "like": dict(f="EFFFF", thumb="up", thumb_len=1.05, rot=0),
    "mute": dict(f="FEFFF", rot=-45),
    "ok": dict(f="RREEE", spread=1.2, rot=0),
    "one": dict(f="FEFFF", rot=0),
    "palm": dict(f="EEEEE", spread=1.4, thumb="out", rot=0),
    "peace": dict(f="FEEFF", spread=2.6, rot=0),
    "peace_inverted": dict(f="FEEFF", spread=2.6, rot=180),
    "rock": dict(f="FEFFE", spread=1.4, rot=0),
    "stop": dict(f="EEEEE", spread=0.0, thumb="up", rot=0),
    "stop_inverted": dict(f="EEEEE", spread=0.0, thumb="up", rot=180),
    "three": dict(f="EEEFF", spread=1.2, thumb="out", rot=0),
    "three2": dict(f="FEEEF", spread=1.2, rot=0),
    "two_up": dict(f="FEEFF", spread=0.0, rot=0),
    "two_up_inverted": dict(f="FEEFF", spread=0.0, rot=180),
    "three_gun": dict(f="EEEFF", spread=0.0, thumb="up", rot=90),
    "thumb_index": dict(f="EEFFF", spread=0.3, thumb="side", rot=0),
    "no_gesture": dict(f="HHHHH", spread=0.1, thumb="up", rot=180),
}
TWO_HANDED = ("hand_heart", "hand_heart2", "thumb_index2", "timeout", "holy", "take_picture", "xsign")


def _hand_parts(pose: dict) -> tuple[list, list]:
    """Local geometry of one hand: ([("poly", pts) | ("cap", p0, p1, w) | ("ring", c, radius, w)], 21 landmarks)."""
    fingers, spread = pose["f"], pose.get("spread", 0.5)
    parts: list = []
    t = np.linspace(0, 2 * math.pi, 20, endpoint=False)
    palm = np.stack(
        [0.5 * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** 0.45, 0.5 * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** 0.45], 1
    )
    parts.append(("poly", palm))
    parts.append(("cap", np.array([0.0, 0.35]), np.array([0.0, 0.72]), 0.62))  # wrist
    lms = [np.array([0.0, 0.7])]
    for k in range(5):
        state = fingers[k]
        if k == 0:
            base = np.array(_THUMB_BASE)
            tdir = pose.get("thumb", "in" if state == "F" else "out")
            a = _THUMB_DIR[tdir] if isinstance(tdir, str) else float(tdir)
            if state == "F":
                a = _THUMB_DIR["in"]
            length, w = (0.5 if state == "F" else pose.get("thumb_len", _LEN[0])), FW * 1.15
        else:
            base = np.array(_BASE[k])
            a = _SPREAD[k] * spread
            length, w = _LEN[k], FW
        v = _dirv(a)
        if state == "E" or (k == 0 and state == "F"):
            tip = base + v * length
            parts.append(("cap", base, tip, w))
            chain = [base, base + v * length / 3, base + v * 2 * length / 3, tip]
        elif state == "F":
            tip = base + v * 0.14
            parts.append(("cap", base, tip, w * 1.1))
            chain = [base, tip, tip, tip]
        elif state == "H":
            tip = base + v * length * 0.5
            parts.append(("cap", base, tip, w))
            chain = [base, base + v * length * 0.25, tip, tip]
        elif state == "B":
            mid = base + v * length * 0.5
            tip = mid + _dirv(a + 105) * length * 0.38
            parts.append(("cap", base, mid, w))
            parts.append(("cap", mid, tip, w))
            chain = [base, mid, (mid + tip) / 2, tip]
        else:  # "R": thumb and index close a ring
            c = np.array([-0.56, -0.62])
            if k == 1:
                parts.append(("ring", c, 0.3, FW * 1.05))
            ang = math.radians(150 if k == 0 else 260)
            tip = c + 0.3 * np.array([math.cos(ang), math.sin(ang)])
            chain = [base, (base + tip) / 2, tip, tip]
        lms.extend(chain)
    return parts, lms


def _heart(hs: float, cx: float, cy: float, n: int = 28) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n)
    x = 16 * np.sin(t) ** 3 / 17.0
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)) / 17.0
    return np.stack([cx + hs * x, cy + hs * y], 1)


def _group(gesture: str) -> list[tuple[dict, tuple[float, float], float, bool, tuple | None]]:
    """Hands of a gesture in group units: (pose, centre, rotation, mirrored, extra (polyline, width) owned by that
    hand)."""
    if gesture not in TWO_HANDED:
        return [(HAND_POSES[gesture], (0.0, 0.0), float(HAND_POSES[gesture]["rot"]), False, None)]
    stop = HAND_POSES["stop"]
    fist = HAND_POSES["fist"]
    L = dict(f="EEFFF", spread=0.0, thumb="side")
    if gesture == "holy":
        return [(stop, (-0.42, 0.0), 4.0, True, None), (stop, (0.42, 0.0), -4.0, False, None)]
    if gesture == "timeout":
        return [(stop, (-0.45, -1.25), 90.0, False, None), (stop, (0.0, 0.45), 0.0, False, None)]
    if gesture == "xsign":  # bare forearms crossing just below the hands
        out = []
        for sx in (-1, 1):
            a = math.radians(38.0 * sx)
            down = np.array([-math.sin(a), math.cos(a)])
            c = np.array([0.62 * sx, -0.45])
            out.append((stop, tuple(c), 38.0 * sx, sx < 0, (np.array([c + 0.55 * down, c + 2.1 * down]), 0.6)))
        return out
    if gesture == "take_picture":
        return [(L, (-0.85, 0.55), 0.0, True, None), (L, (0.85, -0.55), 180.0, True, None)]
    if gesture == "thumb_index2":
        return [(L, (-0.78, 0.0), 0.0, True, None), (L, (0.78, 0.0), 0.0, False, None)]
    if gesture == "hand_heart":
        h = _heart(1.05, 0.0, -0.55)
        return [
            (fist, (-1.0, 0.55), 35.0, True, (h[h[:, 0] <= 0.01], FW * 1.1)),
            (fist, (1.0, 0.55), -35.0, False, (h[h[:, 0] >= -0.01], FW * 1.1)),
        ]
    if gesture == "hand_heart2":
        h = _heart(0.85, 0.0, 0.75)
        return [
            (fist, (-0.95, -0.75), 215.0, False, (h[h[:, 0] <= 0.01], FW * 1.1)),
            (fist, (0.95, -0.75), 145.0, True, (h[h[:, 0] >= -0.01], FW * 1.1)),
        ]
    raise KeyError(gesture)


def draw_gesture(
    d: ImageDraw.ImageDraw, gesture: str, cx: float, cy: float, s: float, rot: float, skin, sleeve, dry: bool = False
) -> list[dict]:
    """Draw a (one- or two-handed) gesture centred at (cx, cy), palm width `s` px, extra rotation `rot` degrees.

    Returns one dict per hand: {"box": xyxy px, "landmarks": 21 (x, y) px}. With `dry` nothing is drawn (used to
    measure the extent first).
    """
    hands = []
    ra = math.radians(rot)
    Rg = np.array([[math.cos(ra), -math.sin(ra)], [math.sin(ra), math.cos(ra)]])
    outline_w = max(1.5, 0.07 * s)
    dark = col(np.array(skin) * 0.45)
    geo = [_hand_geometry(hand, cx, cy, s, Rg) for hand in _group(gesture)]
    if not dry:
        for _, arm, _ in geo:
            capsule(d, arm[0], arm[1], arm[2] + 2 * outline_w, dark)
            capsule(d, arm[0], arm[1], arm[2], sleeve)
        for tparts, _, _ in geo:
            _draw_parts(d, tparts, skin, dark, outline_w)
    for tparts, _, lms in geo:
        hands.append({"box": _parts_box(tparts, outline_w), "landmarks": np.array(lms)})
    return hands


def _hand_geometry(hand, cx: float, cy: float, s: float, Rg: np.ndarray):
    """One hand of a `_group` entry in image pixels: its parts, its forearm (start, end, width) and its 21
    landmarks. Computed for every hand before any is drawn, so that all forearms go under all hands."""
    pose, centre, hrot, mirror, extra = hand
    parts, lms = _hand_parts(pose)
    a = math.radians(hrot)
    R = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = np.array([-1.0, 1.0]) if mirror else np.array([1.0, 1.0])
    c = np.array([cx, cy]) + s * (Rg @ np.array(centre))

    def T(p):
        return c + s * (Rg @ (R @ (np.asarray(p) * m)))

    def Tx(p):  # extras are in group units already
        return np.array([cx, cy]) + s * (Rg @ np.asarray(p))

    tparts = []
    for p in parts:
        if p[0] == "poly":
            tparts.append(("poly", np.array([T(q) for q in p[1]])))
        elif p[0] == "cap":
            tparts.append(("cap", T(p[1]), T(p[2]), p[3] * s))
        else:
            tparts.append(("ring", T(p[1]), p[2] * s, p[3] * s))
    if extra is not None:
        ex = np.array([Tx(q) for q in extra[0]])
        for a_, b_ in zip(ex[:-1], ex[1:]):
            tparts.insert(0, ("cap", a_, b_, extra[1] * s))
    arm = (T((0.0, 0.6)), T((0.0, 3.2)), 0.62 * s)
    return tparts, arm, [T(q) for q in lms]


def _parts_box(tparts, outline_w: float) -> tuple[float, float, float, float]:
    """The xyxy box of a hand's parts including their outline, which is what the hand box label must cover
    (landmarks alone would cut off fingertips and the palm's edge)."""
    xs, ys = [], []
    for p in tparts:
        if p[0] == "poly":
            xs += list(p[1][:, 0])
            ys += list(p[1][:, 1])
            continue
        if p[0] == "cap":
            h = p[3] / 2 + outline_w
            for q in (p[1], p[2]):
                xs += [q[0] - h, q[0] + h]
                ys += [q[1] - h, q[1] + h]
        else:
            h = p[2] + p[3] / 2 + outline_w
            xs += [p[1][0] - h, p[1][0] + h]
            ys += [p[1][1] - h, p[1][1] + h]
    return (min(xs), min(ys), max(xs), max(ys))


def _draw_parts(d, tparts, skin, dark, ow) -> None:
    for fill, grow in ((dark, ow), (skin, 0.0)):
        for p in tparts:
            if p[0] == "poly":
                pts = p[1]
                if grow:
                    c = pts.mean(0)
                    v = pts - c
                    n = np.linalg.norm(v, axis=1, keepdims=True) + 1e-9
                    pts = pts + v / n * grow
                d.polygon([tuple(q) for q in pts], fill=fill)
            elif p[0] == "cap":
                capsule(d, p[1], p[2], p[3] + 2 * grow, fill)
            else:
                c, rr, w = p[1], p[2], p[3] + 2 * grow
                d.ellipse(
                    [c[0] - rr - w / 2, c[1] - rr - w / 2, c[0] + rr + w / 2, c[1] + rr + w / 2],
                    outline=fill,
                    width=max(1, int(round(w))),
                )


# --------------------------------------------------------------------------------------------------------- people
def draw_person(
    d: ImageDraw.ImageDraw,
    cx: float,
    top: float,
    h: float,
    *,
    skin,
    hair,
    shirt,
    pants,
    outfit: str = "casual",
    turn=(0.0, 0.0),
    back: bool = False,
    hands=None,
    child: bool = False,
    tie=(180, 30, 40),
    expression: int = 0,
) -> dict:
    """A standing person of height `h` (feet at top + h). `outfit`: casual (short sleeves), suit (jacket, white shirt,
    tie) or apron. `hands`: optional (left, right) absolute hand positions (e.g. holding hands). Returns
    {"box": xyxy px, "head": head box, "eyes": eye midpoint}."""
    hr = (0.11 if child else 0.085) * h
    hy = top + hr
    sh_y = top + 2 * hr + 0.03 * h
    sw, hip_y = (0.13 if child else 0.16) * h, top + (0.58 if child else 0.56) * h
    lw = (0.1 if child else 0.09) * h
    aw = (0.075 if child else 0.065) * h
    ow = max(1.0, 0.012 * h)
    xs = [cx - sw, cx + sw]
    for s in (-1, 1):  # legs
        capsule(d, (cx + s * 0.07 * h, hip_y), (cx + s * 0.085 * h, top + 0.955 * h), lw + 2 * ow, OUTLINE)
        capsule(d, (cx + s * 0.07 * h, hip_y), (cx + s * 0.085 * h, top + 0.955 * h), lw, pants)
        d.ellipse(
            [cx + s * 0.085 * h - lw * 0.7, top + 0.94 * h, cx + s * 0.085 * h + lw * 0.7, top + h], fill=(25, 20, 20)
        )
    jacket = shirt
    torso = [(cx - sw, sh_y), (cx + sw, sh_y), (cx + 0.13 * h, hip_y + 0.02 * h), (cx - 0.13 * h, hip_y + 0.02 * h)]
    d.polygon(torso, fill=jacket, outline=OUTLINE, width=max(1, int(ow)))
    _draw_outfit(d, outfit, back, cx, h, sh_y, hip_y, ow, tie)
    default = [(cx - 0.21 * h, top + 0.57 * h), (cx + 0.21 * h, top + 0.57 * h)]
    hands = hands or default
    for k, s in enumerate((-1, 1)):
        hp = np.array(hands[k] if hands[k] is not None else default[k], dtype=float)
        xs += _draw_arm(d, s, hp, cx, h, sw, sh_y, aw, ow, outfit, skin, jacket)
    face = draw_face(d, cx, hy, hr, skin, hair, turn=turn, back=back, expression=expression)
    return {"box": (min(xs), top - 0.005 * h, max(xs), top + h), "head": face["box"], "eyes": face["eyes"]}


def _draw_outfit(d, outfit: str, back: bool, cx: float, h: float, sh_y: float, hip_y: float, ow: float, tie) -> None:
    """What tells the PISC outfits apart on the torso: a suit's white shirt, tie and lapels (front only) or an
    apron and its straps; casual clothes add nothing."""
    if outfit == "suit" and not back:
        d.polygon([(cx - 0.06 * h, sh_y), (cx + 0.06 * h, sh_y), (cx, sh_y + 0.17 * h)], fill=(245, 245, 245))
        d.polygon(
            [
                (cx - 0.014 * h, sh_y + 0.01 * h),
                (cx + 0.014 * h, sh_y + 0.01 * h),
                (cx + 0.022 * h, sh_y + 0.2 * h),
                (cx, sh_y + 0.23 * h),
                (cx - 0.022 * h, sh_y + 0.2 * h),
            ],
            fill=tie,
        )
        for s in (-1, 1):  # lapels
            d.line(
                [(cx + s * 0.06 * h, sh_y), (cx + s * 0.01 * h, sh_y + 0.22 * h)], fill=OUTLINE, width=max(1, int(ow))
            )
    if outfit == "apron":
        d.rectangle(
            [cx - 0.11 * h, sh_y + 0.08 * h, cx + 0.11 * h, hip_y + 0.12 * h], fill=(240, 240, 235), outline=OUTLINE
        )
        for s in (-1, 1):
            d.line(
                [(cx + s * 0.09 * h, sh_y + 0.08 * h), (cx + s * 0.05 * h, sh_y - 0.01 * h)],
                fill=(240, 240, 235),
                width=max(1, int(0.02 * h)),
            )


def _draw_arm(d, s: int, hp, cx, h, sw, sh_y, aw, ow, outfit: str, skin, jacket) -> list[float]:
    """The arm on side `s` from the shoulder to the hand at `hp` (short sleeves show skin; a suit's sleeve is
    full length); returns the x extents it adds to the person's box, since hands may reach past the torso."""
    sh = np.array([cx + s * (sw - 0.02 * h), sh_y + 0.03 * h])
    capsule(d, sh, hp, aw + 2 * ow, OUTLINE)
    if outfit == "casual" or outfit == "apron":
        el = sh + (hp - sh) * 0.4
        capsule(d, el, hp, aw, skin)
        capsule(d, sh, el, aw * 1.15, jacket)
    else:
        capsule(d, sh, hp, aw, jacket)
    d.ellipse([hp[0] - aw * 0.7, hp[1] - aw * 0.7, hp[0] + aw * 0.7, hp[1] + aw * 0.7], fill=skin, outline=OUTLINE)
    return [hp[0] - aw, hp[0] + aw, sh[0] - aw, sh[0] + aw]


def draw_counter(d: ImageDraw.ImageDraw, x0: float, y0: float, x1: float, y1: float, rng: np.random.Generator) -> None:
    """A shop counter (wood front, darker top slab) with a few goods on it."""
    wood = col(np.array((150, 100, 55)) + rng.normal(0, 12, 3))
    cw = x1 - x0
    d.rectangle([x0, y0, x1, y1], fill=wood, outline=OUTLINE, width=2)
    t = max(2.0, 0.04 * cw)
    d.rectangle([x0 - t / 2, y0 - t, x1 + t / 2, y0 + t / 3], fill=col(np.array(wood) * 0.6), outline=OUTLINE)
    for k in range(3):
        x = x0 + (x1 - x0) * (0.12 + 0.3 * k)
        d.line([(x, y0 + 0.06 * cw), (x, y1 - 0.03 * cw)], fill=col(np.array(wood) * 0.75), width=2)
    for _ in range(int(rng.integers(1, 4))):
        gw, gh = rng.uniform(0.08, 0.16) * cw, rng.uniform(0.08, 0.18) * cw
        gx = rng.uniform(x0 + 0.05 * cw, x1 - 0.05 * cw - gw)
        d.rectangle([gx, y0 - t - gh, gx + gw, y0 - t], fill=pick(rng, BRIGHT), outline=OUTLINE)


# --------------------------------------------------------------------------------------------------------- objects
def draw_target(d: ImageDraw.ImageDraw, cx: float, cy: float, rad: float, kind: int, fill) -> None:
    """A salient object (saturated colour, thick dark outline): 0 ball, 1 box, 2 triangle, 3 star."""
    ow = max(2, int(0.18 * rad))
    if kind == 0:
        d.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=fill, outline=(10, 10, 10), width=ow)
        d.ellipse([cx - rad * 0.45, cy - rad * 0.55, cx - rad * 0.05, cy - rad * 0.15], fill=(255, 255, 255))
    elif kind == 1:
        d.rectangle([cx - rad, cy - rad * 0.8, cx + rad, cy + rad * 0.8], fill=fill, outline=(10, 10, 10), width=ow)
    elif kind == 2:
        d.polygon(
            [(cx, cy - rad), (cx + rad, cy + rad * 0.8), (cx - rad, cy + rad * 0.8)],
            fill=fill,
            outline=(10, 10, 10),
            width=ow,
        )
    else:
        t = np.linspace(-math.pi / 2, 1.5 * math.pi, 11)[:-1]
        rr = np.where(np.arange(10) % 2 == 0, rad, rad * 0.45)
        d.polygon(
            [(cx + a * math.cos(b), cy + a * math.sin(b)) for a, b in zip(rr, t)],
            fill=fill,
            outline=(10, 10, 10),
            width=ow,
        )

"""What `predict --visualize` draws: an image's boxes (every one, with its kind, role and score), the gaze heatmap
and point, and the answers; a clip's frames with their tracks.

Labels never hide: each box's label takes the first place around its box (above, inside the top, below, inside
the bottom, above to the right) that overlaps no label placed before it, and the answers go in a panel below the
picture, never on it. Images are drawn with matplotlib (the heatmap blend), video frames with Pillow (fast).
"""

from __future__ import annotations

from pathlib import Path

KIND_COLORS = {"face": "#00b050", "hand": "#f79009", "head": "#2e90fa", "person": "#e0308a"}
ROLE_COLORS = ["#00b050", "#e0308a", "#f79009", "#2e90fa"]


def _overlap(a, b) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def place_labels(boxes, sizes, width: float, height: float) -> list[tuple[float, float]]:
    """Top-left corner of each box's label (`sizes`: label width, height, in the boxes' units), inside the image
    and clear of the labels placed before it where any candidate place allows (else the least covered one)."""
    placed, corners = [], []
    for (x1, y1, x2, y2), (lw, lh) in zip(boxes, sizes):
        candidates = [(x1, y1 - lh), (x1, y1), (x1, y2), (x1, y2 - lh), (x2 - lw, y1 - lh), (x2 - lw, y2)]
        best = None
        for cx, cy in candidates:
            cx, cy = min(max(cx, 0.0), max(width - lw, 0.0)), min(max(cy, 0.0), max(height - lh, 0.0))
            rect = (cx, cy, cx + lw, cy + lh)
            cover = sum(_overlap(rect, r) for r in placed)
            if best is None or cover < best[0]:
                best = (cover, rect)
            if cover == 0:
                break
        placed.append(best[1])
        corners.append(best[1][:2])
    return corners


def box_tag(box: dict) -> str:
    """A box's tag, e.g. "person 0 0.91": the kind, the role where one is set, the detector's score; "(unused)" for
    a detection no task read."""
    parts = [box.get("kind") or "box"]
    if box.get("role") is not None and (box.get("kind") in (None, "person")):
        parts.append(str(box["role"]))
    if box.get("score") is not None:
        parts.append(f"{box['score']:.2f}")
    if box.get("unused"):
        parts.append("(unused)")
    return " ".join(parts)


def drawn_boxes(result: dict) -> list[dict]:
    """The boxes an image's overlay shows: those the tasks read, then every detection that none read."""
    out = [dict(b) for b in result["boxes"]]
    for d in result.get("detections") or []:
        if d.get("box") is None:
            out.append({**d, "unused": True})
    return out


def answer_lines(tasks: dict) -> list[str]:
    lines = []
    for name, t in tasks.items():
        if "skipped" in t:
            lines.append(f"{name}: skipped ({t['skipped']})")
        elif "probs" in t:
            lines.append(f"{name}: {t['label']} {t['probs'][t['label']]:.2f}")
        elif "point" in t:
            inout = "" if t.get("inout") is None else f", in-frame {t['inout']:.2f}"
            lines.append(f"{name}: ({t['point'][0]:.0f}, {t['point'][1]:.0f}) px{inout}")
    return lines


def save_overlay(image, result: dict, path: Path) -> Path:
    """PNG: the image with its boxes and labels, the gaze heatmap blended in with an arrow head -> point, and the
    answers in a panel below the image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    w, h = image.size
    scale = 8.0 / max(w, h)  # the longer side is 8 inches (800 px)
    lines = answer_lines(result["tasks"])
    fig_w, img_h = max(w * scale, 0.5), max(h * scale, 0.5)
    panel_h = (0.18 * len(lines) + 0.12) if lines else 0.0  # inches: 9 pt lines
    fig = Figure(figsize=(fig_w, img_h + panel_h), dpi=100)  # no pyplot: no global state, no GUI
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, panel_h / (img_h + panel_h), 1, img_h / (img_h + panel_h)))
    ax.imshow(image, extent=(0, w, h, 0), interpolation="bilinear")
    gaze = next((t for t in result["tasks"].values() if "heatmap" in t), None)  # a heatmap task's result
    if gaze:
        _draw_heatmap(ax, gaze["heatmap"], w, h)
    _draw_labelled_boxes(ax, drawn_boxes(result), w, h, px=1 / (scale * 100))  # px: image pixels per figure pixel
    if gaze and "point" in gaze:
        _draw_gaze_arrow(ax, gaze["head_center"], gaze["point"])
    if lines:
        fig.text(
            0.01,
            (panel_h - 0.06) / (img_h + panel_h),
            "\n".join(lines),
            va="top",
            ha="left",
            fontsize=9,
            family="monospace",
        )
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    fig.savefig(path, dpi=100)
    return path


def _draw_heatmap(ax, heatmap, w: int, h: int) -> None:
    # min-max stretched so that a flat-ish heatmap still shows where it peaks
    import numpy as np

    heat = np.asarray(heatmap, dtype=np.float64)
    span = float(heat.max() - heat.min())
    heat = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)
    ax.imshow(heat, extent=(0, w, h, 0), cmap="jet", alpha=0.45, interpolation="bilinear", vmin=0, vmax=1)


def _draw_labelled_boxes(ax, boxes: list[dict], w: int, h: int, px: float) -> None:
    """Label sizes are estimated in figure pixels (`px` image pixels each) so that place_labels keeps them apart
    at the size they are drawn."""
    from matplotlib.patches import Rectangle

    tags = [box_tag(b) for b in boxes]
    corners = place_labels([b["xyxy"] for b in boxes], [(len(t) * 6.2 * px + 4 * px, 13 * px) for t in tags], w, h)
    for b, tag, (lx, ly) in zip(boxes, tags, corners):
        x1, y1, x2, y2 = b["xyxy"]
        color = KIND_COLORS.get(b.get("kind")) or ROLE_COLORS[min(b.get("role") or 0, len(ROLE_COLORS) - 1)]
        dashed = b.get("source") == "whole_image" or b.get("unused")
        ax.add_patch(
            Rectangle(
                (x1, y1),
                x2 - x1,
                y2 - y1,
                fill=False,
                edgecolor=color,
                linewidth=1 if b.get("unused") else 2,
                linestyle="--" if dashed else "-",
            )
        )
        ax.text(
            lx + 2 * px,
            ly + px,
            tag,
            color="white",
            fontsize=8,
            va="top",
            ha="left",
            clip_on=True,
            bbox={"facecolor": color, "alpha": 0.85, "pad": 1, "edgecolor": "none"},
        )


def _draw_gaze_arrow(ax, head, point) -> None:
    # drawn twice, wide white under narrow blue, so that the arrow reads on dark and light images alike
    (hx, hy), (gx, gy) = head, point
    ax.annotate("", xy=(gx, gy), xytext=(hx, hy), arrowprops={"arrowstyle": "-|>", "color": "white", "lw": 2.5})
    ax.annotate("", xy=(gx, gy), xytext=(hx, hy), arrowprops={"arrowstyle": "-|>", "color": "#2f6fde", "lw": 1.5})
    ax.plot([gx], [gy], "o", color="white", markeredgecolor="#2f6fde", markersize=7)


# ------------------------------------------------------------------------------------------ video frames
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def track_lines(row: dict) -> list[str]:
    """One line per track that has answers, and one for the pair: what the strip below a video frame says."""
    lines = []
    for t in row["tracks"]:
        if t["tasks"]:
            lines.append(f"{t['kind']} {t['track']}: " + "; ".join(answer_lines(t["tasks"])))
    if row.get("pair"):
        a, b = row["pair"]["tracks"]
        lines.append(f"persons {a} + {b}: " + "; ".join(answer_lines(row["pair"]["tasks"])))
    return lines or ["nobody detected in this frame"]


def draw_frame(image, row: dict, max_lines: int = 6):
    """A video frame with every track's boxes (kind and track id), gaze arrows and, in a strip below, the answers
    (at most `max_lines` lines, so every frame of a clip has the same size)."""
    from PIL import Image, ImageDraw

    w, h = image.size
    size = max(11, round(max(w, h) / 60))
    font = _font(size)
    strip = (size + 4) * max_lines + 6
    canvas = Image.new("RGB", (w + (w % 2), h + strip + ((h + strip) % 2)), (20, 20, 20))  # even sides for yuv420p
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    boxes = [(t, b) for t in row["tracks"] for b in t["boxes"]]
    tags = [f"{b['kind']} {t['track']}" for t, b in boxes]
    sizes = [(draw.textlength(tag, font=font) + 6, size + 4) for tag in tags]
    for (_, b), tag, (lx, ly) in zip(boxes, tags, place_labels([b["xyxy"] for _, b in boxes], sizes, w, h)):
        color = KIND_COLORS.get(b["kind"], "#ffffff")
        draw.rectangle(b["xyxy"], outline=color, width=max(2, size // 6))
        draw.rectangle((lx, ly, lx + draw.textlength(tag, font=font) + 6, ly + size + 4), fill=color)
        draw.text((lx + 3, ly + 2), tag, fill="white", font=font)
    for t in row["tracks"]:
        gaze = next((a for a in t["tasks"].values() if "point" in a and "head_center" in a), None)
        if gaze:
            draw.line([tuple(gaze["head_center"]), tuple(gaze["point"])], fill="#2f6fde", width=max(2, size // 5))
            x, y = gaze["point"]
            draw.ellipse((x - size / 3, y - size / 3, x + size / 3, y + size / 3), fill="white", outline="#2f6fde")
    stamp = f"frame {row['frame']}" + (f"  {row['time_s']:.2f} s" if row.get("time_s") is not None else "")
    lines = [stamp, *track_lines(row)][:max_lines]
    for i, line in enumerate(lines):
        draw.text((6, h + 4 + i * (size + 4)), line, fill="white", font=font)
    return canvas

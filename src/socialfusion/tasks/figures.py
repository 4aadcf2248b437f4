"""Report figures the tasks draw: a confusion matrix (classification) and gaze examples (heatmaps on images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.images import load_image


def _pyplot():
    # matplotlib is imported when a figure is drawn, and only after choosing the Agg backend (no display needed)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_png(matrix, classes, path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted)."""
    plt = _pyplot()
    m = np.asarray(matrix, dtype=float)
    m = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = max(4, 0.28 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def gaze_examples_png(samples, predictions, path: Path) -> Path:
    """Predicted heatmaps over validation images, with the head box, the annotated (+) and predicted (x) points."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(samples), figsize=(3.2 * len(samples), 3.4))
    for ax, s, pred in zip(np.atleast_1d(axes), samples, predictions):
        img = load_image(s.image_path())
        w, hgt = img.size
        ax.imshow(img)
        ax.imshow(pred["heatmap"], extent=(0, w, hgt, 0), alpha=0.5, cmap="jet")
        x1, y1, x2, y2 = s.boxes[0].xyxy
        ax.add_patch(
            plt.Rectangle((x1 * w, y1 * hgt), (x2 - x1) * w, (y2 - y1) * hgt, fill=False, color="white", lw=1.5)
        )
        px, py = pred["point"][0] * w, pred["point"][1] * hgt
        ax.annotate(
            "",
            xy=(px, py),
            xytext=((x1 + x2) / 2 * w, (y1 + y2) / 2 * hgt),
            arrowprops={"arrowstyle": "->", "color": "white", "lw": 1.5},
        )
        for gx, gy in s.points or []:
            ax.plot(gx * w, gy * hgt, "g+", ms=10, mew=2)
        ax.plot(px, py, "rx", ms=10, mew=2)
        ax.set_axis_off()
    fig.suptitle("gaze: heatmap, head box, annotated (+) and predicted (x) target")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path

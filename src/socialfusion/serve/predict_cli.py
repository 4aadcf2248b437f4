"""`socialfusion predict`: run a checkpoint (or preset) on image files; write predictions.jsonl (+ PNG overlays).

    socialfusion predict --ckpt DIR|PRESET (--images A.jpg B.png ... | --dir DIR) [--boxes boxes.json]
                         [--tasks all|lam,gaze] --out DIR [--visualize] [--batch-size 8] [--detect]

boxes.json maps an image file name (or the path as given) to its list of boxes
``[{"xyxy": [x1, y1, x2, y2], "kind": "face", "normalized": false}, ...]`` (kinds face, hand, head, person; each
task reads its own kind, see `socialfusion.api` and the README for a complete example); images it does not name
use the whole image as the box of each single-box task, or with --detect get their boxes from the detectors
(`socialfusion.detect`, the optional `detect` extra; detected boxes carry their score). The model card's line goes to stderr first, with a loud
warning for an untrained preset. Unreadable images and invalid boxes are reported by file name and counted; they never
stop the run. Outputs in --out: predictions.jsonl (one line per image; the gaze heatmap is omitted, its point
kept), summary.json (counts and the skipped files with their reasons), vis/<name>.png with --visualize.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from ..errors import UserError, add_console_options

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
ROLE_COLORS = ["#00b050", "#e0308a", "#f79009", "#2e90fa"]
KIND_COLORS = {"face": "#00b050", "hand": "#f79009", "head": "#2e90fa", "person": "#e0308a"}


def _parser() -> argparse.ArgumentParser:
    p = add_console_options(argparse.ArgumentParser(prog="socialfusion predict", description="run a SocialFusion model on your images and boxes"))
    p.add_argument("--ckpt", required=True, help="checkpoint directory or preset name (e.g. tiny)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", metavar="PATH", help="image files")
    src.add_argument("--dir", help=f"a folder of images ({', '.join(sorted(IMAGE_SUFFIXES))}), not recursive")
    p.add_argument("--boxes", help="JSON file: image file name -> list of boxes")
    p.add_argument("--tasks", default="all", help="all, or a comma list such as lam,gaze")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--visualize", action="store_true", help="also write PNG overlays to OUT/vis/")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument("--workers", default="auto", help="processes decoding the next images while the model runs: a count, 0 (none) or auto "
                   "(min(4, cpus - 1), the default)")  # fmt: skip
    p.add_argument("--detect", action="store_true",
                   help="find face, head, hand and person boxes in images that --boxes does not name (extra: detect)")  # fmt: skip
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (the best available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


class _UsageError(UserError):
    pass


def _check_tasks(ckpt: str, tasks: str) -> None:
    """Unknown task names, found from the checkpoint's (or preset's) config before the model is built."""
    from ..api import TaskError
    from ..config import load_config
    from ..models.checkpoint import read_checkpoint_config

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names or "all" in (n.lower() for n in names):
        return
    config = read_checkpoint_config(ckpt)[0] if Path(ckpt).is_dir() else load_config(ckpt)
    known = [td.task for td in config.data.tasks]
    unknown = [n for n in names if n not in known]
    if known and unknown:
        raise TaskError(f"unknown task(s) {', '.join(unknown)} (known: {', '.join(known)})")


def _read_boxes_file(path: str) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise _UsageError(f"cannot read --boxes {path}: {err}") from err
    except json.JSONDecodeError as err:
        raise _UsageError(f"--boxes {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise _UsageError(f"--boxes {path} must map image file names to lists of boxes")
    return data


def _list_images(args) -> list[Path]:
    if args.images:
        return [Path(p) for p in args.images]
    folder = Path(args.dir)
    if not folder.is_dir():
        raise _UsageError(f"--dir {folder} is not a folder")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _boxes_for(path: Path, table: dict, given: str):
    for key in (given, str(path), path.name):
        if key in table:
            return table[key], key
    return None, None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from tqdm.auto import tqdm

    from ..api import PredictInputError, SocialFusion, UntrainedModelWarning, parse_boxes, result_to_json
    from ..config import resolve_num_workers
    from ..data.images import ImageError
    from ..data.pipeline import decoded_images

    # user errors (UserError) are printed by the dispatcher (socialfusion.cli), as one line, exit status 2
    if args.batch_size < 1:
        raise _UsageError("--batch-size must be >= 1")
    if not (args.workers == "auto" or args.workers.isdigit()):
        raise _UsageError(f"--workers must be a count >= 0 or auto, got {args.workers!r}")
    table = _read_boxes_file(args.boxes) if args.boxes else {}
    paths = _list_images(args)
    if not paths:
        raise _UsageError("no images to process", hint=f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}")
    _check_tasks(args.ckpt, args.tasks)
    if args.detect:  # before the model loads: a missing extra is a one-line error with the install hint
        from ..detect import require

        require()
    with warnings.catch_warnings():  # the warning is printed below, once, in the CLI's words
        warnings.simplefilter("ignore", UntrainedModelWarning)
        predictor = SocialFusion.from_pretrained(args.ckpt, device=args.device)
    print(f"model card: {predictor.card_summary}", file=sys.stderr)
    if predictor.warning:
        print(f"WARNING: {predictor.warning}", file=sys.stderr)
    tasks = predictor.resolve_tasks(args.tasks)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vis_dir = out / "vis"
    if args.visualize:
        vis_dir.mkdir(exist_ok=True)
    skipped: list[dict] = []
    used_keys: set[str] = set()
    vis_names: set[str] = set()
    n_done = n_clipped = 0
    given_names = args.images or [str(p) for p in paths]
    # workers decode the next batch's files during this batch's forward pass (with one batch there is nothing to overlap)
    decoded = decoded_images(paths, resolve_num_workers(args.workers) if len(paths) > args.batch_size else 0)

    def skip(name: str, reason: str) -> None:
        skipped.append({"image": name, "reason": reason})
        tqdm.write(f"skipped {name}: {reason}", file=sys.stderr)

    with open(out / "predictions.jsonl", "w", encoding="utf-8") as fh, tqdm(
        total=len(paths), desc="predict", unit="img", disable=args.no_progress
    ) as bar:
        for start in range(0, len(paths), args.batch_size):
            chunk = list(zip(paths[start : start + args.batch_size], given_names[start : start + args.batch_size]))
            good = []  # (given name, PIL image, parsed boxes)
            for path, given in chunk:
                try:
                    image = next(decoded)
                    if isinstance(image, ImageError):
                        raise image
                    raw, key = _boxes_for(path, table, given)
                    if key is not None:
                        used_keys.add(key)
                    # validate now: a bad box skips this image only
                    predictor.check_untagged_boxes(parse_boxes(raw, image.size, given), tasks, given)
                    good.append((given, image, raw))
                except ImageError as err:
                    skip(given, f"{err.reason}" + (f" ({err.detail})" if err.detail else ""))
                except PredictInputError as err:
                    skip(given, str(err))
            if good:
                results = predictor.predict([g[1] for g in good], boxes=[g[2] for g in good], tasks=tasks, batch_size=args.batch_size,
                                            detect=args.detect)  # fmt: skip
                for (given, image, _), res in zip(good, results):
                    res["image"] = given
                    n_clipped += sum(bool(b.get("clipped")) for b in res["boxes"])
                    fh.write(json.dumps(result_to_json(res, heatmap="omit")) + "\n")
                    if args.visualize:
                        stem = Path(given).stem
                        name, k = f"{stem}.png", 1
                        while name in vis_names:
                            k += 1
                            name = f"{stem}-{k}.png"
                        vis_names.add(name)
                        save_overlay(image, res, vis_dir / name)
                    n_done += 1
            bar.update(len(chunk))

    unused = sorted(set(table) - used_keys)
    summary = {"images": len(paths), "predicted": n_done, "skipped": len(skipped), "skipped_files": skipped,
               "tasks": tasks, "model": predictor.name, "model_card": predictor.card_summary, "warning": predictor.warning,
               "boxes_file_unused_keys": unused, "clipped_boxes": n_clipped}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    if n_clipped:
        print(f"note: {n_clipped} box(es) extended slightly past their image's border and were clipped to it", file=sys.stderr)
    if unused:
        print(f"warning: {len(unused)} entries of --boxes name no processed image: {unused[:5]}", file=sys.stderr)
    print(f"predicted {n_done} of {len(paths)} images, skipped {len(skipped)}; wrote {out / 'predictions.jsonl'}", file=sys.stderr)
    return 0 if n_done > 0 else 1


def save_overlay(image, result: dict, path: Path) -> Path:
    """PNG: the image, boxes in role colours, the gaze heatmap blended in with an arrow head -> point, labels."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    w, h = image.size
    scale = 8.0 / max(w, h)  # the longer side is 8 inches (800 px)
    fig = Figure(figsize=(max(w * scale, 0.5), max(h * scale, 0.5)), dpi=100)  # no pyplot: no global state, no GUI
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image, extent=(0, w, h, 0), interpolation="bilinear")
    gaze = next((t for t in result["tasks"].values() if "heatmap" in t), None)  # a heatmap task's result
    if gaze:
        heat = gaze["heatmap"].astype(np.float64)
        span = float(heat.max() - heat.min())
        heat = (heat - heat.min()) / span if span > 0 else np.zeros_like(heat)  # min-max stretch
        ax.imshow(heat, extent=(0, w, h, 0), cmap="jet", alpha=0.45, interpolation="bilinear", vmin=0, vmax=1)
    for b in result["boxes"]:
        x1, y1, x2, y2 = b["xyxy"]
        color = KIND_COLORS.get(b.get("kind")) or ROLE_COLORS[min(b["role"] or 0, len(ROLE_COLORS) - 1)]
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=2,
                               linestyle="--" if b.get("source") == "whole_image" else "-"))
        tag = (b.get("kind") or f"role {b['role']}") + (f" {b['score']:.2f}" if b.get("score") is not None else "")
        ax.text(x1 + 2, y1 + 2, tag, color="white", fontsize=8, va="top",
                bbox={"facecolor": color, "alpha": 0.8, "pad": 1, "edgecolor": "none"})
    if gaze and "point" in gaze:
        (hx, hy), (px, py) = gaze["head_center"], gaze["point"]
        ax.annotate("", xy=(px, py), xytext=(hx, hy), arrowprops={"arrowstyle": "-|>", "color": "white", "lw": 2.5})
        ax.annotate("", xy=(px, py), xytext=(hx, hy), arrowprops={"arrowstyle": "-|>", "color": "#2f6fde", "lw": 1.5})
        ax.plot([px], [py], "o", color="white", markeredgecolor="#2f6fde", markersize=7)
    lines = []
    for name, t in result["tasks"].items():
        if "skipped" in t:
            lines.append(f"{name}: skipped")
        elif "probs" in t:
            lines.append(f"{name}: {t['label']} {t['probs'][t['label']]:.2f}")
        elif "point" in t:
            inout = "" if t.get("inout") is None else f", in-frame {t['inout']:.2f}"
            lines.append(f"{name}: ({t['point'][0]:.0f}, {t['point'][1]:.0f}) px{inout}")
    if lines:
        ax.text(0.01, 0.99, "\n".join(lines), transform=ax.transAxes, va="top", ha="left", fontsize=9, family="monospace",
                color="white", bbox={"facecolor": "black", "alpha": 0.6, "pad": 4, "edgecolor": "none"})
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.axis("off")
    fig.savefig(path, dpi=100)
    return path


if __name__ == "__main__":
    sys.exit(main())

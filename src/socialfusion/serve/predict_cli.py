"""`socialfusion predict`: run a checkpoint (or preset) on images or clips; write predictions.jsonl (+ overlays).

    socialfusion predict --ckpt DIR|PRESET (--images A.jpg B.png ... | --dir DIR | --video CLIP|FRAMES_DIR ...)
                         [--boxes boxes.json] [--detect] [--fps 2] [--tasks all|lam,gaze] --out DIR [--visualize]
                         [--batch-size 8] [--threads N]

Images: boxes.json maps an image file name (or the path as given) to its list of boxes
``[{"xyxy": [x1, y1, x2, y2], "kind": "face", "normalized": false}, ...]`` (kinds face, hand, head, person; each
task reads its own kind, see `socialfusion.api` and the README for a complete example); images it does not name
use the whole image as the box of each single-box task, or with --detect get their boxes from the detectors
(`socialfusion.detect`, the optional `detect` extra). Clips (`--video`: video files or folders of frames) are
sampled at --fps, searched by the detectors on every sampled frame, and the boxes linked into tracks
(`socialfusion.clips`); every task answers per track and frame.

Everything the user names is checked before the model loads: the files exist, clips open as videos with frames of
a sane size, the tasks exist, the detection extra is installed when needed. An image that exists but does not
decode, or whose boxes are invalid, is a counted skip named on stderr. Outputs in --out (schema: docs/USAGE.md):
predictions.jsonl (a line per image or per frame), gaze_heatmaps.npy (the gaze heatmaps, referenced per row),
tracks.json (clips: the per-track summary), summary.json, vis/ with --visualize (PNG per image, MP4 per clip).
Exit status: 0 when something was predicted, 1 when every input was skipped, 2 for a user error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from .. import detect as detection
from ..api import PredictInputError, SocialFusion, TaskError, UntrainedModelWarning, parse_boxes, result_to_json
from ..clips import DEFAULT_FPS, VIDEO_SUFFIXES, probe
from ..config import load_config, resolve_num_workers, split_list
from ..core.images import IMAGE_SUFFIXES, ImageError
from ..data.pipeline import decoded_images
from ..errors import UserError, add_console_options
from ..models.checkpoint import read_checkpoint_config
from ..runtime import THREADS_HELP, parse_threads
from .outputs import Outputs
from .overlay import save_overlay
from .predict_clips import run_clips


def _parser() -> argparse.ArgumentParser:
    p = add_console_options(
        argparse.ArgumentParser(
            prog="socialfusion predict", description="run a SocialFusion model on your images (and boxes) or clips"
        )
    )
    p.add_argument("--ckpt", required=True, help="checkpoint directory or preset name (e.g. tiny)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", metavar="PATH", help="image files")
    src.add_argument("--dir", help=f"a folder of images ({', '.join(sorted(IMAGE_SUFFIXES))}), not recursive")
    src.add_argument(
        "--video",
        nargs="+",
        metavar="CLIP",
        help="video files (extra: video) or folders of frames: detection, tracks and "
        "answers per track and frame (needs the detect extra)",
    )
    p.add_argument("--boxes", help="JSON file: image file name -> list of boxes (images only)")
    p.add_argument("--tasks", default="all", help="all, or a comma list such as lam,gaze")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--visualize", action="store_true", help="also write overlays to OUT/vis/ (PNG per image, MP4 per clip)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    p.add_argument(
        "--workers",
        default="auto",
        help="processes decoding the next images while the model runs: a count, 0 (none) or auto "
        "(min(4, cpus - 1), the default)",
    )
    p.add_argument(
        "--detect",
        action="store_true",
        help="find face, head, hand and person boxes in images that "
        "--boxes does not name (extra: detect); clips always do",
    )
    p.add_argument(
        "--fps",
        type=float,
        default=DEFAULT_FPS,
        help=f"clips: frames sampled per second of video (default {DEFAULT_FPS:g}; at most the clip's own rate)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps, or auto (the best available)")
    p.add_argument("--threads", type=parse_threads, default="auto", metavar="N", help=THREADS_HELP)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


class _UsageError(UserError):
    pass


def _check_tasks(ckpt: str, tasks: str) -> None:
    """Unknown task names, found from the checkpoint's (or preset's) config before the model is built."""
    names = split_list(tasks) or []
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
    """The image files, every one checked to exist (a typo is a user error before the model loads, not a skip)."""
    if not args.images:
        folder = Path(args.dir)
        if not folder.is_dir():
            raise _UsageError(f"--dir {folder} is not a folder")
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    paths = [Path(p) for p in args.images]
    videos = [str(p) for p in paths if p.suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        raise _UsageError(
            f"{videos[0]} is a video, not an image",
            hint=f"socialfusion predict --video {' '.join(videos)} --ckpt ... --out ...",
        )
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise _UsageError(f"image file not found: {missing[0]}{more}", hint="check the paths given to --images")
    return paths


def _boxes_for(path: Path, table: dict, given: str):
    for key in (given, str(path), path.name):
        if key in table:
            return table[key], key
    return None, None


def _check_args(args) -> None:
    if args.batch_size < 1:
        raise _UsageError("--batch-size must be >= 1")
    if not (args.workers == "auto" or args.workers.isdigit()):
        raise _UsageError(f"--workers must be a count >= 0 or auto, got {args.workers!r}")
    if args.video and args.boxes:
        raise _UsageError("--boxes is for images; clips get their boxes from detection, frame by frame")
    if not args.fps > 0:
        raise _UsageError(f"--fps must be > 0, got {args.fps:g}")


def _load(args):
    """The predictor, its card's line (and any warning) on stderr."""
    with warnings.catch_warnings():  # the warning is printed below, once, in the CLI's words
        warnings.simplefilter("ignore", UntrainedModelWarning)
        predictor = SocialFusion.from_pretrained(args.ckpt, device=args.device, threads=args.threads)
    print(f"model card: {predictor.card_summary}", file=sys.stderr)
    if predictor.warning:
        print(f"WARNING: {predictor.warning}", file=sys.stderr)
    return predictor


def main(argv: list[str] | None = None) -> int:
    # user errors (UserError) are printed by the dispatcher (socialfusion.cli), as one line, exit status 2
    args = _parser().parse_args(argv)
    _check_args(args)
    _check_tasks(args.ckpt, args.tasks)
    if args.video:
        infos = [probe(clip, args.fps) for clip in args.video]  # before the model loads: a bad clip costs nothing
        detection.require()
        return run_clips(_load(args), args, infos)
    table = _read_boxes_file(args.boxes) if args.boxes else {}
    paths = _list_images(args)
    if not paths:
        raise _UsageError("no images to process", hint=f"image files end in {', '.join(sorted(IMAGE_SUFFIXES))}")
    if args.detect:  # before the model loads: a missing extra is a one-line error with the install hint
        detection.require()
    return _run_images(_load(args), args, paths, table)


def _run_images(predictor, args, paths: list[Path], table: dict) -> int:
    from tqdm.auto import tqdm

    tasks = predictor.resolve_tasks(args.tasks)
    outputs = Outputs(Path(args.out), args.visualize)
    run = {"skipped": [], "used_keys": set(), "done": 0, "clipped": 0, "t0": time.perf_counter()}
    given_names = args.images or [str(p) for p in paths]
    # workers decode the next batch's files during this batch's forward pass (with one batch there is nothing to
    # overlap)
    decoded = decoded_images(paths, resolve_num_workers(args.workers) if len(paths) > args.batch_size else 0)
    try:
        with tqdm(total=len(paths), desc="predict", unit="img", disable=args.no_progress) as bar:
            for start in range(0, len(paths), args.batch_size):
                chunk = list(zip(paths[start : start + args.batch_size], given_names[start : start + args.batch_size]))
                good = _checked_chunk(predictor, chunk, decoded, table, tasks, run)
                if good:
                    results = predictor.predict(
                        [g[1] for g in good],
                        boxes=[g[2] for g in good],
                        tasks=tasks,
                        batch_size=args.batch_size,
                        detect=args.detect,
                    )
                    for (given, image, _), res in zip(good, results):
                        _write_image_result(outputs, given, image, res, args.visualize, run)
                bar.update(len(chunk))
    finally:
        outputs.close()
    return _finish_images(predictor, args, paths, table, tasks, run, outputs)


def _checked_chunk(predictor, chunk, decoded, table: dict, tasks: list[str], run: dict) -> list:
    """The chunk's images that decoded and whose boxes are valid, as (given name, PIL image, raw boxes); the
    others are counted skips, named on stderr."""
    from tqdm.auto import tqdm

    good = []
    for path, given in chunk:
        try:
            image = next(decoded)
            if isinstance(image, ImageError):
                raise image
            raw, key = _boxes_for(path, table, given)
            if key is not None:
                run["used_keys"].add(key)
            # validate now: a bad box skips this image only
            predictor.check_untagged_boxes(parse_boxes(raw, image.size, given), tasks, given)
            good.append((given, image, raw))
        except (ImageError, PredictInputError) as err:
            reason = str(err)
            if isinstance(err, ImageError):  # the file is named once, by the line below
                reason = err.reason + (f" ({err.detail})" if err.detail else "")
            run["skipped"].append({"image": given, "reason": reason})
            tqdm.write(f"skipped {given}: {reason}", file=sys.stderr)
    return good


def _write_image_result(outputs, given: str, image, res: dict, visualize: bool, run: dict) -> None:
    res["image"] = given
    run["clipped"] += sum(bool(b.get("clipped")) for b in res["boxes"])
    row = result_to_json({**res, "tasks": outputs.store_heatmaps(res["tasks"])})
    if visualize:
        row["overlay"] = str(save_overlay(image, res, outputs.vis_path(given, ".png")).relative_to(outputs.out))
    outputs.write(row)
    run["done"] += 1


def _finish_images(predictor, args, paths, table: dict, tasks: list[str], run: dict, outputs) -> int:
    out = outputs.out
    unused = sorted(set(table) - run["used_keys"])
    seconds = round(time.perf_counter() - run["t0"], 2)
    summary = {
        "images": len(paths),
        "predicted": run["done"],
        "skipped": len(run["skipped"]),
        "skipped_files": run["skipped"],
        "tasks": tasks,
        "model": predictor.name,
        "model_card": predictor.card_summary,
        "warning": predictor.warning,
        "boxes_file_unused_keys": unused,
        "clipped_boxes": run["clipped"],
        "heatmaps": outputs.heatmap_rows,
        "threads": predictor.threads,
        "seconds": seconds,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    if run["clipped"]:
        print(
            f"note: {run['clipped']} box(es) extended slightly past their image's border and were clipped to it",
            file=sys.stderr,
        )
    if unused:
        print(f"warning: {len(unused)} entries of --boxes name no processed image: {unused[:5]}", file=sys.stderr)
    print(
        f"predicted {run['done']} of {len(paths)} images, "
        f"skipped {len(run['skipped'])}; wrote {out / 'predictions.jsonl'}",
        file=sys.stderr,
    )
    return 0 if run["done"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())

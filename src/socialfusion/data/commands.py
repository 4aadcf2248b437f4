"""`socialfusion data prepare | validate | stats | synth`: official layouts -> canonical JSONL, and checks on it."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections import Counter
from pathlib import Path

from tqdm.auto import tqdm

from ..core.images import ImageError, image_size, load_image
from ..core.schema import DataError, write_jsonl
from ..errors import add_console_options
from ..tasks import TASKS, build_task, load_all as load_tasks
from .adapters import load_all as load_adapters, read_dataset
from .adapters.ego4d_lam import frames_needed
from .adapters.jsonl import read_lines
from .skips import SkipReport
from .synth import generate
from .video import VideoError, extract_frames


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    return int(args.run(args) or 0)  # a DataError (a UserError) goes to the dispatcher: one line, exit 2


def _parser() -> argparse.ArgumentParser:
    p = add_console_options(
        argparse.ArgumentParser(prog="socialfusion data", description="Prepare and check datasets.")
    )
    sub = p.add_subparsers(dest="command", metavar="{prepare,validate,stats,synth,extract-frames}")
    _add_record_commands(sub)
    _add_layout_commands(sub)
    for sub_parser in sub.choices.values():  # in each sub-command's --help too
        add_console_options(sub_parser)
    return p


def _add_record_commands(sub) -> None:
    """The sub-commands that turn an official layout into JSONL records and check them, added in the order
    `--help` lists them (before synth and extract-frames)."""
    prep = sub.add_parser("prepare", help="read an official layout and write canonical JSONL records")
    prep.add_argument("dataset", help="ego4d_lam | affectnet | hagrid_v2 | pisc | gazefollow | jsonl")
    prep.add_argument("--root", required=True, help="the dataset root (the folder of the official layout)")
    prep.add_argument("--split", required=True, help="the official split to read (e.g. train, val, test)")
    prep.add_argument("--out", required=True, help="output .jsonl file")
    prep.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="adapter option (repeatable)")
    prep.add_argument(
        "--on-bad-sample", choices=("skip", "error"), default="skip", help="skip a bad record (counted) or stop at it"
    )
    prep.set_defaults(run=_prepare)

    val = sub.add_parser("validate", help="open every image and check every box and label of a JSONL file")
    val.add_argument("file", help="a JSONL file of canonical records")
    val.add_argument("--max-bad-fraction", type=float, default=0.0, help="exit 1 when more records than this are bad")
    val.add_argument(
        "--task-option",
        action="append",
        default=[],
        metavar="TASK.KEY=VALUE",
        help="task option for the label check, e.g. expression.n_classes=7 or relation.level=coarse",
    )
    val.set_defaults(run=_validate)

    st = sub.add_parser("stats", help="class histograms, boxes per sample and image sizes of a JSONL file")
    st.add_argument("file", help="a JSONL file of canonical records")
    st.add_argument("--max-images", type=int, default=5000, help="read the size of at most this many images")
    st.add_argument("--json", action="store_true", help="print JSON instead of text")
    st.set_defaults(run=_stats)


def _add_layout_commands(sub) -> None:
    """The sub-commands that write an official layout on disk (synthetic scenes, or frames decoded from videos),
    kept apart from the record commands, which only read one."""
    syn = sub.add_parser("synth", help="generate the synthetic benchmark in the official layouts")
    syn.add_argument("--out", required=True, help="output folder (one sub-folder per dataset, e.g. data/synth)")
    syn.add_argument("--n", type=int, default=64, help="training samples per task (default 64)")
    syn.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    syn.set_defaults(run=_synth)

    ext = sub.add_parser("extract-frames", help="decode a dataset's videos into the frame images its adapter reads")
    ext.add_argument("dataset", choices=["ego4d_lam"], help="the dataset whose layout to write (ego4d_lam)")
    ext.add_argument("--videos", required=True, help="folder of the clips, <clip_uid>.mp4 (the baseline's data/videos)")
    ext.add_argument(
        "--root",
        required=True,
        help="the dataset root: its json/ (and split/) say which frames are "
        "needed; frames go to ROOT/video_imgs/<clip_uid>/img_%%05d.jpg",
    )
    ext.add_argument(
        "--split", action="append", help="annotated split(s) whose frames to extract (default: train and val)"
    )
    ext.add_argument("--all", action="store_true", help="every frame of each annotated clip, not only the tracked ones")
    ext.add_argument("--fps", type=float, default=30.0, help="output frame rate (the baseline's ffmpeg -vf fps=30)")
    ext.add_argument("--no-progress", action="store_true", help="no progress bar")
    ext.set_defaults(run=_extract_frames)


def parse_options(pairs: list[str]) -> dict:
    """KEY=VALUE strings; a value that parses as JSON (13, 0.05, true) is typed, anything else stays a string."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DataError(f"option {pair!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


# ---- prepare -------------------------------------------------------------------------------------------------


def _prepare(args) -> int:
    root = Path(args.root).resolve()
    report = SkipReport(policy=args.on_bad_sample)
    options = parse_options(args.option)
    try:
        adapter = load_adapters().get(args.dataset)
        inspect.signature(adapter).bind(root, args.split, report, **options)
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    except TypeError:
        known = [p for p in inspect.signature(adapter).parameters][3:]
        print(
            f"error: unknown option for {args.dataset} in {sorted(options)}; its options: {', '.join(known) or 'none'}",
            file=sys.stderr,
        )
        return 2
    samples, _ = read_dataset(args.dataset, root, args.split, report=report, **options)
    for s in samples:
        s.root = str(root)  # absolute, so the records work from anywhere
    n = write_jsonl(samples, args.out)
    print(f"wrote {n} {args.dataset} {args.split} samples to {args.out}")
    print(report.summary())
    return 0


# ---- validate ------------------------------------------------------------------------------------------------


def _load_records(path: Path, report) -> list:
    if not path.is_file():
        raise DataError(f"JSONL records not found: expected {path}")
    return read_lines(path, report)


def _tasks(task_options: list[str]):
    """task name -> task object (built once, with --task-option values)."""
    per_task: dict[str, dict] = {}
    for key, value in parse_options(task_options).items():
        task, _, option = key.partition(".")
        per_task.setdefault(task, {})[option] = value
    return {name: build_task(name, **per_task.get(name, {})) for name in load_tasks().names()}


def check_sample(sample, task) -> str | None:
    """The reason a record cannot be used by its task (`Task.check`), or None."""
    if task is None:
        return f"unknown task {sample.task!r}"
    if not sample.boxes:
        return "no box"
    try:
        task.check(sample)
        load_image(sample.image_path())
    except ImageError as err:
        return f"image: {err.reason}"
    except DataError as err:  # the task's reason, or a path escaping the root
        return str(err).split(": ", 1)[-1]
    return None


def _validate(args) -> int:
    path = Path(args.file)
    report = SkipReport()
    samples = _load_records(path, report)
    bad_lines = report.total
    tasks = _tasks(args.task_option)
    unlabelled = 0
    for s in samples:
        reason = check_sample(s, tasks.get(s.task))
        if reason:
            report.skip(f"{path.name}:{s.id}", reason)
        elif s.label is None and tasks[s.task].readout == "answer":
            unlabelled += 1
    total = len(samples) + bad_lines
    bad = report.total
    fraction = bad / total if total else 0.0
    print(f"{path}: {total} records, {bad} bad ({fraction:.2%}), {unlabelled} unlabelled")
    print(report.summary())
    if fraction > args.max_bad_fraction:
        print(f"FAIL: bad fraction {fraction:.4f} > --max-bad-fraction {args.max_bad_fraction}", file=sys.stderr)
        return 1
    return 0


# ---- stats ---------------------------------------------------------------------------------------------------


def collect_stats(samples, max_images: int = 5000) -> dict:
    load_tasks()
    out: dict = {}
    seen_images: set[str] = set()
    for name in sorted({s.task for s in samples}):
        mine = [s for s in samples if s.task == name]
        sizes: Counter = Counter()
        unreadable = 0
        for s in mine:
            key = str(Path(s.root) / s.image)
            if key in seen_images or len(seen_images) >= max_images:
                continue
            seen_images.add(key)
            try:
                w, h = image_size(s.image_path())
                sizes[f"{w}x{h}"] += 1
            except Exception:  # ImageError or a path escaping the root: count, keep going
                unreadable += 1
        labels = Counter(s.label for s in mine if s.label is not None)
        out[name] = {
            "samples": len(mine),
            "unlabelled": sum(s.label is None for s in mine),
            "classes": {str(k): labels[k] for k in sorted(labels)},
            **(build_task(name).data_stats(mine) if name in TASKS else {}),
            "boxes_per_sample": dict(sorted(Counter(len(s.boxes) for s in mine).items())),
            "image_sizes": dict(sizes.most_common(10)),
            "distinct_image_sizes": len(sizes),
            "unreadable_images": unreadable,
        }
    return out


def _stats(args) -> int:
    report = SkipReport()
    stats = collect_stats(_load_records(Path(args.file), report), args.max_images)
    if args.json:
        print(json.dumps({"tasks": stats, "bad_lines": report.to_dict()}, indent=2))
        return 0
    for name, st in stats.items():
        print(f"== {name}: {st['samples']} samples" + (f", {st['unlabelled']} unlabelled" if st["unlabelled"] else ""))
        for key in ("classes", "boxes_per_sample", "inout", "points_per_sample", "image_sizes"):
            if st.get(key):
                print(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in st[key].items()))
        print(f"  distinct image sizes: {st['distinct_image_sizes']}, unreadable images: {st['unreadable_images']}")
    if report.total:
        print(report.summary())
    return 0


# ---- synth ---------------------------------------------------------------------------------------------------


def _synth(args) -> int:
    result = generate(Path(args.out), n=args.n, seed=args.seed)
    print(json.dumps(result, indent=2, default=str))
    return 0


# ---- extract-frames ------------------------------------------------------------------------------------------


def _extract_frames(args) -> int:
    """Only the frames the annotations use (or all of each annotated clip with --all); resumable, since frames
    already on disk are kept; a clip without a readable video is a counted skip naming the file."""
    root, videos = Path(args.root), Path(args.videos)
    if not videos.is_dir():
        raise DataError(f"videos folder not found: {videos} (expected <clip_uid>.mp4 files)")
    report = SkipReport()
    needed: dict[str, set[int]] = {}
    for split in args.split or ["train", "val"]:
        for clip, frames in frames_needed(root, split, report).items():
            needed.setdefault(clip, set()).update(frames)
    totals = {"clips": 0, "written": 0, "existing": 0, "missing": 0}
    for clip in tqdm(sorted(needed), desc="extracting frames", unit="clip", disable=args.no_progress):
        video = videos / f"{clip}.mp4"
        if not video.is_file():
            report.skip(str(video), "no video for an annotated clip")
            continue
        if not needed[clip] and not args.all:
            continue
        try:
            done = extract_frames(video, root / "video_imgs" / clip, None if args.all else needed[clip], args.fps)
        except VideoError as err:
            report.skip(str(err), "unreadable video")
            continue
        if done["missing"]:
            report.skip(
                f"{video}: {done['missing']} annotated frames past the end of the video",
                "video shorter than its annotations",
            )
        totals["clips"] += 1
        for key in ("written", "existing", "missing"):
            totals[key] += done[key]
    print(json.dumps({**totals, "skipped": report.total}))
    if report.total:
        print(report.summary())
    return 0

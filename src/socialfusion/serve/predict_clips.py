"""`socialfusion predict --video`: clips through `socialfusion.clips` (detection, IoU tracks, every task per track
and frame), the rows streamed to predictions.jsonl and gaze_heatmaps.npy, the per-track summaries to tracks.json,
and with --visualize an annotated MP4 per clip; memory stays flat over a clip of any length."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..api import result_to_json
from .outputs import Outputs, VideoWriter
from .overlay import draw_frame


def _row_json(row: dict, outputs) -> dict:
    """A frame's row as JSON: boxes and points rounded like an image's (`api.result_to_json`), heatmaps stored."""

    def rounded(boxes: list[dict], tasks: dict) -> tuple[list[dict], dict]:
        j = result_to_json(
            {"width": row["width"], "height": row["height"], "boxes": boxes, "tasks": outputs.store_heatmaps(tasks)}
        )
        return j["boxes"], j["tasks"]

    tracks = []
    for t in row["tracks"]:
        boxes, tasks = rounded(t["boxes"], t["tasks"])
        tracks.append({**t, "boxes": boxes, "tasks": tasks})
    out = {**row, "tracks": tracks}
    if row["pair"]:
        boxes, tasks = rounded(row["pair"]["boxes"], row["pair"]["tasks"])
        out["pair"] = {**row["pair"], "boxes": boxes, "tasks": tasks}
    return out


def _one_clip(predictor, info, tasks: list[str], outputs, args) -> dict:
    writer = VideoWriter(outputs.vis_path(info.path, ".mp4"), info.fps or 5.0) if args.visualize else None
    t0 = time.perf_counter()

    def on_frame(row: dict, image) -> None:
        row = _row_json(row, outputs)
        outputs.write(row)
        if writer is not None:
            writer.add(draw_frame(image, row))

    try:
        summary = predictor.predict_video(
            info.path, tasks, fps=args.fps, on_frame=on_frame, progress=not args.no_progress
        )
    finally:
        if writer is not None:
            writer.close()
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    summary["frames_per_s"] = round(summary["frames"] / summary["seconds"], 3) if summary["seconds"] > 0 else None
    if writer is not None and writer.frames:
        summary["annotated_video"] = str(writer.path.relative_to(outputs.out))
    return summary


def _say(summary: dict) -> str:
    name = Path(summary["clip"]).name
    if summary["frames"] == 0:
        return f"{name}: no frame decoded"
    if summary["nobody"]:
        return f"{name}: nobody in the clip (no face, hand or person detected in any of its {summary['frames']} frames)"
    kinds: dict[str, int] = {}
    for t in summary["tracks"]:
        kinds[t["kind"]] = kinds.get(t["kind"], 0) + 1
    held = ", ".join(f"{n} {k}" for k, n in kinds.items())
    return (
        f"{name}: {summary['frames']} frames, {len(summary['tracks'])} "
        f"tracks ({held}), {summary['frames_per_s']} frames/s"
    )


def run_clips(predictor, args, infos) -> int:
    """Every clip of `infos` (already probed) -> the files of --out; 0 when some frame was predicted, else 1."""
    tasks = predictor.resolve_tasks(args.tasks)
    outputs = Outputs(Path(args.out), args.visualize)
    summaries = []
    try:
        for info in infos:
            summaries.append(_one_clip(predictor, info, tasks, outputs, args))
            print(_say(summaries[-1]), file=sys.stderr)
            for note in summaries[-1]["notes"]:
                if not note.startswith("nobody"):
                    print(f"note: {note}", file=sys.stderr)
    finally:
        outputs.close()
    out = outputs.out
    (out / "tracks.json").write_text(json.dumps({"clips": summaries}, indent=1, allow_nan=False))
    frames = sum(s["frames"] for s in summaries)
    seconds = round(sum(s["seconds"] for s in summaries), 2)
    run = {
        "clips": len(summaries),
        "frames": frames,
        "seconds": seconds,
        "frames_per_s": round(frames / seconds, 3) if seconds else None,
        "nobody": [s["clip"] for s in summaries if s["nobody"]],
        "tasks": tasks,
        "model": predictor.name,
        "model_card": predictor.card_summary,
        "warning": predictor.warning,
        "heatmaps": outputs.heatmap_rows,
        "threads": predictor.threads,
        "fps": args.fps,
    }
    (out / "summary.json").write_text(json.dumps(run, indent=2, allow_nan=False))
    print(
        f"predicted {frames} frames of {len(summaries)} clip(s); "
        f"wrote {out / 'predictions.jsonl'} and {out / 'tracks.json'}",
        file=sys.stderr,
    )
    return 0 if frames > 0 else 1

#!/usr/bin/env python
"""Detection on a labelled set of photos: recall and precision per kind against hand-drawn boxes, and time per image.

    .venv/bin/python benchmarks/detect.py                 # 5 timed repeats per image, tables on stdout
    .venv/bin/python benchmarks/detect.py --repeats 9 --json results/detect.json
    .venv/bin/python benchmarks/detect.py --split tune --repeats 0   # accuracy only, on the tune half
    .venv/bin/python benchmarks/detect.py --sweep --json results/detect-sweep.json  # each setting on the tune half
    .venv/bin/python benchmarks/detect.py --smoke         # one repeat, two images: does it still run? (tested)

The boxes are in benchmarks/detect_eval/boxes.json (pixel xyxy, with where each image comes from: photos that
scikit-image, matplotlib and scikit-learn ship are loaded from the installed packages; the others are small JPEGs
kept in benchmarks/detect_eval/images/, copied from MIT-licensed packages, see CREDITS.md there; nothing is
downloaded). Each image is in the `tune` or the `report` split: settings are chosen on tune, figures quoted on
report. A detection is right when its IoU with a not-yet-matched box of its kind is >= 0.5 (greedy, best score
first); one that overlaps an `ignore` region of its kind (or of kind `any`) by half its area counts neither way.
Heads are scored against hand-drawn head boxes, i.e. they measure the face detector and the head-from-face rule
together. Time: the whole `detect` call (all four kinds)
and each kind alone, after one untimed warm-up call per image; median and range over the repeats. The CPU time
of the whole call (all threads of the process) is recorded too: on a shared machine it moves less than wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from harness.stats import cpu_model, spread, table_head
from PIL import Image

from socialfusion.numerics import precision_facts

HERE = Path(__file__).resolve().parent
BOXES = HERE / "detect_eval" / "boxes.json"
KINDS = ("face", "head", "hand", "person")
SPLITS = ("tune", "report")


def load(loader: str) -> Image.Image:
    """`package.place:name` -> the packaged photo as an RGB PIL image."""
    where, name = loader.split(":", 1)
    if where == "skimage.data":
        import skimage.data

        return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    if where == "matplotlib.sample_data":
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data(name) as f:
            return Image.open(f).convert("RGB")
    if where == "sklearn.sample_image":
        from sklearn.datasets import load_sample_image

        return Image.fromarray(load_sample_image(name)).convert("RGB")
    raise ValueError(f"{BOXES}: unknown loader {loader!r}")


def image_of(entry: dict) -> Image.Image:
    """The RGB image of one labelled entry: its `file` under detect_eval/, or its packaged `loader`."""
    if "file" in entry:
        with Image.open(BOXES.parent / entry["file"]) as im:
            return im.convert("RGB")
    return load(entry["loader"])


def labels(entry: dict, kind: str) -> tuple[list, list]:
    """(labelled boxes, ignore regions) of one kind in one entry; `any` ignore regions hold for every kind."""
    truth = [b["xyxy"] for b in entry["boxes"] if b["kind"] == kind]
    ignore = [b["xyxy"] for b in entry.get("ignore", []) if b["kind"] in (kind, "any")]
    return truth, ignore


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def covered(det, region) -> float:
    """Fraction of `det`'s area inside `region`."""
    ix = max(0.0, min(det[2], region[2]) - max(det[0], region[0]))
    iy = max(0.0, min(det[3], region[3]) - max(det[1], region[1]))
    area = (det[2] - det[0]) * (det[3] - det[1])
    return ix * iy / area if area > 0 else 0.0


def match(dets: list[dict], truth: list[list[float]], ignore: list[list[float]], thr: float) -> dict:
    """Greedy matching of one kind on one image -> {tp, fp, fn, matches: [(det, truth, iou)]}."""
    free = list(range(len(truth)))
    tp = fp = 0
    matches = []
    for d in sorted(dets, key=lambda d: -d["score"]):
        best = max(free, key=lambda j: iou(d["xyxy"], truth[j]), default=None)
        if best is not None and iou(d["xyxy"], truth[best]) >= thr:
            free.remove(best)
            tp += 1
            matches.append((d["xyxy"], truth[best], round(iou(d["xyxy"], truth[best]), 3)))
        elif any(covered(d["xyxy"], r) >= 0.5 for r in ignore):
            continue
        else:
            fp += 1
    return {"tp": tp, "fp": fp, "fn": len(free), "matches": matches}


def totals_of(rows: list[dict]) -> dict:
    """Per kind: tp, fp, fn, recall, precision over the rows (None where nothing was labelled/detected)."""
    totals = {k: {"tp": 0, "fp": 0, "fn": 0} for k in KINDS}
    for row in rows:
        for kind in KINDS:
            for key in ("tp", "fp", "fn"):
                totals[kind][key] += row["kinds"][kind][key]
    for t in totals.values():
        t["recall"] = t["tp"] / (t["tp"] + t["fn"]) if t["tp"] + t["fn"] else None
        t["precision"] = t["tp"] / (t["tp"] + t["fp"]) if t["tp"] + t["fp"] else None
    return totals


def score_image(entry: dict, dets, size, thr: float) -> dict:
    """Matches of one image's detections against its labels, per kind."""
    w, h = size
    out = {}
    for kind in KINDS:
        px = [
            {"xyxy": [d.xyxy[0] * w, d.xyxy[1] * h, d.xyxy[2] * w, d.xyxy[3] * h], "score": d.score}
            for d in dets
            if d.kind == kind
        ]
        truth, ignore = labels(entry, kind)
        m = match(px, truth, ignore, thr)
        out[kind] = {**m, "detections": [[round(v, 1) for v in d["xyxy"]] + [round(d["score"], 3)] for d in px]}
    return out


def evaluate(images: list[dict], repeats: int, threads: int | None, settings: dict | None = None) -> dict:
    """Detect on each image (`repeats` timed calls after an untimed one; 0: the untimed call only, no times)."""
    from socialfusion.detect import detect

    thr = json.loads(BOXES.read_text())["iou"]
    per_image = []
    for entry in images:
        image = image_of(entry)
        if list(image.size) != entry["size"]:
            raise SystemExit(f"{BOXES}: {entry['name']}: the image is {image.size}, the labels are for {entry['size']}")
        dets = detect(
            image, threads=threads, settings=settings
        )  # warm-up: model loading and first-call allocations are not timed
        times = {"all": [], "all_cpu": []} | {k: [] for k in ("face", "hand", "person")}
        for _ in range(repeats):
            for key in ("all", "face", "hand", "person"):
                t0, c0 = time.perf_counter(), time.process_time()
                found = detect(image, kinds=KINDS if key == "all" else (key,), threads=threads, settings=settings)
                times[key].append(time.perf_counter() - t0)
                if key == "all":
                    times["all_cpu"].append(time.process_time() - c0)
                    dets = found
        row = {
            "name": entry["name"],
            "split": entry["split"],
            "size": list(image.size),
            "kinds": score_image(entry, dets, image.size, thr),
        }
        if repeats:
            row["times_s"] = times
        per_image.append(row)
    result = {"iou": thr, "repeats": repeats, "threads": threads, "totals": totals_of(per_image), "images": per_image}
    result["splits"] = {
        s: totals_of([r for r in per_image if r["split"] == s])
        for s in SPLITS
        if any(r["split"] == s for r in per_image)
    }
    return result


def _ms(values) -> str:
    return spread(values, ".0f", scale=1000, brackets="()")


def _ratio(num: int, den: int) -> str:
    return f"{num}/{den} = {num / den:.2f}" if den else "- (none)"


def kind_table(totals: dict) -> list[str]:
    lines = table_head("kind", "labelled", "detected", "right", "recall", "precision")
    for kind, t in totals.items():
        lines.append(
            f"| {kind} | {t['tp'] + t['fn']} | {t['tp'] + t['fp']} | {t['tp']} | "
            f"{_ratio(t['tp'], t['tp'] + t['fn'])} | {_ratio(t['tp'], t['tp'] + t['fp'])} |"
        )
    return lines


def tables(result: dict) -> str:
    timed = result["repeats"] > 0
    lines = [
        f"IoU >= {result['iou']}; {result['repeats']} timed repeats per image; "
        f"LiteRT threads: {result['threads']}; CPU: {result['cpu']}",
        f"settings: {json.dumps(result['settings'], sort_keys=True)}",
    ]
    for name, totals in (
        [*result["splits"].items(), ("all", result["totals"])]
        if len(result["splits"]) > 1
        else [(next(iter(result["splits"])), result["totals"])]
    ):
        n = sum(1 for r in result["images"] if name == "all" or r["split"] == name)
        lines += ["", f"{name} ({n} images):", "", *kind_table(totals)]

    def found(row):
        counts = (
            f"{k}: {v['tp']}/{v['tp'] + v['fp']}/{v['tp'] + v['fn']}"
            for k, v in row["kinds"].items()
            if v["tp"] + v["fp"] + v["fn"]
        )
        return ", ".join(counts) or "nothing (none labelled)"

    if timed:
        lines += [
            "",
            *table_head(
                "image",
                "split",
                "size",
                "all kinds: wall ms, median (range)",
                "all kinds: CPU ms",
                "face+head (wall)",
                "hand",
                "person",
                "found (kind: right/detected/labelled)",
            ),
        ]
        for row in result["images"]:
            t = row["times_s"]
            lines.append(
                f"| {row['name']} | {row['split']} | {row['size'][0]}x{row['size'][1]} | {_ms(t['all'])} | "
                f"{_ms(t['all_cpu'])} | {_ms(t['face'])} | {_ms(t['hand'])} | {_ms(t['person'])} | {found(row)} |"
            )
    else:
        lines += ["", *table_head("image", "split", "size", "found (kind: right/detected/labelled)")]
        lines += [
            f"| {row['name']} | {row['split']} | {row['size'][0]}x{row['size'][1]} | {found(row)} |"
            for row in result["images"]
        ]
    return "\n".join(lines)


# Each option alone against the defaults (and a few combinations), measured on the tune half with --sweep:
# `settings` overrides socialfusion.detect.SETTINGS, `min_score` overrides MIN_SCORE. The defaults (palm
# min_score 0.4, person tiles 2) are what this sweep chose, run from MediaPipe's settings (docs/DETECTION.md).
SWEEP = [
    ("defaults", {}, {}),
    ("MediaPipe's settings (the defaults before the sweep)", {"tiles": {"person": 1}}, {"hand": 0.5}),
    ("face min_score 0.3", {}, {"face": 0.3}),
    ("face min_score 0.4", {}, {"face": 0.4}),
    ("face min_score 0.6", {}, {"face": 0.6}),
    ("face tiles 2", {"tiles": {"face": 2}}, {}),
    ("palm min_score 0.3", {}, {"hand": 0.3}),
    ("palm min_score 0.5", {}, {"hand": 0.5}),
    ("palm min_score 0.6", {}, {"hand": 0.6}),
    ("palm model lite", {"palm_model": "lite"}, {}),
    ("hand presence 0.3", {"hand_presence": 0.3}, {}),
    ("hand presence 0.7", {"hand_presence": 0.7}, {}),
    ("hand tiles 2", {"tiles": {"hand": 2}}, {}),
    ("hand tiles 3", {"tiles": {"hand": 3}}, {}),
    ("hand tiles 3, palm lite", {"tiles": {"hand": 3}, "palm_model": "lite"}, {}),
    ("person min_score 0.3", {}, {"person": 0.3}),
    ("person presence 0.3", {"pose_presence": 0.3}, {}),
    ("person tiles 1", {"tiles": {"person": 1}}, {}),
    ("person tiles 3", {"tiles": {"person": 3}}, {}),
    ("NMS IoU 0.5", {"nms_iou": 0.5}, {}),
]


def sweep(images: list[dict], threads: int | None) -> list[dict]:
    """Accuracy (no timing) of each SWEEP entry on `images`, with the wall time of the whole pass."""
    from socialfusion import detect as D

    rows = []
    for label, settings, min_score in SWEEP:
        saved = dict(D.MIN_SCORE)
        D.MIN_SCORE.update(min_score)
        try:
            t0 = time.perf_counter()
            res = evaluate(images, 0, threads, settings)
            wall = time.perf_counter() - t0
        finally:
            D.MIN_SCORE.clear()
            D.MIN_SCORE.update(saved)
        rows.append(
            {
                "label": label,
                "settings": settings,
                "min_score": min_score,
                "totals": res["totals"],
                "wall_s": round(wall, 2),
            }
        )
        print(
            f"| {label} | "
            + " | ".join(
                f"{_ratio(t['tp'], t['tp'] + t['fn'])} / {_ratio(t['tp'], t['tp'] + t['fp'])}"
                for t in res["totals"].values()
            )
            + f" | {wall:.1f} |",
            flush=True,
        )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats per image (0: accuracy only, no times)")
    ap.add_argument("--threads", type=int, default=2, help="LiteRT CPU threads (0: the runtime's default)")
    ap.add_argument(
        "--split", choices=(*SPLITS, "all"), help="which images: tune, report or all (default: all; tune with --sweep)"
    )
    ap.add_argument("--sweep", action="store_true", help="accuracy of each setting in SWEEP (default split: tune)")
    ap.add_argument("--json", type=Path, help="write every detection, match and time here")
    ap.add_argument("--smoke", action="store_true", help="one repeat on the first two images: does it run?")
    args = ap.parse_args(argv)
    images = json.loads(BOXES.read_text())["images"]
    split = args.split or ("tune" if args.sweep else "all")
    if split != "all":
        images = [e for e in images if e["split"] == split]
    repeats = args.repeats
    if args.smoke:
        images, repeats = images[:2], 1
    if repeats < 0:
        ap.error("--repeats must be >= 0")
    from socialfusion.detect import SETTINGS

    command = " ".join(
        [Path(sys.executable).name, "benchmarks/detect.py", *(argv if argv is not None else sys.argv[1:])]
    )
    if args.sweep:
        print(f"{split} ({len(images)} images); cells: recall / precision; CPU: {cpu_model()}\n")
        print("| setting | " + " | ".join(KINDS) + " | wall s |\n|---|" + "---|" * (len(KINDS) + 1))
        result = {"split": split, "defaults": SETTINGS, "rows": sweep(images, args.threads or None)}
    else:
        result = evaluate(images, repeats, args.threads or None)
        result["settings"] = SETTINGS
    result["cpu"] = cpu_model()
    result["precision"] = precision_facts()  # native bf16 or not, and what precision auto is here
    result["command"] = command
    if not args.sweep:
        print(tables(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(result, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Detection on packaged photos: recall and precision per kind against hand-drawn boxes, and time per image.

    .venv/bin/python benchmarks/detect.py                 # 5 timed repeats per image, tables on stdout
    .venv/bin/python benchmarks/detect.py --repeats 9 --json results/detect.json
    .venv/bin/python benchmarks/detect.py --smoke         # one repeat, two images: does it still run? (tested)

The boxes are in benchmarks/detect_eval/boxes.json (pixel xyxy, with where each image comes from: scikit-image,
matplotlib and scikit-learn ship them, so nothing is downloaded and no image is copied here). A detection is right
when its IoU with a not-yet-matched box of its kind is >= 0.5 (greedy, best score first); one that overlaps an
`ignore` region by half its area counts neither way. Heads are scored against hand-drawn head boxes, i.e. they
measure the face detector and the head-from-face rule together. Time: the whole `detect` call (all four kinds)
and each kind alone, after one untimed warm-up call per image; median and range over the repeats. The CPU time
of the whole call (all threads of the process) is recorded too: on a shared machine it moves less than wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from socialfusion.numerics import cpu_name, precision_facts

HERE = Path(__file__).resolve().parent
BOXES = HERE / "detect_eval" / "boxes.json"
KINDS = ("face", "head", "hand", "person")


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


def evaluate(images: list[dict], repeats: int, threads: int | None) -> dict:
    from socialfusion.detect import detect

    spec = json.loads(BOXES.read_text())
    thr = spec["iou"]
    totals = {k: {"tp": 0, "fp": 0, "fn": 0} for k in KINDS}
    per_image = []
    for entry in images:
        image = load(entry["loader"])
        if list(image.size) != entry["size"]:
            raise SystemExit(f"{BOXES}: {entry['name']}: the loader gave {image.size}, the labels are for {entry['size']}")
        w, h = image.size
        detect(image, threads=threads)  # warm-up: model loading and first-call allocations are not timed
        times = {"all": [], "all_cpu": []} | {k: [] for k in ("face", "hand", "person")}
        for _ in range(repeats):
            for key in ("all", "face", "hand", "person"):
                t0, c0 = time.perf_counter(), time.process_time()
                found = detect(image, kinds=KINDS if key == "all" else (key,), threads=threads)
                times[key].append(time.perf_counter() - t0)
                if key == "all":
                    times["all_cpu"].append(time.process_time() - c0)
                    dets = found
        row = {"name": entry["name"], "size": [w, h], "times_s": times, "kinds": {}}
        for kind in KINDS:
            px = [{"xyxy": [d.xyxy[0] * w, d.xyxy[1] * h, d.xyxy[2] * w, d.xyxy[3] * h], "score": d.score} for d in dets if d.kind == kind]
            truth = [b["xyxy"] for b in entry["boxes"] if b["kind"] == kind]
            ignore = [b["xyxy"] for b in entry.get("ignore", []) if b["kind"] == kind]
            m = match(px, truth, ignore, thr)
            for key in ("tp", "fp", "fn"):
                totals[kind][key] += m[key]
            row["kinds"][kind] = {**m, "detections": [[round(v, 1) for v in d["xyxy"]] + [round(d["score"], 3)] for d in px]}
        per_image.append(row)
    for t in totals.values():
        t["recall"] = t["tp"] / (t["tp"] + t["fn"]) if t["tp"] + t["fn"] else None
        t["precision"] = t["tp"] / (t["tp"] + t["fp"]) if t["tp"] + t["fp"] else None
    return {"iou": thr, "repeats": repeats, "threads": threads, "totals": totals, "images": per_image}


def cpu_model() -> str:
    return cpu_name()


def _ms(values) -> str:
    ms = [v * 1000 for v in values]
    return f"{statistics.median(ms):.0f} ({min(ms):.0f}-{max(ms):.0f})"


def _ratio(num: int, den: int) -> str:
    return f"{num}/{den} = {num / den:.2f}" if den else "- (none)"


def tables(result: dict) -> str:
    lines = [
        f"IoU >= {result['iou']}; {result['repeats']} timed repeats per image; LiteRT threads: {result['threads']}; CPU: {result['cpu']}",
        "",
        "| kind | labelled | detected | right | recall | precision |",
        "|---|---|---|---|---|---|",
    ]
    for kind, t in result["totals"].items():
        lines.append(f"| {kind} | {t['tp'] + t['fn']} | {t['tp'] + t['fp']} | {t['tp']} | {_ratio(t['tp'], t['tp'] + t['fn'])} | {_ratio(t['tp'], t['tp'] + t['fp'])} |")
    lines += ["", "| image | size | all kinds: wall ms, median (range) | all kinds: CPU ms | face+head (wall) | hand | person | found (kind: right/detected/labelled) |",
              "|---|---|---|---|---|---|---|---|"]
    for row in result["images"]:
        found = ", ".join(f"{k}: {v['tp']}/{v['tp'] + v['fp']}/{v['tp'] + v['fn']}" for k, v in row["kinds"].items() if v["tp"] + v["fp"] + v["fn"])
        t = row["times_s"]
        lines.append(f"| {row['name']} | {row['size'][0]}x{row['size'][1]} | {_ms(t['all'])} | {_ms(t['all_cpu'])} | {_ms(t['face'])} | {_ms(t['hand'])} | {_ms(t['person'])} | {found or 'nothing (none labelled)'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="LiteRT CPU threads (0: the runtime's default)")
    ap.add_argument("--json", type=Path, help="write every detection, match and time here")
    ap.add_argument("--smoke", action="store_true", help="one repeat on the first two images: does it run?")
    args = ap.parse_args(argv)
    images = json.loads(BOXES.read_text())["images"]
    repeats = args.repeats
    if args.smoke:
        images, repeats = images[:2], 1
    if repeats < 1:
        ap.error("--repeats must be >= 1")
    result = evaluate(images, repeats, args.threads or None)
    result["cpu"] = cpu_model()
    result["precision"] = precision_facts()  # native bf16 or not, and what precision auto is here
    result["command"] = " ".join([Path(sys.executable).name, "benchmarks/detect.py", *(argv if argv is not None else sys.argv[1:])])
    print(tables(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

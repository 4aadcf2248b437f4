#!/usr/bin/env python
"""`socialfusion predict --video` on synthetic clips: frames per second at 640x480 and memory over a long clip.

    nice -n 10 .venv/bin/python benchmarks/video.py --json benchmarks/results/video.json
    .venv/bin/python benchmarks/video.py --smoke          # a 2 s clip, tiny preset: does it still run? (tested)

The clips are drawn here (nothing is downloaded): a grey, slowly shifting background with packaged portraits
(scikit-image's astronaut, matplotlib's Grace Hopper) gliding across it, so the detectors find real faces and
persons and the tracks have something to follow; encoded as H.264 with PyAV.

* **throughput**: a 20 s clip at 25 fps, 640x480, two people; `predict --video --tasks lam,expression,gaze` at
  --fps 5 (100 sampled frames) with the `default` preset (a trained default checkpoint computes the same), and
  the same clip decoded only and decoded + detected, to show where the time goes. frames/s = sampled frames per
  wall second of the whole command after the model loaded (its summary.json).
* **memory**: a 10-minute clip (25 fps, 15000 frames) through the same command at --fps 0.5 (300 sampled
  frames, each fully processed, every source frame decoded); the child's resident memory is sampled every
  second, and the growth from the run's second quarter (model loaded, first frames done) to its end is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from harness.stats import cpu_model
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SOCIALFUSION = [sys.executable, "-m", "socialfusion"]


def _people() -> list[Image.Image]:
    import matplotlib.cbook
    import skimage.data

    astronaut = Image.fromarray(skimage.data.astronaut()).resize((220, 220))
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        grace = Image.open(f).convert("RGB").resize((170, 220))
    return [astronaut, grace]


def write_clip(path: Path, seconds: float, fps: int = 25, size: tuple[int, int] = (640, 480), people: int = 2) -> Path:
    """An H.264 clip of `seconds` at `fps`: up to two portraits moving slowly over a shifting background
    (`people=0`: background only, a clip with nobody in it). Frames are made one at a time (constant memory)."""
    import av

    w, h = size
    sprites = _people()[:people]
    base = np.linspace(60, 180, w, dtype=np.float32)[None, :, None].repeat(h, 0).repeat(3, 2)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28"}
        for i in range(int(seconds * fps)):
            t = i / fps
            frame = Image.fromarray(np.clip(base + 20 * np.sin(t / 3), 0, 255).astype(np.uint8))
            for k, sprite in enumerate(sprites):
                x = int((w - sprite.width) * (0.5 + 0.45 * np.sin(t / 8 + k * 2.5)))  # slow: a track's boxes overlap
                frame.paste(sprite, (x, h - sprite.height - 20 * k))
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _rss_sampler(pid: int, samples: list, stop: threading.Event) -> None:
    import psutil

    proc = psutil.Process(pid)
    t0 = time.perf_counter()
    while not stop.is_set():
        try:
            samples.append((round(time.perf_counter() - t0, 1), proc.memory_info().rss))
        except psutil.Error:
            return
        stop.wait(1.0)


def run_predict(clip: Path, out: Path, ckpt: str, fps: float, tasks: str, extra: list[str] = ()) -> dict:
    """The CLI on one clip, its resident memory sampled every second; its summary.json, the samples and wall time."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cmd = [
        *SOCIALFUSION,
        "predict",
        "--ckpt",
        ckpt,
        "--video",
        str(clip),
        "--detect",
        "--tasks",
        tasks,
        "--fps",
        str(fps),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]
    samples: list = []
    stop = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = threading.Thread(target=_rss_sampler, args=(proc.pid, samples, stop), daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"predict failed ({proc.returncode}): {stderr[-2000:]}")
    return {
        "command": " ".join(cmd[2:]),
        "summary": json.loads((out / "summary.json").read_text()),
        "wall_s": round(time.perf_counter() - t0, 1),
        "rss_samples": samples,
        "stderr_tail": stderr.strip().splitlines()[-3:],
    }


def decode_and_detect(clip: Path, fps: float) -> dict:
    """Frames/s of decoding only, and of decoding + detection (all kinds), over the clip at `fps`."""
    from socialfusion import detect as D
    from socialfusion.clips import frames, probe

    info = probe(clip, fps)
    out = {}
    for stage in ("decode", "decode+detect"):
        t0, n = time.perf_counter(), 0
        for _, _, image in frames(info):
            if stage == "decode+detect":
                D.detect(image, threads=1)
            n += 1
        out[stage] = {"frames": n, "frames_per_s": round(n / (time.perf_counter() - t0), 2)}
    return out


def memory_growth(samples: list) -> dict:
    """Resident memory (MB) once the run is under way (the largest sample of its second quarter: the model is
    loaded and the first frames are done) and at its end (the largest of the last quarter), and the growth."""
    rss = [r for _, r in samples]
    if len(rss) < 8:
        return {"samples": len(rss)}
    n = len(rss)
    early, late = max(rss[n // 4 : n // 2]), max(rss[3 * n // 4 :])
    return {
        "samples": n,
        "rss_second_quarter_mb": round(early / 2**20, 1),
        "rss_last_quarter_mb": round(late / 2**20, 1),
        "growth_mb": round((late - early) / 2**20, 1),
        "peak_mb": round(max(rss) / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", default="default", help="checkpoint or preset (default: the default preset)")
    p.add_argument("--json", help="write the result here")
    p.add_argument("--smoke", action="store_true", help="a 2 s clip with the tiny preset, no long clip")
    p.add_argument("--skip-long", action="store_true", help="no 10-minute clip")
    args = p.parse_args(argv)
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        short = write_clip(tmp / "short.mp4", 2 if args.smoke else 20)
        ckpt = "tiny" if args.smoke else args.ckpt
        result["throughput"] = run_predict(short, tmp / "short", ckpt, 5, "lam,expression,gaze")
        result["stages"] = decode_and_detect(short, 5)
        if not (args.smoke or args.skip_long):
            t0 = time.perf_counter()
            long = write_clip(tmp / "long.mp4", 600)
            result["long_clip"] = {
                "seconds": 600,
                "fps": 25,
                "size": [640, 480],
                "encode_s": round(time.perf_counter() - t0, 1),
                "bytes": long.stat().st_size,
            }
            result["memory"] = run_predict(long, tmp / "long", ckpt, 0.5, "lam,expression,gaze")
            result["memory"]["growth"] = memory_growth(result["memory"]["rss_samples"])
    result["loadavg_end"] = os.getloadavg()
    thr = result["throughput"]["summary"]
    print(
        f"{result['cpu']}, {result['cores']} cores; "
        f"load {result['loadavg_start'][0]:.2f} -> {result['loadavg_end'][0]:.2f}"
    )
    print(
        f"predict --video at 640x480: {thr['frames']} frames, "
        f"{thr['frames_per_s']} frames/s (threads {thr['threads']}); stages: {result['stages']}"
    )
    if "memory" in result:
        print(f"10-minute clip: {result['memory']['summary']['frames']} frames, memory {result['memory']['growth']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

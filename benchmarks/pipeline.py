"""Input pipeline benchmark (`benchmarks/run.py --pipeline`): training the `default` preset from pixels
(`train.feature_cache=off`) with the images decoded from JPEG files by the DataLoader workers of
`socialfusion.data.pipeline.BatchLoader`, against the same training from pre-decoded tensors held in memory.

The images are generated here (PIL-encoded noise + shapes, quality 90): full-HD 1920x1080 and 640x480, one
`expression` dataset (jsonl) per size. Each unit is one short training run: a fresh optimiser, `warmup` steps
(the workers' start and first batches), then `steps` timed steps of `socialfusion.train.step.train_step` on
batches drawn by `MultiTaskSampler.micro_batches`. Configurations:

  memory        the batches' pixel tensors were decoded and preprocessed before the run (in-process loader)
  hd-w1         1920x1080 JPEGs, one worker, reduced-scale JPEG decoding (the pipeline's default)
  vga-w1        640x480 JPEGs, one worker
  hd-w1-full    1920x1080 JPEGs, one worker, every image decoded in full (what reduced decoding saves)
  hd-w0         1920x1080 JPEGs decoded in the training process between steps (what the worker saves)

Units run in rounds (every configuration once per round, the order rotated each round) so that load from other
processes hits all of them alike; the table gives samples/s median [min-max] over the rounds and each
configuration's ratio to `memory` (the median of the per-round ratios, with their range). The files are read from
the page cache (just written): this measures decoding and hand-over, not the disk. `--smoke` runs the `tiny`
preset on a few small images, one round of two steps: its numbers are not measurements.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from harness.host import loadavg
from harness.stats import median_min_max, table_head

SIZES = {"hd": (1920, 1080), "vga": (640, 480)}
CONFIGS = ["memory", "hd-w1", "vga-w1", "hd-w1-full", "hd-w0"]
TARGET = 0.9  # samples/s from files with one worker >= 0.9 x from memory


def make_images(root: Path, size: tuple[int, int], n: int, seed: int) -> list[str]:
    """n JPEGs of `size`: a smooth random background, a few filled shapes, pixel noise (so the files are
    photo-sized: ~0.5-1 MB for full HD at quality 90)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    names = []
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.integers(0, 256, (max(1, h // 64), max(1, w // 64), 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
            dx, dy = int(rng.integers(w // 20, w // 4)), int(rng.integers(h // 20, h // 4))
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x, y, x + dx, y + dy], fill=color)
        pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 10, (h, w, 3)).astype(np.int16)
        name = f"{i:04d}.jpg"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / name, quality=90)
        names.append(name)
    return names


def write_dataset(root: Path, names: list[str], seed: int) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(root / "train.jsonl", "w") as f:
        for i, name in enumerate(names):
            x, y = rng.uniform(0.05, 0.5, 2)
            box = [float(x), float(y), float(x + rng.uniform(0.15, 0.45)), float(y + rng.uniform(0.15, 0.45))]
            f.write(
                json.dumps(
                    {"id": f"s{i}", "task": "expression", "image": name, "label": i % 8, "boxes": [{"xyxy": box}]}
                )
                + "\n"
            )


class Setup:
    """The model, the datasets and the sampler, built once; `unit(config)` is one timed training run."""

    def __init__(self, preset: str, roots: dict[str, Path], warmup: int, steps: int):
        import torch

        from socialfusion.config import TaskDataConfig, load_config
        from socialfusion.data.pipeline import PixelInput, build_task_datasets
        from socialfusion.data.skips import SkipReport
        from socialfusion.models.factory import build_model
        from socialfusion.tasks import tasks_from_config
        from socialfusion.train.sampler import MultiTaskSampler

        config = load_config(preset, ["train.feature_cache=off"])
        config.data.tasks = [TaskDataConfig(task="expression", dataset="jsonl", root=str(roots["hd"]))]
        self.config, self.warmup, self.steps = config, warmup, steps
        self.device = torch.device("cpu")
        self.tasks = tasks_from_config(config)
        self.model = build_model(config.model, tasks=self.tasks).to(self.device)
        self.report = SkipReport("error")  # every generated image must load
        encoder = self.model.image_input

        def datasets(size: str, reduced: bool = True):
            config.data.tasks[0].root = str(roots[size])
            return build_task_datasets(config, self.tasks, "train", PixelInput(encoder, reduced=reduced), self.report)

        self.sets = {"hd": datasets("hd"), "vga": datasets("vga"), "hd-full": datasets("hd", reduced=False)}
        # the in-memory baseline: the same samples' tensors, decoded and preprocessed once, before any timing
        ds = self.sets["hd"]["expression"]
        decoded = {s.id: ds.image_to_input(s) for s in ds.samples}
        self.sets["memory"] = build_task_datasets(
            config, self.tasks, "train", lambda s: dict(decoded[s.id]), self.report
        )
        self.sampler = MultiTaskSampler({"expression": len(ds)}, config.train.batch_size, seed=config.train.seed)
        self.info = {
            "preset": preset,
            "batch_size": config.train.batch_size,
            "image_size": int(encoder.image_size),
            "images_per_size": len(ds),
            "torch_threads": torch.get_num_threads(),
            "warmup_steps": warmup,
            "timed_steps": steps,
        }
        self.units = 0

    def unit(self, name: str) -> dict:
        import torch

        from socialfusion.data.pipeline import BatchLoader
        from socialfusion.train.optim import build_optimizer, build_scheduler
        from socialfusion.train.step import train_step

        source, workers = {
            "memory": ("memory", 0),
            "hd-w1": ("hd", 1),
            "vga-w1": ("vga", 1),
            "hd-w1-full": ("hd-full", 1),
            "hd-w0": ("hd", 0),
        }[name]
        cfg = self.config.train
        optimizer = build_optimizer(self.model, cfg)
        scheduler = build_scheduler(optimizer, cfg)
        start = self.units * (self.warmup + self.steps)  # every unit draws batches no other unit drew
        self.units += 1
        self.model.train()
        t_begin = time.perf_counter()
        with BatchLoader(
            self.sets[source], workers=workers, prefetch_factor=cfg.prefetch_factor, seed=cfg.seed
        ) as loader:
            batches = loader.batches(self.sampler.micro_batches(start, start + self.warmup + self.steps))
            losses = []
            for i in range(self.warmup + self.steps):
                if i == self.warmup:
                    t0, c0 = time.perf_counter(), time.process_time()
                result = train_step(
                    self.model,
                    [next(batches)],
                    optimizer,
                    scheduler,
                    {"expression": 1.0},
                    self.device,
                    "fp32",
                    cfg.grad_clip,
                    1,
                )
                losses.append(result.loss)
            t1, c1 = time.perf_counter(), time.process_time()
        if not all(map(torch.isfinite, torch.tensor(losses))):
            raise RuntimeError(f"{name}: non-finite loss {losses}")
        seconds = t1 - t0
        return {
            "samples_per_s": self.steps * cfg.batch_size / seconds,
            "step_s": seconds / self.steps,
            "main_cpu_per_wall": (c1 - c0) / seconds,
            "unit_wall_s": t1 - t_begin,
            "last_loss": losses[-1],
        }


def decode_times(roots: dict[str, Path], names: dict[str, list[str]], side: int, n: int = 6, passes: int = 3) -> dict:
    """CPU milliseconds of this process (one thread) to decode + resize one image to side x side, full vs reduced:
    median, min, max over `passes` x `n` decodes. CPU time, so that other processes' load does not count."""
    from PIL import Image

    from socialfusion.core.images import load_image, load_image_reduced

    out = {}
    for size, root in roots.items():
        for how in ("full", "reduced"):
            times = []
            for _ in range(passes):
                for name in names[size][:n]:
                    t = time.process_time()
                    image = load_image(root / name) if how == "full" else load_image_reduced(root / name, side)[0]
                    image.resize((side, side), Image.Resampling.BICUBIC)
                    times.append(1000 * (time.process_time() - t))
            out[f"{size}-{how}"] = [statistics.median(times), min(times), max(times)]
    return out


def _busy() -> tuple[int, int]:
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(parts) - parts[3] - parts[4], sum(parts)


def run(command: str, smoke: bool, out_dir: Path, machine: dict, repeats: int = 3) -> dict:
    preset, n_images, warmup, steps = ("tiny", 4, 1, 2) if smoke else ("default", 48, 2, 16)
    sizes = {k: (v[0] // 8, v[1] // 8) for k, v in SIZES.items()} if smoke else SIZES
    repeats = 1 if smoke else repeats
    report = {
        "command": command,
        "mode": "pipeline-smoke" if smoke else "pipeline",
        "machine": machine,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_start": loadavg(),
        "image_sizes": sizes,
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="socialfusion-pipeline-") as tmp:
        roots, names = {}, {}
        for k, (size, seed) in enumerate(zip(sizes.values(), (1, 2))):
            key = list(sizes)[k]
            roots[key] = Path(tmp) / key
            names[key] = make_images(roots[key], size, n_images, seed)
            write_dataset(roots[key], names[key], seed)
        report["mean_file_kb"] = {
            k: statistics.mean((roots[k] / n).stat().st_size for n in names[k]) / 1024 for k in roots
        }
        setup = Setup(preset, roots, warmup, steps)
        report["setup"] = setup.info
        report["decode_ms"] = decode_times(roots, names, setup.info["image_size"])
        results: dict[str, list[dict]] = {c: [] for c in CONFIGS}
        busy0 = _busy()
        for r in range(repeats):
            order = CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]
            for name in order:
                results[name].append(setup.unit(name))
            print(
                f"   round {r + 1}/{repeats}: "
                + ", ".join(f"{c} {results[c][-1]['samples_per_s']:.2f}/s" for c in CONFIGS),
                flush=True,
            )
        busy1 = _busy()
    report["machine_busy_during_measurement"] = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    report["results"] = results
    report["summary"] = summarize(results)
    report["finished"], report["wall_s"], report["load_end"] = (
        time.strftime("%Y-%m-%d %H:%M:%S"),
        time.perf_counter() - t_start,
        loadavg(),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{report['mode']}.json").write_text(json.dumps(report, indent=1, default=str))
    (out_dir / f"{report['mode']}.md").write_text(render(report) + "\n")
    return report


def summarize(results: dict[str, list[dict]]) -> dict:
    out = {}
    memory = [u["samples_per_s"] for u in results["memory"]]
    for name, units in results.items():
        sps = [u["samples_per_s"] for u in units]
        ratios = [a / b for a, b in zip(sps, memory)]
        out[name] = {
            "samples_per_s": median_min_max(sps),
            "ratio_to_memory": median_min_max(ratios),
            "main_cpu_per_wall": statistics.median(u["main_cpu_per_wall"] for u in units),
        }
    return out


def targets(report: dict) -> list[dict]:
    s = report["summary"]
    return [
        {"config": c, "ratio": s[c]["ratio_to_memory"]["median"], "met": s[c]["ratio_to_memory"]["median"] >= TARGET}
        for c in ("hd-w1", "vga-w1")
    ]


def render(report: dict) -> str:
    m, st, s = report["machine"], report["setup"], report["summary"]
    L = [
        f"Run: `{report['command']}` ({report['mode']}), "
        f"{report['started']} -> {report['finished']}, {report['wall_s'] / 60:.1f} min wall.",
        "",
    ]
    if report["mode"].endswith("smoke"):
        L += [
            "**Smoke run**: it checks that the pipeline benchmark runs (tiny preset, "
            "small images, one round); its numbers are not measurements.",
            "",
        ]
    L.append(
        f"Machine: {m.get('Model name')} ({m.get('CPU(s)')} CPUs), torch {m.get('torch')} ({st['torch_threads']} "
        f"threads in the training process, 1 per worker); load average start {report['load_start']}, "
        f"end {report['load_end']}; "
        f"machine busy {report['machine_busy_during_measurement']:.0%} during the rounds (ours + others)."
    )
    L.append("")
    L.append(
        f"Preset `{st['preset']}` from pixels ({st['image_size']} px, batch {st['batch_size']}, fp32), "
        f"{st['images_per_size']} generated JPEGs per size (mean file "
        f"{', '.join(f'{k} {v:.0f} kB' for k, v in report['mean_file_kb'].items())}); each unit: "
        f"{st['warmup_steps']} warm-up + {st['timed_steps']} timed steps; "
        f"{len(next(iter(report['results'].values())))} rounds."
    )
    L += [
        "",
        *table_head(
            "configuration", "samples/s, median [min-max]", "vs memory, median [min-max]", "main-process cpu/wall"
        ),
    ]
    for name, row in s.items():
        a, r = row["samples_per_s"], row["ratio_to_memory"]
        L.append(
            f"| {name} | {a['median']:.2f} [{a['min']:.2f}-{a['max']:.2f}] | {r['median']:.2f}x "
            f"[{r['min']:.2f}-{r['max']:.2f}] | {row['main_cpu_per_wall']:.2f} |"
        )
    L += ["", *table_head("target", "measured", "needed", "met")]
    for t in targets(report):
        L.append(
            f"| {t['config']}: from files with one worker / from memory | "
            f"{t['ratio']:.2f}x | >= {TARGET}x | {'yes' if t['met'] else '**no**'} |"
        )
    d = report["decode_ms"]
    L += [
        "",
        "Decode + resize to the model's square, one image, CPU ms of one thread, median [min-max]: "
        + ", ".join(
            f"{k} {v[0]:.1f} [{v[1]:.1f}-{v[2]:.1f}]" if isinstance(v, list) else f"{k} {v:.1f} (wall)"
            for k, v in d.items()
        )
        + ".",
    ]
    return "\n".join(L)

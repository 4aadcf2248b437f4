"""Feature-cache read throughput (`benchmarks/run.py --cache-read`): entries/s and MB/s of `FeatureCache.read`
for fp32 and bf16 entries, with the content hash checked on the read (the first read of an entry in a run) and
without it (an entry this run has already verified: every later epoch).

Entries are written first, so they are read from the page cache: this measures what the cache costs the CPU
(safetensors parsing, the copy into a tensor, the sha256), not the disk. Shapes: `default` (DINOv2-S at 168 px,
144 x 384) and `paper` (CLIP ViT-L/14-336, 576 x 1024); `--smoke` uses a tiny shape and few entries (its numbers
are not measurements). Each configuration is timed `repeats` times; the table gives median [min-max].
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from harness.stats import spread, table_head

SHAPES = {"default": (144, 384, 256), "paper": (576, 1024, 64)}  # tokens, width, entries
SMOKE_SHAPES = {"tiny": (16, 32, 8)}


class _Encoder(torch.nn.Module):
    """The little a FeatureCache asks of an encoder when entries are only read: an identity and some weights."""

    def __init__(self, tokens: int, dim: int):
        super().__init__()
        self.num_patches, self.hidden_size = tokens, dim
        self.w = torch.nn.Parameter(torch.zeros(1))

    def identity(self) -> dict:
        return {"benchmark": "cache-read", "tokens": self.num_patches, "dim": self.hidden_size}


def _pass(cache, keys) -> float:
    t0 = time.perf_counter()
    for k in keys:
        if cache.read(k) is None:
            raise RuntimeError(f"entry {k} missing")
    return time.perf_counter() - t0


def measure(root: Path, shape: str, tokens: int, dim: int, entries: int, repeats: int) -> list[dict]:
    from socialfusion.features.cache import DTYPES, FeatureCache
    from socialfusion.features.inputs import entry_bytes

    encoder = _Encoder(tokens, dim)
    g = torch.Generator().manual_seed(0)
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        writer = FeatureCache(root, encoder, dtype)
        keys = [hashlib.sha256(f"{shape}-{i}".encode()).hexdigest() for i in range(entries)]
        for k in keys:
            writer.put(None, torch.randn(tokens, dim, generator=g), (640, 480), key=k)
        mb = entries * entry_bytes(encoder, dtype) / 1e6
        # checked: a new FeatureCache per repeat, so every read is that run's first and checks the hash
        checked = [_pass(FeatureCache(root, encoder, dtype), keys) for _ in range(repeats)]
        # memoised: one FeatureCache whose first pass (not timed) verified every entry
        run = FeatureCache(root, encoder, dtype)
        _pass(run, keys)
        memo = [_pass(run, keys) for _ in range(repeats)]
        for checksum, times in (("every read", checked), ("once per run", memo)):
            rows.append(
                {
                    "shape": shape,
                    "tokens": tokens,
                    "dim": dim,
                    "dtype": DTYPES[dtype],
                    "checksum": checksum,
                    "entries": entries,
                    "mb_per_entry": mb / entries,
                    "repeats": repeats,
                    "seconds": times,
                    "entries_per_s": [entries / t for t in times],
                    "mb_per_s": [mb / t for t in times],
                }
            )
    return rows


def _spread(values: list[float]) -> str:
    return spread(values, ",.0f" if min(values) >= 100 else ".3g")


def render(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"### Feature-cache reads (`{report['command']}`)",
        "",
        f"{m.get('Model name', '?')}, {m.get('CPU(s)', '?')} CPUs, bf16 native: {m.get('mkldnn_bf16_supported')}; page "
        f"cache warm (entries just written); {report['repeats']} repeats, median [min-max]; {report['started']}; load "
        f"average {report['load_start'][0]:.1f} at the start, {report['load_end'][0]:.1f} at the end.",
        "",
        *table_head("shape", "tokens x dim", "dtype", "MB/entry", "checksum", "entries", "entries/s", "MB/s"),
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['shape']} | {r['tokens']} x {r['dim']} | {r['dtype']} | {r['mb_per_entry']:.3g} | {r['checksum']} | "
            f"{r['entries']} | {_spread(r['entries_per_s'])} | {_spread(r['mb_per_s'])} |"
        )
    return "\n".join(lines)


def run(command: str, smoke: bool, out_dir: Path, machine: dict, repeats: int | None = None) -> dict:
    repeats = repeats or (2 if smoke else 5)
    shapes = SMOKE_SHAPES if smoke else SHAPES
    report = {
        "mode": "cache-read-smoke" if smoke else "cache-read",
        "command": command,
        "machine": machine,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "repeats": repeats,
        "load_start": os.getloadavg(),
        "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="socialfusion-cache-read-") as tmp:
        for name, (tokens, dim, entries) in shapes.items():
            report["rows"] += measure(Path(tmp), name, tokens, dim, entries, repeats)
    report["load_end"] = os.getloadavg()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{report['mode']}.json").write_text(json.dumps(report, indent=1))
    (out_dir / f"{report['mode']}.md").write_text(render(report) + "\n")
    return report

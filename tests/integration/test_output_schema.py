"""docs/USAGE.md "Output files" lists every field of predictions.jsonl (an image's result, a clip frame's row) and
of tracks.json; a real `socialfusion predict` run is checked against those tables both ways: every field written
is documented, and every documented field is written by a run that exercises them all. The detector is replaced
by a fixed one (two faces, a hand, two persons), so the run needs neither the detection models nor a real scene."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from socialfusion import cli, detect as D
from tests.conftest import benchmark_script

ROOT = Path(__file__).resolve().parents[2]
LEAVES = {"probs", "labels", "targets"}  # objects keyed by class or target: their keys are values, not fields
FIXED = [
    D.Detection("face", (0.30, 0.10, 0.45, 0.35), 0.9),
    D.Detection("face", (0.70, 0.10, 0.75, 0.17), 0.6),  # a second, smaller face: listed, drawn, read by no task
    D.Detection("head", (0.28, 0.02, 0.47, 0.37), 0.9),
    D.Detection("head", (0.69, 0.07, 0.76, 0.18), 0.6),
    D.Detection("hand", (0.50, 0.40, 0.62, 0.58), 0.8),
    D.Detection("person", (0.20, 0.00, 0.60, 1.00), 0.9),
    D.Detection("person", (0.60, 0.10, 0.95, 1.00), 0.7),
]


def documented(heading: str) -> set[str]:
    text = (ROOT / "docs" / "USAGE.md").read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = re.search(r"\n##", text[start + len(heading) + 2 :])
    section = text[start : start + len(heading) + 2 + end.start()] if end else text[start:]
    return {m.group(1) for m in re.finditer(r"^\| `([^`]+)` \|", section, re.M)}


def fields(obj, prefix: str = "") -> set[str]:
    """Dotted paths of every field: `a.b`, `list[].field`, a task's name as `<task>`."""
    out = set()
    if isinstance(obj, dict):
        for key, value in obj.items():
            name = "<task>" if prefix.endswith("tasks") else key
            path = f"{prefix}.{name}" if prefix else name
            out.add(path)
            if key not in LEAVES:
                out |= fields(value, path)
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                out |= fields(item, prefix + "[]")
    return out


@pytest.fixture()
def fixed_detector(monkeypatch):
    monkeypatch.setattr(D, "require", lambda: None)
    monkeypatch.setattr(D, "detect", lambda image, **kw: list(FIXED))


def _run(capsys, *argv) -> None:
    rc = cli.main(["predict", "--ckpt", "tiny", "--tasks", "all", "--no-progress", *map(str, argv)])
    assert rc == 0, capsys.readouterr().err


def test_an_image_row_is_what_the_docs_say(tmp_path, capsys, fixed_detector):
    Image.new("RGB", (320, 240), (120, 90, 60)).save(tmp_path / "scene.png")
    Image.new("RGB", (64, 48), (20, 90, 160)).save(tmp_path / "given.png")
    # a face slightly past the right border (clipped), no hand (gesture skipped), an untagged-free set of kinds
    given = [
        {"xyxy": [4, 4, 66, 30], "kind": "face"},
        {"xyxy": [2, 2, 40, 40], "kind": "head"},
        {"xyxy": [0, 0, 30, 48], "kind": "person"},
        {"xyxy": [30, 0, 64, 48], "kind": "person"},
    ]
    (tmp_path / "boxes.json").write_text(json.dumps({"given.png": given}))
    out = tmp_path / "out"
    _run(
        capsys,
        "--images",
        tmp_path / "scene.png",
        tmp_path / "given.png",
        "--boxes",
        tmp_path / "boxes.json",
        "--detect",
        "--out",
        out,
        "--visualize",
    )
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    written = set().union(*(fields(r) for r in rows))
    assert written == documented("### predictions.jsonl: an image")
    heat = np.load(out / "gaze_heatmaps.npy")
    assert heat.shape == (2, 64, 64) and heat.dtype == np.float32
    assert [r["tasks"]["gaze"]["heatmap_index"] for r in rows] == [0, 1]
    assert rows[1]["boxes"][0]["clipped"] is True and rows[1]["boxes"][0]["xyxy"] == [4.0, 4.0, 64.0, 30.0]
    for r in rows:  # pixels to 1/100 px, normalised to the decimals of 1/100 px of the longer side (5 here)
        for b in r["boxes"] + (r["detections"] or []):
            assert all(round(v, 2) == v for v in b["xyxy"]) and all(round(v, 5) == v for v in b["xyxy_normalized"])
    assert all((out / r["overlay"]).is_file() for r in rows)


def test_a_clip_row_and_its_summary_are_what_the_docs_say(tmp_path, capsys, fixed_detector):
    pytest.importorskip("av")
    bench = benchmark_script("video")
    clip = bench.write_clip(tmp_path / "clip.mp4", 1, fps=4, size=(160, 120), people=0)
    out = tmp_path / "out"
    _run(capsys, "--video", clip, "--fps", "2", "--out", out, "--visualize")
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    assert set().union(*(fields(r) for r in rows)) == documented("### predictions.jsonl: a clip's frame")
    [summary] = json.loads((out / "tracks.json").read_text())["clips"]
    assert fields(summary) == documented("### tracks.json: a clip's summary")
    kinds = {t["track"]: t["kind"] for t in summary["tracks"]}
    assert sorted(kinds.values()) == ["face", "face", "hand", "person", "person"]  # the same boxes: the same ids
    assert rows[1]["pair"]["tracks"] == rows[0]["pair"]["tracks"] and all(
        kinds[i] == "person" for i in rows[0]["pair"]["tracks"]
    )

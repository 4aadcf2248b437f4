"""`socialfusion predict --video` and `SocialFusion.predict_video` on clips drawn by benchmarks/video.py (packaged
portraits moving over a background): tracks that hold their ids, answers per track and frame, the per-track
summary, the heatmaps file, the annotated video; a clip with nobody in it says so; every bad clip is one line
before the model loads."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from socialfusion import cli, detect as D
from tests.conftest import benchmark_script

av = pytest.importorskip("av")
needs_models = pytest.mark.skipif(not D.available(), reason=f"detection packages not installed: {D.EXTRA_HINT}")
ROOT = Path(__file__).resolve().parents[2]


def _bench():
    return benchmark_script("video")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    bench = _bench()
    return {
        "two": bench.write_clip(root / "two.mp4", 3, fps=10),
        "nobody": bench.write_clip(root / "nobody.mp4", 2, fps=10, people=0),
        "mkv": bench.write_clip(root / "cut.mkv", 4, fps=10),
    }


def _run(capsys, *argv):
    rc = cli.main(["predict", "--ckpt", "tiny", "--no-progress", *map(str, argv)])
    return rc, capsys.readouterr().err


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


@needs_models
def test_a_clip_gives_tracks_answers_per_frame_a_summary_and_an_annotated_video(clips, tmp_path, capsys):
    out = tmp_path / "out"
    rc, err = _run(
        capsys,
        "--video",
        clips["two"],
        "--detect",
        "--tasks",
        "lam,expression,gaze,relation",
        "--fps",
        "2",
        "--out",
        out,
        "--visualize",
    )
    assert rc == 0, err
    rows = _rows(out)
    assert [r["frame"] for r in rows] == list(range(6)) and [r["time_s"] for r in rows] == [
        0.0,
        0.5,
        1.0,
        1.5,
        2.0,
        2.5,
    ]
    faces = [t for r in rows for t in r["tracks"] if t["kind"] == "face"]
    assert faces, "the detector finds the portraits' faces"
    for t in faces:  # a face track carries its face and head, and the three face/head tasks answer on them
        assert [b["kind"] for b in t["boxes"]] == ["face", "head"] and set(t["tasks"]) == {"lam", "expression", "gaze"}
        assert t["tasks"]["gaze"]["heatmap_file"] == "gaze_heatmaps.npy"
    ids = [t["track"] for t in faces]
    assert max(ids.count(i) for i in set(ids)) >= 4, ids  # slow motion: a face keeps its id over most frames
    heat = np.load(out / "gaze_heatmaps.npy", mmap_mode="r")
    assert heat.shape == (len(faces), 64, 64) and np.allclose(heat.sum(axis=(1, 2)), 1, atol=1e-3)
    assert sorted(t["tasks"]["gaze"]["heatmap_index"] for t in faces) == list(range(len(faces)))
    pairs = [r["pair"] for r in rows if r["pair"]]
    assert all(len(p["tracks"]) == 2 and "label" in p["tasks"]["relation"] for p in pairs)

    [clip] = json.loads((out / "tracks.json").read_text())["clips"]
    assert clip["frames"] == 6 and clip["nobody"] is False
    by_id = {t["track"]: t for t in clip["tracks"]}
    for i in set(ids):
        summary = by_id[i]
        assert summary["frames"] == ids.count(i) and summary["kind"] == "face"
        lam = summary["tasks"]["lam"]
        assert sum(lam["labels"].values()) == pytest.approx(1, abs=1e-3) and lam["dominant"] in lam["labels"]
        assert sum(summary["tasks"]["gaze"]["targets"].values()) == pytest.approx(1, abs=1e-3)
    with av.open(str(out / "vis" / "two.mp4")) as video:
        assert sum(1 for _ in video.decode(video.streams.video[0])) == 6
    run = json.loads((out / "summary.json").read_text())
    assert run["frames"] == 6 and run["frames_per_s"] > 0 and run["threads"] >= 1
    assert "two.mp4: 6 frames" in err and "frames/s" in err


@needs_models
def test_nobody_in_the_clip_is_said_not_filled_with_the_whole_frame(clips, tmp_path, capsys):
    rc, err = _run(capsys, "--video", clips["nobody"], "--tasks", "all", "--out", tmp_path / "o")
    assert rc == 0, err
    assert "nobody.mp4: nobody in the clip (no face, hand or person detected in any of its 4 frames)" in err
    rows = _rows(tmp_path / "o")
    assert len(rows) == 4 and all(r["tracks"] == [] and r["pair"] is None for r in rows)
    [clip] = json.loads((tmp_path / "o" / "tracks.json").read_text())["clips"]
    assert clip["nobody"] is True and clip["tracks"] == []


@needs_models
def test_a_truncated_clip_keeps_the_frames_before_the_cut_and_says_so(clips, tmp_path, capsys):
    data = clips["mkv"].read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    rc, err = _run(capsys, "--video", cut, "--tasks", "lam", "--out", tmp_path / "o")
    assert rc == 0, err
    assert 0 < len(_rows(tmp_path / "o")) < 8
    assert "truncated" in err


@needs_models
def test_a_folder_of_frames_and_the_python_api(clips, tmp_path):
    from socialfusion.api import SocialFusion

    frames = tmp_path / "frames"
    frames.mkdir()
    with av.open(str(clips["two"])) as video:
        for i, frame in enumerate(video.decode(video.streams.video[0])):
            if i % 10 == 0:
                frame.to_image().save(frames / f"{i:03d}.jpg")
    (frames / "000-broken.jpg").write_bytes(b"not a jpeg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = SocialFusion.from_pretrained("tiny", device="cpu")
    summary = model.predict_video(frames, tasks="lam,expression")
    assert summary["source"] == "frames" and summary["frames"] == 3
    assert [row["frame"] for row in summary["rows"]] == [0, 1, 2] and all(
        row["time_s"] is None for row in summary["rows"]
    )
    assert any("000-broken.jpg" in n for n in summary["notes"])
    seen = []
    [first, second] = model.predict_video(
        [clips["two"], clips["nobody"]], tasks="lam", fps=1, on_frame=lambda row, image: seen.append(row["clip"])
    )
    assert "rows" not in first and first["frames"] > 0  # with on_frame, no rows are kept
    assert second["nobody"] and len(seen) == first["frames"] + second["frames"]


@pytest.fixture()
def no_model_load(monkeypatch):
    from socialfusion.api import SocialFusion

    monkeypatch.setattr(
        SocialFusion, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("the model loaded before the error"))
    )


def test_bad_clips_are_one_line_before_the_model_loads(clips, tmp_path, capsys, monkeypatch, no_model_load):
    from socialfusion.core import images

    text = tmp_path / "notes.avi"
    text.write_text("hello, I am not a video\n")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "noframes").mkdir()
    cases = {
        text: "not a video FFmpeg can read",
        tmp_path / "empty.mp4": "the file is empty",
        tmp_path / "absent.mp4": "no such file or folder",
        tmp_path / "noframes": "a folder of frames with no image in it",
    }
    for clip, needle in cases.items():
        rc, err = _run(capsys, "--video", clip, "--out", tmp_path / "o")
        lines = err.strip().splitlines()
        assert rc == 2 and lines[0].startswith("error: ") and needle in lines[0] and "Traceback" not in err, (clip, err)
        assert len(lines) == 1 or lines[1].startswith("hint: ")
    monkeypatch.setattr(images, "_max_pixels", 640 * 480 - 1)  # a frame larger than the limit: refused
    rc, err = _run(capsys, "--video", clips["two"], "--out", tmp_path / "o")
    assert rc == 2 and "frames of 640x480 = 307200 pixels exceed the limit" in err
    rc, err = _run(capsys, "--images", clips["two"], "--out", tmp_path / "o")
    assert rc == 2 and "is a video, not an image" in err and "hint: socialfusion predict --video" in err
    rc, err = _run(capsys, "--video", clips["two"], "--boxes", text, "--out", tmp_path / "o")
    assert rc == 2 and "--boxes is for images" in err

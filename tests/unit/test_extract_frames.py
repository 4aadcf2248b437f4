"""`socialfusion data extract-frames ego4d_lam`: clips -> video_imgs/<clip>/img_%05d.jpg, read back by the adapter."""

import shutil

import numpy as np
import pytest
from PIL import Image

from socialfusion.data.adapters import read_dataset
from socialfusion.data.commands import main as data_main
from socialfusion.data.skips import SkipReport
from socialfusion.data.video import frames_at_rate
from tests.official_fixtures import LAM_FRAME_SIZE, write_lam

av = pytest.importorskip("av", reason="PyAV is part of the dev extra; `make install` installs it")


def level(i: int) -> int:
    """The grey level of source frame i: far enough apart to survive H.264 and JPEG."""
    return 20 + 24 * i


def write_clip(path, n_frames: int, fps: int, size=LAM_FRAME_SIZE):
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(n_frames):
            pixels = np.full((size[1], size[0], 3), level(i), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def source_frame(image_path) -> int:
    """Which source frame an extracted image shows (its mean grey level decoded back to an index)."""
    mean = float(np.asarray(Image.open(image_path).convert("L"), dtype=np.float64).mean())
    return round((mean - 20) / 24)


@pytest.fixture
def lam_videos(tmp_path):
    root = write_lam(tmp_path / "ego4d")
    shutil.rmtree(root / "video_imgs")  # the layout as downloaded: annotations, no frames yet
    videos = tmp_path / "videos"
    write_clip(videos / "clip-0001.mp4", n_frames=8, fps=30)
    return root, videos


def test_extracts_the_annotated_frames_and_the_adapter_reads_them(lam_videos, capsys):
    root, videos = lam_videos
    rc = data_main(
        ["extract-frames", "ego4d_lam", "--videos", str(videos), "--root", str(root), "--split", "val", "--no-progress"]
    )
    assert rc == 0
    frames = root / "video_imgs" / "clip-0001"
    # the fixture's tracks cover frames 1-5 (trk-b's frame 0 and trk-a's zero-width frame 6 are cleaned away)
    assert sorted(p.name for p in frames.iterdir()) == [f"img_{n:05d}.jpg" for n in range(1, 6)]
    for n in range(1, 6):  # ffmpeg numbers from 1: image n is the clip's frame n - 1
        assert source_frame(frames / f"img_{n:05d}.jpg") == n - 1
        assert Image.open(frames / f"img_{n:05d}.jpg").size == LAM_FRAME_SIZE
    samples, report = read_dataset("ego4d_lam", root, "val", report=SkipReport())
    assert len(samples) == 7 and report.total == 0


def test_resumes_and_extracts_everything_with_all(lam_videos, capsys):
    root, videos = lam_videos
    args = [
        "extract-frames",
        "ego4d_lam",
        "--videos",
        str(videos),
        "--root",
        str(root),
        "--split",
        "val",
        "--no-progress",
    ]
    data_main(args)
    capsys.readouterr()
    (root / "video_imgs" / "clip-0001" / "img_00003.jpg").unlink()
    data_main(args)
    assert '"written": 1, "existing": 4' in capsys.readouterr().out
    data_main(args + ["--all"])
    assert len(list((root / "video_imgs" / "clip-0001").glob("img_*.jpg"))) == 8


def test_missing_and_unreadable_videos_are_counted_skips_naming_the_file(lam_videos, capsys):
    root, videos = lam_videos
    (videos / "clip-0001.mp4").write_bytes(b"not a video at all")
    rc = data_main(
        ["extract-frames", "ego4d_lam", "--videos", str(videos), "--root", str(root), "--split", "val", "--no-progress"]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "unreadable video" in out and "clip-0001.mp4" in out and '"skipped": 1' in out
    (videos / "clip-0001.mp4").unlink()
    data_main(
        ["extract-frames", "ego4d_lam", "--videos", str(videos), "--root", str(root), "--split", "val", "--no-progress"]
    )
    assert "no video for an annotated clip" in capsys.readouterr().out


# What `ffmpeg -i clip.mp4 -f image2 -vf fps=30 -qscale:v 2 img_%05d.jpg` (ffmpeg 5.1, Debian 12) wrote for these
# clips, as source-frame indices per image: slower clips repeat frames, faster ones drop them, and the last frame
# fills the slots up to its own end.
@pytest.mark.parametrize(
    "fps, n_frames, expected",
    [
        (30, 8, [0, 1, 2, 3, 4, 5, 6, 7]),
        (60, 8, [0, 2, 4, 6]),
        (15, 4, [0, 0, 1, 1, 2, 2, 3, 3]),
        (25, 10, [0, 1, 2, 2, 3, 4, 5, 6, 7, 7, 8, 9]),
        (24, 9, [0, 1, 1, 2, 3, 4, 5, 5, 6, 7, 8]),
    ],
)
def test_frame_numbering_follows_ffmpegs_fps_filter(tmp_path, fps, n_frames, expected):
    write_clip(tmp_path / "clip.mp4", n_frames=n_frames, fps=fps, size=(64, 48))
    got = []
    for number, frame in frames_at_rate(tmp_path / "clip.mp4", fps=30):
        frame.to_image().save(tmp_path / "f.png")
        got.append((number, source_frame(tmp_path / "f.png")))
    assert [n for n, _ in got] == list(range(1, len(expected) + 1))
    assert [i for _, i in got] == expected

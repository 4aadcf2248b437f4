"""Hostile and unusual image files, through `load_image` and through a real training run with evaluation.

Unusable files (truncated JPEG/PNG, zero bytes, not an image, a declared decompression bomb) are an ImageError
naming the file; unusual but valid ones (16-bit, CMYK, palette with transparency, EXIF-rotated, LA, 1-bit, 32-bit
integer, float) load as 8-bit RGB with the size `image_size` announces. Random truncations and byte flips of real
files never raise anything else. In a dataset, a bad image is a counted skip and the run finishes and reports it.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from socialfusion.core.images import ImageError, image_size, load_image

IMAGE_FUZZ_EXAMPLES = int(os.environ.get("SOCIALFUSION_FUZZ_EXAMPLES", "50"))


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(size=(48, 40)) -> Image.Image:
    y, x = np.mgrid[0 : size[1], 0 : size[0]]
    rgb = np.stack([x * 255 // size[0], y * 255 // size[1], (x + y) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header for a width x height RGB image followed by a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(_encode(_photo((16, 16)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _noise(size=(160, 120)) -> Image.Image:  # incompressible: a cut anywhere loses pixel data
    return Image.fromarray(np.random.default_rng(1).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _exif_rotated() -> bytes:
    image = _photo((40, 20))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return _encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def _palette_with_transparency() -> bytes:
    p = Image.new("P", (8, 8), 0)
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putpixel((1, 1), 1)
    return _encode(p, "PNG", transparency=0)


BAD = {  # name: (bytes, expected reason)
    "truncated.jpg": (_encode(_noise(), "JPEG", quality=95)[:3000], "cannot decode image"),
    "truncated.png": (_encode(_noise(), "PNG")[:3000], "cannot decode image"),
    "header-only.png": (_encode(_photo(), "PNG")[:60], "cannot decode image"),
    "zero.jpg": (b"", "image file is empty (0 bytes)"),
    "text.jpg": (b"this is not an image\n" * 10, "not a readable image"),
    "html.png": (b"<!doctype html><html><body>404</body></html>", "not a readable image"),
    "random.jpg": (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not a readable image"),
    "zip.jpg": (b"PK\x03\x04" + b"\x00" * 100, "not a readable image"),
    "signature-only.png": (b"\x89PNG\r\n\x1a\n", "not a readable image"),
    "bomb.png": (_png_declaring(100_000, 100_000), "refused as a decompression bomb"),
    "bomb-wide.png": (_png_declaring(2**31 - 1, 1), "refused as a decompression bomb"),
    "bomb.jpg": (_jpeg_declaring(60_000, 60_000), "refused as a decompression bomb"),
}
GOOD = {  # name: (bytes, expected (W, H) after EXIF orientation)
    "photo.jpg": (_encode(_photo(), "JPEG"), (48, 40)),
    "grey16.png": (_encode(Image.fromarray(np.full((10, 12), 40000, np.uint16)), "PNG"), (12, 10)),
    "cmyk.jpg": (_encode(Image.new("CMYK", (20, 10), (0, 255, 255, 0)), "JPEG"), (20, 10)),
    "palette.png": (_palette_with_transparency(), (8, 8)),
    "exif-rotated.jpg": (_exif_rotated(), (20, 40)),
    "la.png": (_encode(Image.new("LA", (6, 5), (100, 128)), "PNG"), (6, 5)),
    "bilevel.png": (_encode(Image.new("1", (9, 7), 1), "PNG"), (9, 7)),
    "int32.tif": (_encode(Image.fromarray(np.full((4, 5), 70000, np.int32)), "TIFF"), (5, 4)),
    "float.tif": (_encode(Image.fromarray(np.full((4, 5), 0.5, np.float32)), "TIFF"), (5, 4)),
    "rgba.webp": (_encode(Image.new("RGBA", (10, 10), (0, 0, 255, 128)), "WEBP"), (10, 10)),
}


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    for name, (data, _) in {**BAD, **GOOD}.items():
        (root / name).write_bytes(data)
    return root


@pytest.mark.parametrize("name", sorted(BAD))
def test_unusable_images_are_an_image_error_naming_the_file(image_dir, name):
    path = image_dir / name
    with pytest.raises(ImageError) as err:
        load_image(path)
    assert err.value.reason == BAD[name][1] and str(path) in str(err.value)


@pytest.mark.parametrize("name", sorted(GOOD))
def test_unusual_valid_images_load_as_8_bit_rgb_of_the_announced_size(image_dir, name):
    path = image_dir / name
    image = load_image(path)
    assert image.mode == "RGB" and image.size == GOOD[name][1] == image_size(path)
    assert np.asarray(image).dtype == np.uint8


def test_pixel_values_of_the_unusual_formats(image_dir):
    assert load_image(image_dir / "grey16.png").getpixel((0, 0)) == (156, 156, 156)  # 40000 / 65535 * 255, not 255
    r, g, b = load_image(image_dir / "cmyk.jpg").getpixel((5, 5))
    assert r > 200 and g < 60 and b < 60  # C=0 M=Y=255: red
    assert load_image(image_dir / "palette.png").getpixel((0, 0)) == (255, 255, 255)  # transparent: white
    assert load_image(image_dir / "palette.png").getpixel((1, 1)) == (0, 255, 0)
    upright = np.asarray(load_image(image_dir / "exif-rotated.jpg")).astype(int)
    stored = np.asarray(_photo((40, 20))).astype(int)
    assert np.abs(upright - np.rot90(stored, k=-1)).mean() < 8  # rotated 90 degrees clockwise, JPEG noise aside


SEEDS = {
    "jpeg": _encode(_photo((64, 48)), "JPEG", quality=90),
    "png": _encode(_photo((64, 48)), "PNG"),
    "gif": _encode(_photo((32, 24)).convert("P"), "GIF"),
    "webp": _encode(_photo((32, 24)), "WEBP"),
    "bmp": _encode(_photo((16, 12)), "BMP"),
    "tiff": _encode(_photo((16, 12)), "TIFF"),
}


@settings(
    max_examples=IMAGE_FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not os.environ.get("SOCIALFUSION_FUZZ_RANDOM"),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    fmt=st.sampled_from(sorted(SEEDS)),
    cut=st.floats(0.0, 1.0),
    flips=st.lists(st.tuples(st.floats(0.0, 0.999), st.integers(1, 255)), max_size=4),
)
def test_random_truncations_and_byte_flips_never_raise_anything_but_image_error(tmp_path_factory, fmt, cut, flips):
    data = bytearray(SEEDS[fmt])
    for where, xor in flips:
        data[int(where * len(data))] ^= xor
    data = bytes(data[: max(1, int(cut * len(data)))] if cut < 1.0 else data)
    path = tmp_path_factory.mktemp("fuzzimg") / f"x.{fmt}"
    path.write_bytes(data)
    try:
        image = load_image(path)
    except ImageError as err:
        assert str(path) in str(err)
        return
    assert image.mode == "RGB" and image.size[0] > 0 and image.size[1] > 0
    assert image.size == image_size(path)


# ---- through a dataset: counted skips, the run finishes and reports them -----------------------------------------


def test_bad_images_in_a_dataset_are_counted_skips_and_the_run_finishes(image_dir, tmp_path):
    from socialfusion.config import TaskDataConfig, load_config, validate
    from socialfusion.train.loop import train

    names = sorted(BAD) + sorted(GOOD)
    records = [
        {"id": f"s{i}", "task": "expression", "image": n, "label": i % 8, "boxes": [{"xyxy": [0.1, 0.1, 0.9, 0.9]}]}
        for i, n in enumerate(names)
    ]
    for split in ("train", "val"):
        (image_dir / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = load_config(
        "tiny",
        [
            f"train.cache_dir={tmp_path / 'cache'}",
            "train.steps=3",
            "train.eval_every=3",
            "train.batch_size=8",
            "train.save_every=3",
        ],
    )
    config.data.tasks = [TaskDataConfig(task="expression", dataset="jsonl", root=str(image_dir))]
    validate(config)
    summary = train(config, tmp_path / "run", progress=False)

    assert summary["step"] == 3
    evals = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    last_eval = [r for r in evals if "eval" in r][-1]["eval"]["expression"]
    assert last_eval["n"] == len(GOOD), "evaluation should score exactly the usable images"
    skips = summary["skips"]
    reasons = [r for r in skips["counts"] if r.startswith("unusable image")]
    named = " ".join(w for r in reasons for w in skips["examples"][r])
    missing = [name for name in BAD if f"{name} (sample" not in named]
    assert not missing, f"bad images not reported as skips: {missing}"
    good_skipped = [name for name in GOOD if f"{name} (sample" in json.dumps(skips)]
    assert not good_skipped, good_skipped
    assert skips["total"] >= len(BAD)
    logged = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert logged["skips"]["total"] == skips["total"]  # the run reports them in its log
    assert (tmp_path / "run" / "checkpoints" / "last" / "COMPLETE").exists()

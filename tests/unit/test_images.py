import io
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from socialfusion.core import images
from socialfusion.core.images import ImageError, image_size, load_image
from socialfusion.core.schema import DataError


def _save(image: Image.Image, path, fmt: str, **kwargs):
    image.save(path, fmt, **kwargs)
    return path


def test_rgb_jpeg_loads_as_rgb(tmp_path):
    path = _save(Image.new("RGB", (30, 20), (200, 10, 10)), tmp_path / "a.jpg", "JPEG")
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (30, 20)
    assert image_size(path) == (30, 20)


def test_greyscale_palette_and_alpha_become_rgb(tmp_path):
    grey = load_image(_save(Image.new("L", (4, 4), 77), tmp_path / "g.png", "PNG"))
    assert grey.mode == "RGB" and grey.getpixel((0, 0)) == (77, 77, 77)

    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert load_image(_save(palette, tmp_path / "p.png", "PNG")).getpixel((0, 0)) == (10, 200, 30)

    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red: shows as the white background
    rgba.putpixel((1, 1), (0, 0, 255, 255))
    loaded = load_image(_save(rgba, tmp_path / "a.png", "PNG"))
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == (255, 255, 255) and loaded.getpixel((1, 1)) == (0, 0, 255)


def test_16_bit_greys_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 128, 65535, 257]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "deep.png", "PNG")
    assert Image.open(path).mode.startswith("I")
    image = load_image(path)
    assert [image.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 1]


def test_32_bit_integer_image(tmp_path):
    path = _save(Image.fromarray(np.array([[0, 65535]], dtype=np.int32)), tmp_path / "i.tif", "TIFF")
    assert [load_image(path).getpixel((x, 0))[0] for x in range(2)] == [0, 255]


def test_cmyk_jpeg(tmp_path):
    path = _save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", "JPEG", quality=95)
    r, g, b = load_image(path).getpixel((4, 4))
    assert r > 240 and g < 15 and b < 15


def test_exif_orientation_applied_to_pixels_and_header_size(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _save(image, tmp_path / "rot.jpg", "JPEG", exif=exif.tobytes(), quality=95)
    upright = load_image(path)
    assert upright.size == (20, 40) and image_size(path) == (20, 40)
    assert upright.getpixel((10, 5))[0] > 200 and upright.getpixel((10, 35))[2] > 200  # red on top, blue below

    exif[0x0112] = 3  # 180 degrees: no swap
    assert image_size(_save(image, tmp_path / "r3.jpg", "JPEG", exif=exif.tobytes())) == (40, 20)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "image file is empty (0 bytes)"),
        (b"this is not an image at all", "not a readable image"),
    ],
)
def test_empty_and_non_image_files(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    for fn in (load_image, image_size):
        with pytest.raises(ImageError, match="bad.jpg") as err:
            fn(path)
        assert err.value.reason == reason and isinstance(err.value, DataError)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="nope.jpg"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="nope.jpg"):
        image_size(tmp_path / "nope.jpg")
    with pytest.raises(ImageError):
        load_image(tmp_path)


def test_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="cut.jpg") as err:
        load_image(path)
    assert err.value.reason == "cannot decode image"


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bomb_declared_in_header(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))
    for fn in (load_image, image_size):
        with pytest.raises(ImageError, match="bomb.png") as err:
            fn(path)
        assert err.value.reason == "refused as a decompression bomb"


def test_pixel_limit_is_configurable(tmp_path):
    path = _save(Image.new("RGB", (20, 20)), tmp_path / "small.png", "PNG")
    try:
        images.set_max_pixels(100)
        with pytest.raises(ImageError, match="decompression bomb"):
            load_image(path)
        with pytest.raises(ImageError, match="decompression bomb"):
            image_size(path)
    finally:
        images.set_max_pixels(None)
    assert load_image(path).size == (20, 20)


def test_size_cache_sees_a_rewritten_file(tmp_path):
    path = tmp_path / "x.png"
    _save(Image.new("RGB", (10, 10)), path, "PNG")
    assert image_size(path) == (10, 10)
    _save(Image.new("RGB", (12, 30)), path, "PNG")
    assert image_size(path) == (12, 30)


def test_image_error_pickles():
    err = pickle.loads(pickle.dumps(ImageError("/x/y.jpg", "cannot decode image", "truncated")))
    assert err.reason == "cannot decode image" and "y.jpg" in str(err)

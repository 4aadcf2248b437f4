"""Image loading that never surprises: 8-bit RGB, EXIF orientation applied, every failure an ImageError naming the file.

`load_image` decodes the whole image (use it for model input and `data validate`); `image_size` reads only the
header (use it in adapters to normalise pixel boxes) and agrees with `load_image(...).size`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .schema import DataError

# Pillow's own default (about 89.5M pixels, i.e. 0.25 GB of 24-bit pixels); a larger image is treated as a
# decompression bomb. Override with set_max_pixels() or the SOCIALFUSION_MAX_IMAGE_PIXELS environment variable.
DEFAULT_MAX_PIXELS = 89_478_485
_max_pixels = DEFAULT_MAX_PIXELS

# EXIF orientations 5-8 rotate by 90 or 270 degrees, so width and height swap
_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}


_SUPPORTED = "not JPEG, PNG, WebP, GIF, BMP, TIFF or another format Pillow reads"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}  # what a folder of images holds


class ImageError(DataError):
    """An image file that is missing, empty, corrupt, truncated, not an image, or too large.

    `reason` is a short fixed phrase (good as a skip-counter key); the message adds the path and the details.
    """

    def __init__(self, path, reason: str, detail: str = ""):
        self.path, self.reason, self.detail = str(path), reason, detail
        super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))

    def __reduce__(self):  # survive pickling across DataLoader worker processes
        return (type(self), (self.path, self.reason, self.detail))


def set_max_pixels(n: int | None) -> None:
    """Largest accepted width x height (None: the default). Also raises Pillow's own bomb threshold to match."""
    global _max_pixels
    _max_pixels = DEFAULT_MAX_PIXELS if n is None else int(n)
    Image.MAX_IMAGE_PIXELS = max(_max_pixels, DEFAULT_MAX_PIXELS)


def max_pixels() -> int:
    return _max_pixels


if os.environ.get("SOCIALFUSION_MAX_IMAGE_PIXELS"):
    set_max_pixels(int(os.environ["SOCIALFUSION_MAX_IMAGE_PIXELS"]))


def _open(path: Path) -> Image.Image:
    """Open lazily (header only), refusing decompression bombs before any pixel is decoded."""
    if not path.is_file():
        raise ImageError(path, "image file not found")
    if path.stat().st_size == 0:
        raise ImageError(path, "image file is empty (0 bytes)")
    return _open_stream(path, path, _max_pixels)


def _open_stream(source, name, limit: int) -> Image.Image:
    """Open a path or a binary file object lazily, with the size checks; `name` goes into the errors."""
    path = name
    try:
        image = Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:  # the warning if -W error
        raise ImageError(path, "refused as a decompression bomb", str(err)) from err
    except UnidentifiedImageError as err:  # its message names the source object (`<_io.BytesIO object at 0x...>`)
        raise ImageError(path, "not a readable image", _SUPPORTED) from err
    except Exception as err:  # OSError, SyntaxError, ...: all mean "not a usable image"
        raise ImageError(path, "not a readable image", f"{type(err).__name__}: {err}") from err
    # Pillow only warns between 1x and 2x its own limit and errors above; this check makes our limit a hard one
    # (without touching the process-wide warning filters, which other threads share)
    w, h = image.size
    if w <= 0 or h <= 0:
        image.close()
        raise ImageError(path, "image has an empty size", f"{w}x{h}")
    if w * h > limit:
        image.close()
        raise ImageError(path, "refused as a decompression bomb", f"{w}x{h} = {w * h} pixels > limit {limit}")
    return image


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1) or 1)
    except Exception:  # a malformed EXIF block must not make the image unusable: treat it as unrotated
        return 1


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB whatever the mode; `convert` alone clips 16-bit greys to 255 and ignores alpha."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image, dtype=np.float64)
        # 16-bit data (PNG/TIFF) uses 0..65535; "I" images whose values all fit 0..255 are already 8-bit range
        scale = 255.0 / 65535.0 if mode.startswith("I;16") or values.max(initial=0) > 255 else 1.0
        grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if values.max(initial=0) <= 1.0 else 1.0  # floats in [0, 1] are the common convention
        return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "CMYK" and image.info.get("icc_profile"):
        converted = _cmyk_with_profile(image)
        if converted is not None:
            return converted
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in image.info)
    if has_alpha:
        # composite onto white, the way a viewer shows it (a bare convert would expose hidden colours)
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _cmyk_with_profile(image: Image.Image) -> Image.Image | None:
    """Colour-managed CMYK -> sRGB through the embedded ICC profile; None if that fails (then plain convert)."""
    try:
        import io

        from PIL import ImageCms

        source = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except Exception:
        return None


def load_image(path: str | Path) -> Image.Image:
    """The image as an 8-bit RGB PIL image with its EXIF orientation applied; ImageError if unusable."""
    path = Path(path)
    return _decode(_open(path), path)


def load_image_reduced(path: str | Path, side: int) -> tuple[Image.Image, tuple[int, int]]:
    """For a model that resizes every image to `side` x `side`: the image as `load_image` gives it, except that a
    JPEG is decoded at the smallest of libjpeg's scales (1/2, 1/4, 1/8) that keeps both sides >= side, and the
    full image's upright (width, height), which is what boxes and predicted points refer to.

    The scaling happens in the DCT domain while decoding, and the final resize to `side` still only shrinks (PIL's
    bicubic resize filters over the whole source footprint when it shrinks), so nothing aliases. Decoding plus the
    resize of a full-HD JPEG to 168 px: 34 CPU-ms in full, 15 at 1/2 scale, 12 at 1/4 (the tensors differ from a
    full decode's by about 1/255 on average, 11/255 at most; docs/DESIGN-CHANGES.md). Other formats decode in full."""
    path = Path(path)
    image = _open(path)
    full = image.size[::-1] if _orientation(image) in _SWAPPING_ORIENTATIONS else image.size
    if image.format == "JPEG":
        try:
            image.draft("RGB", (side, side))
        except Exception:  # a JPEG the drafting path cannot handle still decodes in full below
            pass
    return _decode(image, path), full


def load_image_bytes(data: bytes, name: str = "upload", max_pixels: int | None = None) -> Image.Image:
    """Encoded image bytes (an upload) -> what `load_image` gives for the same file, with the same errors.

    `max_pixels` (width x height) may only lower the library-wide limit (`max_pixels()`)."""
    import io

    if not data:
        raise ImageError(name, "image file is empty (0 bytes)")
    limit = _max_pixels if max_pixels is None else min(int(max_pixels), _max_pixels)
    return _decode(_open_stream(io.BytesIO(data), name, limit), name)


def _decode(image: Image.Image, path) -> Image.Image:
    """Decode an opened image to upright 8-bit RGB (closing it); ImageError naming `path` on failure."""
    try:
        with image:
            image.load()  # decode now, so truncation and corruption surface here and not later in a worker
            try:
                upright = ImageOps.exif_transpose(image)
            except Exception:  # malformed EXIF: keep the stored orientation (image_size does the same)
                upright = image
            rgb = _to_rgb(upright)
            rgb.load()
            return rgb
    except ImageError:
        raise
    except Exception as err:  # OSError ("image file is truncated"), SyntaxError, ValueError, MemoryError...
        raise ImageError(path, "cannot decode image", f"{type(err).__name__}: {err}") from err


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) as `load_image` would return it, read from the header only (cached per file version)."""
    path = Path(path)
    try:
        st = path.stat()
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the path
        raise ImageError(path, "image file not found") from err
    return _cached_size(str(path), st.st_mtime_ns, st.st_size, _max_pixels)


@lru_cache(maxsize=8192)
def _cached_size(path: str, mtime_ns: int, size: int, limit: int) -> tuple[int, int]:
    # the key carries mtime and size so a rewritten file is re-read, and the limit so a changed limit re-checks
    with _open(Path(path)) as image:
        w, h = image.size
        if _orientation(image) in _SWAPPING_ORIENTATIONS:
            w, h = h, w
    return w, h

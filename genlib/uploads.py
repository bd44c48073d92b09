"""Images that strangers upload: opened safely and normalised to 8-bit RGB, or refused with a clear BadInput.

`open_upload` checks the byte size before reading, the pixel count before decoding (Image.open only
parses the header) and turns PIL's own decompression-bomb error into BadInput. It takes the first frame
of an animation, applies the EXIF orientation, puts transparency on white, and converts grayscale,
palette, CMYK, 16-bit and float images to RGB. Nothing that is not an image gets past it as a crash.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from genlib.errors import BadInput

MAX_BYTES = 20 * 1024 * 1024  # an upload larger than this is refused unread
MAX_PIXELS = 40_000_000  # width x height; refused before decoding
# Decoders genlib lets loose on uploads (PIL knows many more, rarely needed and less exercised).
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG includes multi-picture (MPO) JPEGs
_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, EOFError, KeyError, IndexError)


def _read(src: str | os.PathLike | bytes | bytearray | memoryview, max_bytes: int) -> bytes:
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if len(data) > max_bytes:
            raise BadInput(f"upload is {len(data):,} bytes, over the limit of {max_bytes:,}")
        return data
    if not isinstance(src, (str, os.PathLike)):
        raise BadInput(f"expected a file path, bytes or a PIL image, got {type(src).__name__}")
    path = Path(src)
    if not path.is_file():
        raise BadInput(f"{path.name or path}: no such file")
    size = path.stat().st_size
    if size > max_bytes:
        raise BadInput(f"{path.name} is {size:,} bytes, over the upload limit of {max_bytes:,}")
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while we looked
        raise BadInput(f"{path.name} is over the upload limit of {max_bytes:,} bytes")
    return data


def _check_pixels(im: Image.Image, max_pixels: int) -> None:
    w, h = im.size
    if w < 1 or h < 1:
        raise BadInput(f"image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise BadInput(f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}; make it smaller")
    bomb = Image.MAX_IMAGE_PIXELS  # PIL only warns between this and twice it; genlib refuses
    if bomb and w * h > bomb:
        raise BadInput(f"image refused as a decompression bomb: {w}x{h} = {w * h:,} pixels, over PIL's {bomb:,}")


def open_upload(
    src: str | os.PathLike | bytes | bytearray | memoryview | Image.Image,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int = MAX_BYTES,
) -> Image.Image:
    """A file path, the file's bytes, or a PIL image -> a loaded 8-bit RGB PIL image; BadInput otherwise."""
    if isinstance(src, Image.Image):
        _check_pixels(src, max_pixels)
        try:
            return to_rgb(ImageOps.exif_transpose(src) or src)
        except BadInput:
            raise
        except (*_ERRORS, MemoryError) as e:
            raise BadInput(f"image could not be converted ({src.mode}): {e}") from e
    data = _read(src, max_bytes)
    if not data:
        raise BadInput("upload is empty (0 bytes)")
    Image.init()  # register every plugin, so `formats` can name WEBP and TIFF
    try:
        im = Image.open(io.BytesIO(data), formats=FORMATS)  # lazy: reads the header only
    except Image.DecompressionBombError as e:
        raise BadInput(f"image refused as a decompression bomb: {e}") from e
    except UnidentifiedImageError as e:  # PIL's message names only the in-memory buffer object
        raise BadInput(f"not an image genlib can read (accepted: {', '.join(FORMATS)})") from e
    except _ERRORS as e:
        raise BadInput(f"not an image genlib can read (accepted: {', '.join(FORMATS)}): {e}") from e
    with im:
        _check_pixels(im, max_pixels)
        try:
            if getattr(im, "is_animated", False):
                im.seek(0)  # the first frame
            im.load()
            oriented = ImageOps.exif_transpose(im) or im
            out = to_rgb(oriented)
        except Image.DecompressionBombError as e:
            raise BadInput(f"image refused as a decompression bomb: {e}") from e
        except BadInput:
            raise
        except (*_ERRORS, MemoryError) as e:
            raise BadInput(f"image could not be decoded ({im.format}, {im.mode}): {e}") from e
    _check_pixels(out, max_pixels)
    return out


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: alpha composited on white, 16-bit and float scaled to 0-255, CMYK converted."""
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    elif mode in ("PA", "La", "RGBa", "LA"):
        im = im.convert("RGBA")
        mode = "RGBA"
    elif mode in ("1", "L"):
        return im.convert("RGB")
    elif mode.startswith("I") or mode == "F":
        return Image.fromarray(_to_uint8(im, mode), "L").convert("RGB")
    if mode == "RGBA":
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im).convert("RGB")
    if mode == "RGB":
        return im
    try:
        return im.convert("RGB")  # CMYK, YCbCr, HSV ...
    except (ValueError, OSError) as e:
        raise BadInput(f"image colour mode {mode} is not supported: {e}") from e


def _to_uint8(im: Image.Image, mode: str) -> np.ndarray:
    """A single-channel 16/32-bit integer or float image -> uint8, by its bit depth (not stretched)."""
    a = np.asarray(im).astype(np.float32)  # float32 keeps a 40-megapixel image at 160 MB
    if mode == "F":
        np.nan_to_num(a, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        if a.size and 0.0 <= a.min() and a.max() <= 1.0:  # [0, 1] floats; otherwise taken as 0-255
            a *= 255.0
    elif mode.startswith("I;16") or (a.size and a.max() > 255):
        a /= 257.0  # 0-65535 -> 0-255
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)

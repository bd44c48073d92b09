"""genlib.uploads.open_upload on the uploads people really send: every image below is made in the test."""

from __future__ import annotations

import io
import struct
import zlib
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genlib.errors import BadInput
from genlib.uploads import FORMATS, MAX_PIXELS, open_upload


def encoded(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png(width: int, height: int, bit_depth: int, colour_type: int, raw_rows: bytes | None) -> bytes:
    """A PNG written by hand: any header, and IDAT from `raw_rows` (filter bytes included) or none at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(raw_rows)) if raw_rows is not None else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def px(im: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    return im.getpixel(xy)


def check_rgb(im: Image.Image, size: tuple[int, int]) -> None:
    assert isinstance(im, Image.Image) and im.mode == "RGB" and im.size == size
    np.asarray(im)  # fully loaded, detached from the upload


# ----- converted -----
def test_rgb_png_from_bytes_and_from_paths(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    data = encoded(Image.fromarray(a))
    (tmp_path / "x.png").write_bytes(data)
    for src in (data, bytearray(data), str(tmp_path / "x.png"), tmp_path / "x.png"):
        im = open_upload(src)
        check_rgb(im, (20, 12))
        assert np.array_equal(np.asarray(im), a)


def test_grayscale_and_one_bit():
    im = open_upload(encoded(Image.new("L", (5, 4), 77)))
    check_rgb(im, (5, 4))
    assert px(im) == (77, 77, 77)
    bw = Image.new("1", (6, 3), 0)
    bw.putpixel((1, 1), 1)
    im = open_upload(encoded(bw))
    assert px(im) == (0, 0, 0) and px(im, (1, 1)) == (255, 255, 255)


def test_rgba_and_la_are_composited_on_white():
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (255, 0, 0, 255), (255, 0, 0, 128)])
    im = open_upload(encoded(rgba))
    check_rgb(im, (3, 1))
    assert px(im, (0, 0)) == (255, 255, 255)  # fully transparent -> white, not the hidden red
    assert px(im, (1, 0)) == (255, 0, 0)
    r, g, b = px(im, (2, 0))
    assert r == 255 and abs(g - 127) <= 1 and abs(b - 127) <= 1
    la = Image.new("LA", (2, 2), (0, 0))
    im = open_upload(encoded(la))
    assert px(im) == (255, 255, 255)


def test_cmyk_jpeg_and_tiff():
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    for data in (encoded(cyan, "JPEG", quality=95), encoded(cyan, "TIFF")):
        im = open_upload(data)
        check_rgb(im, (16, 16))
        r, g, b = px(im, (8, 8))
        assert r < 20 and g > 235 and b > 235


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    a = np.array([[0, 257 * 100, 65535, 257 * 200]], dtype=np.uint16)
    src = Image.fromarray(a)
    assert src.mode == "I;16"
    data = encoded(src)
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    im = open_upload(data)
    check_rgb(im, (4, 1))
    assert [px(im, (x, 0))[0] for x in range(4)] == [0, 100, 255, 200]


def test_sixteen_bit_rgb_png():
    row = b"\x00" + struct.pack(">6H", 65535, 0, 257 * 50, 0, 65535, 257 * 9)  # filter 0, two RGB16 pixels
    im = open_upload(png(2, 1, 16, 2, row))
    check_rgb(im, (2, 1))
    assert px(im, (0, 0)) == (255, 0, 50) and px(im, (1, 0)) == (0, 255, 9)


def test_thirty_two_bit_and_float_tiff():
    i32 = Image.fromarray(np.array([[0, 65535]], dtype=np.int32), "I")
    im = open_upload(encoded(i32, "TIFF"))
    assert [px(im, (x, 0))[0] for x in range(2)] == [0, 255]
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    im = open_upload(encoded(f, "TIFF"))
    check_rgb(im, (3, 1))
    assert [px(im, (x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_palette_with_and_without_transparency():
    p = Image.new("P", (2, 1))
    p.putpalette([10, 20, 30, 200, 100, 0] + [0] * 762)
    p.putdata([0, 1])
    im = open_upload(encoded(p))
    assert px(im, (0, 0)) == (10, 20, 30) and px(im, (1, 0)) == (200, 100, 0)
    im = open_upload(encoded(p, "PNG", transparency=0))
    assert px(im, (0, 0)) == (255, 255, 255) and px(im, (1, 0)) == (200, 100, 0)
    im = open_upload(encoded(p, "GIF", transparency=1))
    assert px(im, (0, 0)) == (10, 20, 30) and px(im, (1, 0)) == (255, 255, 255)


def test_animated_gif_gives_the_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    im = open_upload(data)
    check_rgb(im, (8, 8))
    r, g, b = px(im, (4, 4))
    assert r > 240 and g < 15 and b < 15


def test_exif_orientation_is_applied():
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, 20:] = 255  # stored: black left half, white right half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encoded(Image.fromarray(a), "JPEG", quality=95, exif=exif.tobytes())
    for im in (open_upload(data), open_upload(Image.open(io.BytesIO(data)))):
        check_rgb(im, (20, 40))
        assert px(im, (10, 5))[0] < 30 and px(im, (10, 35))[0] > 225  # the left half is now on top


def test_webp_with_alpha_if_supported():
    from PIL import features

    if not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    im = open_upload(encoded(Image.new("RGBA", (4, 4), (0, 0, 255, 0)), "WEBP", lossless=True))
    assert px(im) == (255, 255, 255)


def test_a_pil_image_is_normalised_too():
    im = open_upload(Image.new("RGBA", (3, 3), (0, 0, 0, 0)))
    check_rgb(im, (3, 3))
    assert px(im) == (255, 255, 255)
    with pytest.raises(BadInput, match="pixels"):
        open_upload(Image.new("L", (100, 100)), max_pixels=1000)


# ----- refused -----
def test_huge_dimensions_are_refused_before_decoding():
    # 10000 x 5000 = 50M pixels: under PIL's bomb limit, over genlib's; no pixel data at all, so a decode attempt
    # would fail differently.
    with pytest.raises(BadInput, match=r"10000x5000 = 50,000,000 pixels, over the limit of 40,000,000"):
        open_upload(png(10_000, 5_000, 8, 2, None))
    assert 10_000 * 5_000 > MAX_PIXELS
    with pytest.raises(BadInput, match="over the limit of 100"):
        open_upload(encoded(Image.new("RGB", (20, 20))), max_pixels=100)


def test_decompression_bombs_are_refused_even_with_a_high_pixel_limit():
    # 900M pixels: PIL's open raises its DecompressionBombError; 90M: PIL only warns, genlib refuses.
    for side in (30_000, 9_500):
        with pytest.warns(Image.DecompressionBombWarning) if side == 9_500 else nullcontext():
            with pytest.raises(
                BadInput, match="decompression bomb" if side == 30_000 else "over the limit of 40,000,000"
            ):
                open_upload(png(side, side, 8, 2, None))
            with pytest.raises(BadInput, match="decompression bomb"):
                open_upload(png(side, side, 8, 2, None), max_pixels=10**12)
    # A real, highly compressible bomb: 7000 x 7000 zeros (49M pixels) in about 50 kB.
    data = png(7_000, 7_000, 8, 0, (b"\x00" * 7_001) * 7_000)
    assert len(data) < 100_000
    with pytest.raises(BadInput, match="pixels, over the limit"):
        open_upload(data)


def test_upload_size_limit(tmp_path):
    data = encoded(Image.new("RGB", (64, 64)), "BMP")
    with pytest.raises(BadInput, match="over the limit of 1,000"):
        open_upload(data, max_bytes=1000)
    (tmp_path / "big.bmp").write_bytes(data)
    with pytest.raises(BadInput, match="big.bmp is .* bytes, over the upload limit of 1,000"):
        open_upload(tmp_path / "big.bmp", max_bytes=1000)
    assert open_upload(tmp_path / "big.bmp").size == (64, 64)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"hello, this is not an image\n", "not an image"),
        (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), "not an image"),
        (b"<html><body>404</body></html>", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),  # PNG signature, garbage after it
        (b"PK\x03\x04" + b"\x00" * 100, "not an image"),  # a zip
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "not an image"),
        (b"P6\n4 4\n255\n" + b"\x00" * 48, "accepted: PNG, JPEG"),  # PPM: an image, but not an accepted format
    ],
)
def test_not_an_image_is_refused(data, match):
    with pytest.raises(BadInput, match=match):
        open_upload(data)


def test_truncated_images_are_refused():
    for fmt in ("PNG", "JPEG", "GIF"):
        a = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        data = encoded(Image.fromarray(a), fmt)
        with pytest.raises(BadInput):
            open_upload(data[: len(data) // 2])


def test_bad_sources_are_refused(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        open_upload(tmp_path / "missing.png")
    with pytest.raises(BadInput, match="no such file"):
        open_upload(str(tmp_path))  # a directory
    with pytest.raises(BadInput, match="expected a file path"):
        open_upload(42)  # type: ignore[arg-type]
    (tmp_path / "notes.txt").write_text("just text")
    with pytest.raises(BadInput, match="not an image"):
        open_upload(Path(tmp_path / "notes.txt"))


def test_accepted_formats_are_the_common_ones():
    assert {"PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"} <= set(FORMATS)
    for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF"):
        assert open_upload(encoded(Image.new("RGB", (3, 2), (9, 9, 9)), fmt)).size == (3, 2)


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about some corrupt metadata; that is fine
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"])
def test_corrupted_files_never_crash(fmt):
    """Flip bytes, cut and splice valid files: every result is an RGB image or a BadInput."""
    from PIL import features

    if fmt == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    rng = np.random.default_rng(len(fmt))
    a = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    good = encoded(Image.fromarray(a).convert("P") if fmt == "GIF" else Image.fromarray(a), fmt)
    outcomes = {"ok": 0, "refused": 0}
    for i in range(150):
        data = bytearray(good)
        if i % 3 == 0:
            for pos in rng.integers(0, len(data), 1 + i % 7):
                data[pos] = int(rng.integers(0, 256))
        elif i % 3 == 1:
            data = data[: int(rng.integers(1, len(data)))]
        else:
            cut = int(rng.integers(0, len(data)))
            data = data[:cut] + bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8)) + data[cut:]
        try:
            im = open_upload(bytes(data))
        except BadInput:
            outcomes["refused"] += 1
        else:
            assert im.mode == "RGB" and im.size[0] * im.size[1] <= MAX_PIXELS
            outcomes["ok"] += 1
    assert outcomes["refused"] > 0

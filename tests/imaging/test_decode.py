"""Uploads become RGB images and masks, or errors a member can act on."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from inference.imaging import ImageInputError, decode_image, decode_mask, image_size_of
from inference.jobs import JobError

MB = 1024 * 1024


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` 1-bit pixels but holds almost no data: a bomb's header."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


def gif_with_frame(frame_w: int, frame_h: int) -> bytes:
    """A 10x10 GIF whose first frame claims to be ``frame_w`` x ``frame_h``: Pillow grows the image to it."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 10, 10, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, frame_w, frame_h, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b";"


def message(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------- accepted images


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_accepted_formats_decode_to_rgb(fmt: str) -> None:
    source = Image.new("RGB", (24, 16), (200, 30, 30))
    image = decode_image(encode(source, fmt))
    assert image.mode == "RGB"
    assert image.size == (24, 16)
    r, g, b = image.getpixel((12, 8))
    assert r > 150 and g < 80 and b < 80


def test_errors_are_job_errors_for_the_member() -> None:
    assert issubclass(ImageInputError, JobError)


def test_cmyk_jpeg_becomes_rgb() -> None:
    image = decode_image(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"))
    assert image.mode == "RGB"
    r, g, b = image.getpixel((8, 8))
    assert r > 220 and g < 40 and b < 40


def test_exif_orientation_is_applied() -> None:
    stored = Image.new("RGB", (20, 10), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 10))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = encode(stored, "JPEG", exif=exif.tobytes(), quality=95)
    image = decode_image(data)
    assert image.size == (10, 20)
    top, bottom = image.getpixel((5, 2)), image.getpixel((5, 17))
    assert top[0] > 200 and top[2] < 60  # the stored left edge is now the top
    assert bottom[2] > 200 and bottom[0] < 60
    assert image_size_of(data) == (10, 20)


def test_transparency_is_flattened_onto_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    image = decode_image(encode(rgba))
    assert image.getpixel((4, 4)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (0, 0, 255)


def test_palette_with_transparent_index_is_flattened() -> None:
    palette = Image.new("P", (8, 8), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    image = decode_image(encode(palette, transparency=1))
    assert image.getpixel((4, 4)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (0, 0, 0)


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    values = np.array([[0, 65535], [32896, 1000]], dtype="<u2")
    data = encode(Image.frombytes("I;16", (2, 2), values.tobytes()))
    image = decode_image(data)
    assert image.mode == "RGB"
    assert [image.getpixel(p)[0] for p in [(0, 0), (1, 0), (0, 1), (1, 1)]] == [0, 255, 128, 4]


@pytest.mark.parametrize("mode", ["L", "1", "LA"])
def test_greyscale_modes_become_rgb(mode: str) -> None:
    image = decode_image(encode(Image.new(mode, (6, 6), 255 if mode != "LA" else (255, 255))))
    assert image.mode == "RGB"
    assert image.getpixel((3, 3)) == (255, 255, 255)


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    r, _g, b = decode_image(data).getpixel((4, 4))
    assert r > 200 and b < 50


# --------------------------------------------------------------------------- refused uploads


def test_empty_upload() -> None:
    with pytest.raises(ImageInputError) as excinfo:
        decode_image(b"")
    assert message(excinfo) == "The image file is empty."


def test_thirty_megabyte_upload_is_refused_before_decoding() -> None:
    with pytest.raises(ImageInputError) as excinfo:
        decode_image(b"\x89PNG\r\n\x1a\n" + b"\0" * (30 * MB - 8))
    assert message(excinfo) == "The image is 30.0 MB; the limit is 25 MB."


def test_text_file_named_png() -> None:
    with pytest.raises(ImageInputError) as excinfo:
        decode_image(b"just some notes, saved as cat.png\n")
    assert message(excinfo) == "That file is not an image I can read (PNG, JPEG or WebP)."


def test_other_image_formats_are_named() -> None:
    with pytest.raises(ImageInputError) as excinfo:
        decode_image(encode(Image.new("RGB", (4, 4)), "BMP"))
    assert "is a BMP image" in message(excinfo)
    assert "PNG, JPEG or WebP" in message(excinfo)


def test_heic_photo_gets_a_hint() -> None:
    heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 64
    with pytest.raises(ImageInputError) as excinfo:
        decode_image(heic)
    assert "HEIC" in message(excinfo) and "Most Compatible" in message(excinfo)


def test_hundred_megapixel_png_bomb_is_refused_from_its_header() -> None:
    bomb = png_header_only(10_000, 10_000)  # a real decode would need 100 M pixels; the data would not even do
    assert len(bomb) < 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape
        with pytest.raises(ImageInputError) as excinfo:
            decode_image(bomb)
    assert message(excinfo) == ("The image is 10,000 x 10,000 pixels (100.0 megapixels); the limit is 40 megapixels. "
                                "Please send a smaller one.")


def test_bomb_beyond_pillows_own_hard_limit_gets_our_message() -> None:
    with pytest.raises(ImageInputError) as excinfo:
        decode_image(png_header_only(30_000, 30_000))  # 900 M pixels: Image.open would raise its own error
    assert "30,000 x 30,000 pixels" in message(excinfo)


def test_real_compressible_bomb_is_refused() -> None:
    data = encode(Image.new("1", (8_000, 6_000)), optimize=False)
    assert len(data) < 200_000
    with pytest.raises(ImageInputError, match="8,000 x 6,000 pixels"):
        decode_image(data)


@pytest.mark.parametrize("frame", [10_000, 30_000])
def test_gif_frame_bomb_never_leaks_pillows_warning_or_error(frame: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageInputError, match="too large|megapixels"):
            decode_image(gif_with_frame(frame, frame))


def test_pixel_limit_is_configurable() -> None:
    data = encode(Image.new("RGB", (100, 100)))
    with pytest.raises(ImageInputError, match=r"100 x 100 pixels .*the limit is 0\.005 megapixels"):
        decode_image(data, max_pixels=5_000)
    assert decode_image(data, max_pixels=10_000).size == (100, 100)


def test_truncated_png() -> None:
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = encode(noise)
    with pytest.raises(ImageInputError) as excinfo:
        decode_image(data[: len(data) // 2])
    assert message(excinfo).startswith("The image seems damaged or incomplete.")


def test_truncated_jpeg() -> None:
    noise = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = encode(noise, "JPEG")
    with pytest.raises(ImageInputError, match="damaged or incomplete"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"\x89PNG\r\n\x1a\n" + b"garbage" * 5, b"\x89PNG\r\n\x1a\n", b"GIF89a\x01"])
def test_right_magic_wrong_insides(data: bytes) -> None:
    with pytest.raises(ImageInputError, match="damaged or incomplete"):
        decode_image(data)


def test_what_names_the_upload_in_messages() -> None:
    with pytest.raises(ImageInputError, match=r"^The source image is 2\.0 MB; the limit is 1 MB\.$"):
        decode_image(b"x" * (2 * MB), what="source image", max_bytes=MB)
    with pytest.raises(ImageInputError, match="^The source image file is not an image"):
        decode_image(b"hello", what="source image")


# --------------------------------------------------------------------------- masks


def test_mask_white_paints_black_keeps_and_is_resized() -> None:
    drawn = Image.new("L", (20, 10), 0)
    drawn.paste(255, (10, 0, 20, 10))  # right half
    mask = decode_mask(encode(drawn), (40, 20))
    assert mask.mode == "L" and mask.size == (40, 20)
    assert mask.getpixel((35, 10)) == 255 and mask.getpixel((5, 10)) == 0


def test_rgba_mask_uses_transparency() -> None:
    drawn = Image.new("RGBA", (16, 16), (0, 0, 0, 255))
    drawn.paste((0, 0, 0, 0), (0, 0, 8, 16))  # erased (transparent) left half, black pixels everywhere
    mask = decode_mask(encode(drawn), (16, 16))
    assert mask.getpixel((2, 8)) == 255 and mask.getpixel((12, 8)) == 0


def test_opaque_rgba_mask_uses_brightness() -> None:
    drawn = Image.new("RGBA", (16, 16), (0, 0, 0, 255))
    drawn.paste((255, 255, 255, 255), (8, 0, 16, 16))
    mask = decode_mask(encode(drawn), (16, 16))
    assert mask.getpixel((12, 8)) == 255 and mask.getpixel((2, 8)) == 0


def test_grey_mask_stays_grey() -> None:
    mask = decode_mask(encode(Image.new("RGB", (8, 8), (200, 200, 200))), (8, 8))
    assert mask.getpixel((4, 4)) == 200


def test_all_black_mask_is_refused() -> None:
    with pytest.raises(ImageInputError) as excinfo:
        decode_mask(encode(Image.new("RGB", (8, 8))), (8, 8))
    assert message(excinfo) == "The mask is empty: paint the area to change in white."


def test_fully_transparent_mask_is_all_white_and_allowed() -> None:
    mask = decode_mask(encode(Image.new("RGBA", (8, 8), (0, 0, 0, 0))), (8, 8))
    assert mask.getextrema() == (255, 255)


def test_all_white_mask_is_allowed() -> None:
    assert decode_mask(encode(Image.new("L", (8, 8), 255)), (4, 4)).getextrema() == (255, 255)


def test_mask_errors_name_the_mask() -> None:
    with pytest.raises(ImageInputError, match="^The mask file is not an image"):
        decode_mask(b"not an image", (8, 8))
    with pytest.raises(ImageInputError, match=r"^The mask is \d"):
        decode_mask(png_header_only(10_000, 10_000), (8, 8))


# --------------------------------------------------------------------------- sizes from headers


def test_image_size_of_reads_headers_only() -> None:
    assert image_size_of(encode(Image.new("RGB", (30, 20)))) == (30, 20)
    assert image_size_of(png_header_only(10_000, 10_000)) == (10_000, 10_000)
    assert image_size_of(encode(Image.new("RGB", (7, 5)), "BMP")) == (7, 5)


@pytest.mark.parametrize("data", [b"", b"plain text", b"\x89PNG\r\n\x1a\n"])
def test_image_size_of_unreadable_is_none(data: bytes) -> None:
    assert image_size_of(data) is None

"""Generation parameters written the Automatic1111 way, and read back from PNG, JPEG and WebP."""

from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image, PngImagePlugin

from inference.imaging import (
    encode_png,
    format_parameters,
    parse_parameters,
    read_parameters,
    user_comment_exif,
)
from inference.imaging.pngmeta import png_text_chunks

BASE = dict(steps=4, sampler="Euler a", guidance=7, seed=123, width=512, height=512, model="sd-turbo")


def params(prompt: str = "a lighthouse", negative: str = "", **extra: object) -> str:
    return format_parameters(prompt=prompt, negative_prompt=negative, extra=extra or None, **BASE)


def test_three_lines_like_automatic1111() -> None:
    assert params("a lighthouse at dusk", "blurry") == (
        "a lighthouse at dusk\n"
        "Negative prompt: blurry\n"
        "Steps: 4, Sampler: Euler a, CFG scale: 7.0, Seed: 123, Size: 512x512, Model: sd-turbo"
    )


def test_empty_negative_prompt_is_left_out() -> None:
    assert params("cat") == "cat\nSteps: 4, Sampler: Euler a, CFG scale: 7.0, Seed: 123, Size: 512x512, Model: sd-turbo"


def test_extra_values_follow_and_are_quoted_when_needed() -> None:
    text = format_parameters(prompt="p", negative_prompt="", extra={
        "Denoising strength": 0.6, "Lora": "a:0.8, b:1", "easel job": "abc123", "Note": None,
        "Padded": " x", "Quoted": '"hi"'}, **BASE)
    last = text.splitlines()[-1]
    assert last.endswith('Model: sd-turbo, Denoising strength: 0.6, Lora: "a:0.8, b:1", easel job: abc123, '
                         'Padded: " x", Quoted: "\\"hi\\""')
    parsed = parse_parameters(text)
    assert parsed["Lora"] == "a:0.8, b:1"
    assert parsed["Padded"] == " x"
    assert parsed["Quoted"] == '"hi"'
    assert "Note" not in parsed


@pytest.mark.parametrize("key", ["bad:key", "Steps, x", "", " lead", "-dash"])
def test_unwritable_extra_names_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        params(**{key: 1})


def test_extra_cannot_overwrite_a_standard_field() -> None:
    with pytest.raises(ValueError, match="already written"):
        params(Seed=5)


@pytest.mark.parametrize(("prompt", "negative"), [
    ("a lighthouse, oil painting, (dramatic:1.2)", "blurry, low quality"),
    ("two lines\nof prompt", "and a\nnegative over\nthree lines"),
    ('she said "hello", then: left', 'no "quotes"'),
    ("Füße, 東京の夜, 🐱 emoji", "ñ, ß: ø"),
    ("Steps: 1, Sampler: x, Seed: 2\nreal last line", ""),
    ("", "only a negative"),
    ("", ""),
    ("trailing newline\n", "  spaced  "),
])
def test_round_trip(prompt: str, negative: str) -> None:
    text = format_parameters(prompt=prompt, negative_prompt=negative, extra={"Lora": "x:1, y:0.5"}, **BASE)
    parsed = parse_parameters(text)
    assert parsed["prompt"] == prompt
    assert parsed["negative_prompt"] == negative
    assert parsed["Steps"] == "4" and parsed["Sampler"] == "Euler a" and parsed["CFG scale"] == "7.0"
    assert parsed["Seed"] == "123" and parsed["Size"] == "512x512" and parsed["Model"] == "sd-turbo"
    assert parsed["Lora"] == "x:1, y:0.5"


def test_parses_text_written_by_automatic1111() -> None:
    text = ("masterpiece, 1girl\nNegative prompt: lowres, bad anatomy\n"
            'Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 512x768, Model hash: abc, '
            'Model: anything-v3, Lora hashes: "x: 1234, y: 5678", Version: v1.6.0')
    parsed = parse_parameters(text)
    assert parsed["prompt"] == "masterpiece, 1girl"
    assert parsed["negative_prompt"] == "lowres, bad anatomy"
    assert parsed["Sampler"] == "DPM++ 2M Karras"
    assert parsed["Lora hashes"] == "x: 1234, y: 5678"
    assert parsed["Version"] == "v1.6.0"


def test_text_without_settings_is_all_prompt() -> None:
    assert parse_parameters("style: anime, a cat") == {"prompt": "style: anime, a cat", "negative_prompt": ""}


# --------------------------------------------------------------------------- files


def test_png_round_trip_latin1_uses_text_chunk() -> None:
    text = params("a lighthouse, oil painting", "blurry")
    data = encode_png(Image.new("RGB", (8, 8), (10, 20, 30)), text)
    assert b"tEXtparameters\0" in data
    assert read_parameters(data) == text
    with Image.open(io.BytesIO(data)) as image:
        assert image.getpixel((0, 0)) == (10, 20, 30)


def test_png_round_trip_unicode_uses_itxt() -> None:
    text = params("東京の夜, 🐱\nsecond line", "ぼやけた")
    data = encode_png(Image.new("RGB", (8, 8)), text)
    assert b"iTXtparameters\0" in data
    assert read_parameters(data) == text
    assert parse_parameters(read_parameters(data))["prompt"] == "東京の夜, 🐱\nsecond line"


def test_png_without_parameters() -> None:
    data = encode_png(Image.new("RGB", (8, 8)))
    assert b"parameters" not in data
    assert read_parameters(data) is None


def test_encode_png_keeps_alpha_and_converts_odd_modes() -> None:
    with Image.open(io.BytesIO(encode_png(Image.new("RGBA", (4, 4), (1, 2, 3, 4))))) as image:
        assert image.mode == "RGBA" and image.getpixel((0, 0)) == (1, 2, 3, 4)
    with Image.open(io.BytesIO(encode_png(Image.new("CMYK", (4, 4)), "x"))) as image:
        assert image.mode == "RGB"


@pytest.mark.parametrize("zip_text", [False, True])
def test_reads_itxt_plain_or_compressed_among_other_chunks(zip_text: bool) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "other tool")
    info.add_itxt("parameters", "é prompt\nSteps: 1, Sampler: a, Seed: 1", zip=zip_text)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG", pnginfo=info)
    assert read_parameters(buffer.getvalue()) == "é prompt\nSteps: 1, Sampler: a, Seed: 1"
    assert dict(png_text_chunks(buffer.getvalue()))["Software"] == "other tool"


def test_reads_ztxt_chunk() -> None:
    body = b"parameters\0\0" + zlib.compress("a cat\nSteps: 1, Sampler: a, Seed: 1".encode("latin-1"))
    data = encode_png(Image.new("RGB", (4, 4)))
    chunk = len(body).to_bytes(4, "big") + b"zTXt" + body + zlib.crc32(b"zTXt" + body).to_bytes(4, "big")
    data = data[:-12] + chunk + data[-12:]  # just before IEND, after the pixels
    assert read_parameters(data) == "a cat\nSteps: 1, Sampler: a, Seed: 1"


def test_oversized_compressed_chunk_is_not_inflated() -> None:
    body = b"parameters\0\0" + zlib.compress(b"a" * (3 * 1024 * 1024))
    data = encode_png(Image.new("RGB", (4, 4)))
    chunk = len(body).to_bytes(4, "big") + b"zTXt" + body + zlib.crc32(b"zTXt" + body).to_bytes(4, "big")
    assert read_parameters(data[:-12] + chunk + data[-12:]) is None


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_carry_parameters_in_exif_user_comment(fmt: str) -> None:
    text = params("Füße, 東京", "neg")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, fmt, exif=user_comment_exif(text))
    assert read_parameters(buffer.getvalue()) == text


@pytest.mark.parametrize(("raw", "expected"), [
    (b"UNICODE\0" + "little endian é".encode("utf-16-le"), "little endian é"),
    (b"UNICODE\0" + "with a bom é".encode("utf-16"), "with a bom é"),
    (b"ASCII\0\0\0plain ascii\0", "plain ascii"),
    (b"\0\0\0\0\0\0\0\0undefined charset, utf-8 \xc3\xa9", "undefined charset, utf-8 é"),
])
def test_user_comment_encodings(raw: bytes, expected: str) -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = raw
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "JPEG", exif=exif.tobytes())
    assert read_parameters(buffer.getvalue()) == expected


@pytest.mark.parametrize("data", [
    b"", b"just text", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\xff\xff\xff\xff", b"\xff\xd8\xff\xe1garbage",
])
def test_read_parameters_never_raises(data: bytes) -> None:
    assert read_parameters(data) is None


def test_jpeg_without_exif_and_gif_have_no_parameters() -> None:
    for fmt in ("JPEG", "GIF"):
        buffer = io.BytesIO()
        Image.new("RGB", (4, 4)).save(buffer, fmt)
        assert read_parameters(buffer.getvalue()) is None

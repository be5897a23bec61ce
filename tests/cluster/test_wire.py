"""The wire format: what goes into Redis comes back equal, and nothing else is accepted."""

import json

import pytest
from PIL import Image

from inference.cluster.wire import (
    TooLarge,
    WireError,
    decode_batch,
    decode_result,
    encode_batch,
    encode_result,
)
from inference.jobs import Cancelled, Failed, Finished, ImageToImageJob, JobResult, TextToImageJob
from inference.prepare import PreparedJob


def _vary() -> PreparedJob:
    job = ImageToImageJob(job_id="j1", owner=7, prompt="a cat", width=64, height=64, loras=(("ink", 0.5),))
    return PreparedJob(job, init_image=Image.new("RGB", (64, 64), (200, 10, 10)))


def test_a_batch_round_trips_with_its_input_images() -> None:
    fields = encode_batch([_vary(), PreparedJob(TextToImageJob(job_id="j2", owner=8, prompt="a dog"))], 2**20)
    back = decode_batch(fields)
    assert [p.job for p in back] == [_vary().job, TextToImageJob(job_id="j2", owner=8, prompt="a dog")]
    assert back[0].init_image.getpixel((3, 3)) == (200, 10, 10)
    assert back[1].init_image is None


def test_results_round_trip_finished_failed_and_cancelled() -> None:
    image = Image.new("RGB", (64, 64), (1, 2, 3))
    result = JobResult("j1", (image,), (42,), 1.5, "note", (False,), (), (("control", image),), fast_path="int8")
    outcome, worker = decode_result(encode_result(Finished("j1", result), "w1", 2**20))
    assert worker == "w1"
    assert isinstance(outcome, Finished)
    assert outcome.result.seeds == (42,) and outcome.result.note == "note" and outcome.result.nsfw == (False,)
    assert outcome.result.fast_path == "int8"  # the worker's quantisation reaches the PNG the bot writes
    assert outcome.result.images[0].getpixel((0, 0)) == (1, 2, 3)
    assert outcome.result.extras[0][0] == "control"
    assert decode_result(encode_result(Failed("j2", "too big"), "w1", 2**20))[0] == Failed("j2", "too big")
    assert decode_result(encode_result(Cancelled("j3"), "w1", 2**20))[0] == Cancelled("j3")


def test_a_request_over_the_size_cap_is_refused_with_a_clear_message() -> None:
    with pytest.raises(TooLarge, match="too large to send"):
        encode_batch([_vary()], 100)


def test_a_result_over_the_size_cap_becomes_a_failure_saying_so() -> None:
    image = Image.effect_noise((64, 64), 64).convert("RGB")
    outcome, _ = decode_result(encode_result(Finished("j1", JobResult("j1", (image,), (1,), 1.0)), "w", 1000))
    assert isinstance(outcome, Failed) and "too large" in outcome.message


def _fields(meta: object, **extra: bytes) -> dict:
    return {b"v": b"1", b"meta": json.dumps(meta).encode(), **{k.encode(): v for k, v in extra.items()}}


@pytest.mark.parametrize("fields", [
    {b"v": b"1", b"meta": b"not json"},
    {b"v": b"2", b"meta": b"{}"},
    {b"meta": b"{}"},
    _fields([1, 2]),
    _fields({"jobs": []}),
    _fields({"jobs": [{"job_id": "j", "owner": 1, "params": {"kind": "rm -rf"}}]}),
    _fields({"jobs": [{"job_id": "j", "owner": "me", "params": {"kind": "imagine"}}]}),
    _fields({"jobs": [{"job_id": "j", "owner": 1, "params": {"kind": "imagine", "width": "wide"}}]}),
    _fields({"jobs": [{"job_id": "j", "owner": 1, "params": {"kind": "imagine", "loras": 3}}]}),
    _fields({"jobs": [{"job_id": "", "owner": 1, "params": {"kind": "imagine"}}]}),
    _fields({"jobs": [{"job_id": "j", "owner": 1, "params": {"kind": "vary"}}]}, **{"img:0:init_image": b"\x80pickle"}),
])
def test_a_malformed_job_entry_is_refused(fields: dict) -> None:
    with pytest.raises(WireError):
        decode_batch(fields)


@pytest.mark.parametrize("meta", [
    {"job_id": "j", "status": "exploded"},
    {"job_id": "j", "status": "failed"},
    {"job_id": "j", "status": "finished", "images": 1, "seconds": 1.0},
    {"job_id": "j", "status": "finished", "images": 0, "seconds": "slow"},
    {"job_id": "j", "status": "finished", "images": 0, "seconds": 1.0, "seeds": ["x"]},
    {"job_id": "j", "status": "finished", "images": 0, "seconds": 1.0, "fast_path": ["int8"]},
    {"job_id": "j", "status": "finished", "images": 0, "seconds": 1.0, "fast_path": "x" * 201},
])
def test_a_malformed_result_entry_is_refused(meta: dict) -> None:
    with pytest.raises(WireError):
        decode_result(_fields(meta))


def test_progress_events_round_trip_and_a_bad_one_is_skipped() -> None:
    from inference.cluster.progress import progress_event, progress_fields
    from inference.jobs import Progress, Started

    def wire(fields: dict) -> dict:
        return {k.encode(): v.encode() if isinstance(v, str) else v for k, v in fields.items()}

    assert progress_event(wire(progress_fields(Started("j")))) == Started("j")
    back = progress_event(wire(progress_fields(Progress("j", 2, 4, Image.new("RGB", (8, 8), (5, 6, 7))))))
    assert isinstance(back, Progress) and (back.step, back.total_steps) == (2, 4)
    assert back.preview.getpixel((1, 1)) == (5, 6, 7)
    assert progress_event({b"job_id": b"j", b"event": b"progress", b"step": b"two"}) is None
    assert progress_fields(Failed("j", "x")) is None


@pytest.mark.parametrize("size", [(65537, 1), (8000, 5001)])  # a side past 65536; past 40 Mpx (the bot's uploads)
def test_an_input_image_larger_than_any_easel_takes_is_refused(size: tuple[int, int]) -> None:
    fields = _fields({"jobs": [{"job_id": "j", "owner": 1, "params": {"kind": "vary"}}]},
                     **{"img:0:init_image": _header_only_png(*size)})
    with pytest.raises(WireError, match=f"{size[0]}x{size[1]} is too large"):
        decode_batch(fields)


@pytest.mark.parametrize(("meta", "reason"), [("[" * 200000, "not JSON"),
                                             (json.dumps({"pad": "x" * (2**20 + 1)}), "too long")])
def test_deeply_nested_or_oversized_meta_is_a_wire_error(meta: str, reason: str) -> None:
    for decode in (decode_batch, decode_result):
        with pytest.raises(WireError, match=reason):
            decode({"v": "1", "meta": meta})


# --------------------------------------------------------------------------- pixel bounds and job ranges


def _png(width: int, height: int) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


def _header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header claims a size but holds no pixels: decoding it would fail as unreadable."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def _result_fields(*pngs: bytes) -> dict:
    meta = {"job_id": "j", "status": "finished", "images": len(pngs), "seconds": 1.0}
    return _fields(meta, **{f"png:{i}": png for i, png in enumerate(pngs)})


def test_a_result_side_as_large_as_a_4x_upscale_of_2048_px_passes() -> None:
    outcome, _ = decode_result(_result_fields(_png(8192, 1)))
    assert outcome.result.images[0].size == (8192, 1)


def test_an_image_side_is_checked_from_its_header_before_any_pixel_is_decoded() -> None:
    with pytest.raises(WireError, match="8193x8 is too large"):
        decode_result(_result_fields(_header_only_png(8193, 8)))
    with pytest.raises(WireError, match="unreadable"):  # the same header within bounds is decoded, and fails
        decode_result(_result_fields(_header_only_png(64, 8)))


def test_an_image_without_the_png_signature_is_refused() -> None:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="BMP")
    with pytest.raises(WireError, match="not a PNG"):
        decode_result(_result_fields(buf.getvalue()))


def test_the_total_pixels_of_one_entry_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from inference.cluster import wire

    monkeypatch.setattr(wire, "MAX_ENTRY_PIXELS", 2 * 64 * 64)
    assert len(decode_result(_result_fields(_png(64, 64), _png(64, 64)))[0].result.images) == 2
    with pytest.raises(WireError, match="pixels in all"):
        decode_result(_result_fields(_png(64, 64), _png(64, 64), _png(64, 64)))
    fields = _fields({"jobs": [{"job_id": "j", "owner": 1, "params": {"kind": "vary"}}]},
                     **{"img:0:init_image": _png(64, 64), "img:0:mask_image": _png(64, 64),
                        "img:0:control_image": _png(64, 64)})
    with pytest.raises(WireError, match="pixels in all"):
        decode_batch(fields)


def test_a_preview_is_read_only_for_a_wanted_job_and_only_when_small_and_a_png() -> None:
    from inference.cluster.progress import progress_event

    def entry(preview: bytes) -> dict:
        return {b"job_id": b"j", b"event": b"progress", b"step": b"1", b"total": b"2", b"preview": preview}

    assert progress_event(entry(_png(1024, 8))).preview.size == (1024, 8)
    assert progress_event(entry(_png(1025, 8))) is None
    assert progress_event(entry(_header_only_png(100000, 100000))) is None
    assert progress_event(entry(b"GIF89a")) is None
    assert progress_event(entry(_png(8, 8)), wanted=lambda jid: jid != "j") is None
    assert progress_event(entry(_png(8, 8)), wanted=lambda jid: jid == "j") is not None


def _job_fields(**params: object) -> dict:
    return _fields({"jobs": [{"job_id": "j", "owner": 1, "params": {"kind": "imagine", **params}}]})


@pytest.mark.parametrize("meta", [
    '{"jobs": [{"job_id": "j", "owner": 1, "params": {"kind": "imagine", "guidance": NaN}}]}',
    '{"jobs": [{"job_id": "j", "owner": 1, "params": {"kind": "imagine", "guidance": Infinity}}]}',
    '{"jobs": [{"job_id": "j", "owner": 1, "params": {"kind": "imagine", "eta": -Infinity}}]}',
])
def test_nan_or_infinity_in_a_job_entry_is_a_wire_error(meta: str) -> None:
    with pytest.raises(WireError, match="not a number easel writes"):
        decode_batch({"v": "1", "meta": meta})


@pytest.mark.parametrize(("params", "reason"), [
    ({"width": 4104}, "width"), ({"width": 0}, "width"), ({"height": 4}, "height"), ({"height": 100}, "height"),
    ({"steps": 0}, "steps"), ({"steps": 501}, "steps"), ({"count": 0}, "count"), ({"count": 65}, "count"),
    ({"kind": "morph", "frames": 65}, "frames"), ({"kind": "morph", "frames": 0}, "frames"),
    ({"kind": "upscale", "steps": 10**9}, "steps"), ({"kind": "describe", "count": 10**6}, "count"),
    ({"guidance": "HUGE"}, "guidance"), ({"kind": "vary", "strength": "-HUGE"}, "strength"),
    ({"loras": [["ink", "HUGE"]]}, "loras"),
])
def test_a_job_out_of_the_range_a_gpu_can_serve_is_a_wire_error(params: dict, reason: str) -> None:
    fields = _job_fields(**params)  # "HUGE" becomes 1e999: JSON a float parses as infinity from
    fields[b"meta"] = fields[b"meta"].replace(b'"HUGE"', b"1e999").replace(b'"-HUGE"', b"-1e999")
    with pytest.raises(WireError, match=reason):
        decode_batch(fields)


def test_a_job_at_the_edges_of_the_ranges_is_accepted() -> None:
    job = decode_batch(_job_fields(width=4096, height=8, steps=500, count=64))[0].job
    assert (job.width, job.height, job.steps, job.count) == (4096, 8, 500, 64)
    assert decode_batch(_job_fields(kind="morph", frames=64, steps=1, count=1))[0].job.frames == 64

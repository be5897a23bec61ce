"""The PNG writer: result images stored by a child process, or a thread when the process is gone."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from inference.imaging import encode_png
from inference.imaging.pngmeta import read_parameters
from storage import OutputStore
from storage import png_writer as writer_module
from storage.png_writer import PngWriter
from storage.png_writer_child import pack, read_frame, serve, store_job, store_jobs

TEXT = "a lighthouse at dusk\nSteps: 4, Sampler: Euler, Seed: 7, Size: 16x16"


def picture(colour: tuple[int, int, int], mode: str = "RGB") -> Image.Image:
    return Image.new("RGB", (16, 16), colour).convert(mode)


def expected(image: Image.Image, text: str | None, tmp_path: Path) -> tuple[str, bytes]:
    """What storing ``image`` on this very thread gives: its sha256 and bytes."""
    stored = OutputStore(tmp_path / "reference").write(encode_png(image, text), ".png")
    return stored.sha256, stored.path.read_bytes()


@pytest.fixture
async def writer(outputs: OutputStore) -> AsyncIterator[PngWriter]:
    png_writer = PngWriter(outputs)
    yield png_writer
    await png_writer.close()


@pytest.mark.parametrize("use_process", [True, False], ids=["process", "thread"])
async def test_images_are_stored_as_the_encoder_on_this_thread_would(
        outputs: OutputStore, tmp_path: Path, use_process: bool) -> None:
    png_writer = PngWriter(outputs, use_process=use_process)
    try:
        red, blue = picture((200, 0, 0)), picture((0, 0, 200))
        stored = await png_writer.write([("job-1", [(red, TEXT), (blue, None)]), ("job-2", [(blue, "ünïcode")])])
        assert (png_writer.pid is not None) is use_process and png_writer.pid != os.getpid()
    finally:
        await png_writer.close()
    assert len(stored) == 2 and stored[0] is not None and stored[1] is not None
    (first, second), (third,) = stored[0], stored[1]
    for file, image, text in ((first, red, TEXT), (second, blue, None), (third, blue, "ünïcode")):
        sha256, data = expected(image, text, tmp_path)
        assert (file.sha256, file.size, file.path) == (sha256, len(data), outputs.path_for(sha256))
        assert file.path.read_bytes() == data
        assert read_parameters(data) == text


async def test_one_process_serves_many_requests_and_close_ends_it(writer: PngWriter) -> None:
    await writer.write([("a", [(picture((1, 2, 3)), TEXT)])])
    pid = writer.pid
    assert pid is not None
    await asyncio.gather(*(writer.write([(f"j{i}", [(picture((i, i, i)), TEXT)])]) for i in range(5)))
    assert writer.pid == pid and writer.starts == 1
    process = writer._proc
    await writer.close()
    assert writer.pid is None and process is not None and process.returncode == 0
    await writer.close()  # twice is harmless


async def test_batches_arriving_together_start_one_process(writer: PngWriter) -> None:
    stored = await asyncio.gather(*(writer.write([(f"j{i}", [(picture((i, 9, 9)), TEXT)])]) for i in range(4)))
    assert all(files is not None for [files] in stored)
    assert writer.starts == 1 and writer.pid is not None


async def test_closing_answers_what_was_sent_first(writer: PngWriter) -> None:
    await writer.write([("warm-up", [(picture((9, 9, 9)), None)])])
    pending = asyncio.ensure_future(writer.write([(f"j{i}", [(picture((i, 0, 0)), TEXT)]) for i in range(8)]))
    await asyncio.sleep(0)  # the request is on its way
    await writer.close()
    stored = await pending
    assert all(files is not None and files[0].path.is_file() for files in stored)


async def test_a_job_that_cannot_be_stored_fails_alone(
        writer: PngWriter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    real_spec = writer_module.image_spec

    def spec(image: Image.Image, text: str | None) -> writer_module.ImageSpec:
        mode, size, pixels, _ = real_spec(image, text)
        return (mode, size, pixels[:10] if text == "broken" else pixels, text)  # too few pixels

    monkeypatch.setattr(writer_module, "image_spec", spec)
    caplog.set_level(logging.ERROR, logger=writer_module.__name__)
    stored = await writer.write([("good-1", [(picture((1, 1, 1)), TEXT)]),
                                 ("bad", [(picture((2, 2, 2)), TEXT), (picture((3, 3, 3)), "broken")]),
                                 ("good-2", [(picture((4, 4, 4)), TEXT)])])
    assert stored[0] is not None and stored[2] is not None and stored[1] is None
    assert "could not save the images of job bad" in caplog.text and "ValueError" in caplog.text
    assert writer.starts == 1 and writer.pid is not None  # the process goes on


async def test_a_process_killed_between_batches_is_started_again(writer: PngWriter) -> None:
    await writer.write([("a", [(picture((1, 2, 3)), TEXT)])])
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await asyncio.sleep(0.2)
    stored = await writer.write([("b", [(picture((3, 2, 1)), TEXT)])])
    assert stored[0] is not None and stored[0][0].path.is_file()
    assert writer.starts in (1, 2)  # 2 unless the death was noticed only while sending (thread)
    stored = await writer.write([("c", [(picture((5, 5, 5)), TEXT)])])
    assert stored[0] is not None and writer.starts == 2 and writer.pid not in (None, first)


async def test_a_batch_whose_process_dies_is_stored_on_a_thread(
        writer: PngWriter, caplog: pytest.LogCaptureFixture) -> None:
    await writer.write([("a", [(picture((1, 2, 3)), None)])])
    pid = writer.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # it takes the request but never answers
    try:
        pending = asyncio.ensure_future(writer.write([("lost?", [(picture((7, 7, 7)), TEXT)])]))
        await asyncio.sleep(0.2)
        assert not pending.done()
    finally:
        os.kill(pid, signal.SIGKILL)
    stored = await asyncio.wait_for(pending, 10)
    assert stored[0] is not None and read_parameters(stored[0][0].path.read_bytes()) == TEXT
    assert "PNG writer process unavailable (it exited with code -9)" in caplog.text


async def test_a_garbled_reply_retires_the_process_and_the_batch_goes_to_a_thread(
        writer: PngWriter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    garbler = ("import sys, time; sys.stdin.buffer.read(4); "
               "sys.stdout.buffer.write(b'\\x00\\x00\\x00\\x03abc'); sys.stdout.flush(); time.sleep(60)")
    monkeypatch.setattr(writer_module, "launch_code", lambda root: garbler)
    stored = await asyncio.wait_for(writer.write([("j", [(picture((1, 1, 1)), TEXT)])]), 10)
    assert stored[0] is not None and stored[0][0].path.is_file()
    assert "unreadable reply" in caplog.text
    assert writer._proc is not None and await asyncio.wait_for(writer._proc.wait(), 10) == -signal.SIGKILL


async def test_when_the_process_cannot_start_a_thread_stores_everything(
        writer: PngWriter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    attempts = 0

    async def cannot_start(*args: object, **kwargs: object) -> None:
        nonlocal attempts
        attempts += 1
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(writer_module.asyncio, "create_subprocess_exec", cannot_start)
    for i in range(writer_module.MAX_STARTS + 3):
        stored = await writer.write([(f"j{i}", [(picture((i, i, 0)), TEXT)])])
        assert stored[0] is not None and stored[0][0].path.is_file()
    assert attempts == writer_module.MAX_STARTS and writer.use_process is False
    assert "could not start it: [Errno 24] Too many open files" in caplog.text
    assert "using a thread from now on" in caplog.text


async def test_a_process_that_will_not_stop_is_killed(
        writer: PngWriter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(writer_module, "launch_code", lambda root: "import time; time.sleep(60)")
    monkeypatch.setattr(writer_module, "CLOSE_TIMEOUT_S", 0.3)
    await writer._running()
    process = writer._proc
    await writer.close()
    assert process is not None and process.returncode == -signal.SIGKILL
    assert "did not stop; killing it" in caplog.text


@pytest.mark.parametrize(("mode", "stored_mode"), [("RGB", "RGB"), ("RGBA", "RGBA"), ("L", "L"), ("LA", "LA"),
                                                   ("P", "RGB"), ("CMYK", "RGB"), ("I;16", "RGB"), ("1", "RGB")])
async def test_every_image_mode_is_stored(writer: PngWriter, mode: str, stored_mode: str) -> None:
    image = picture((10, 120, 240), mode)
    [files] = await writer.write([("j", [(image, TEXT)])])
    assert files is not None
    with Image.open(files[0].path) as saved:
        assert saved.mode == stored_mode and saved.size == image.size
        assert saved.convert("RGB").tobytes() == image.convert(stored_mode).convert("RGB").tobytes()


async def test_nothing_to_write_starts_nothing(writer: PngWriter) -> None:
    assert await writer.write([]) == []
    assert writer.starts == 0 and writer.pid is None


def test_the_child_answers_each_request_in_order(tmp_path: Path) -> None:
    image = picture((5, 6, 7))
    spec = (image.mode, image.size, image.tobytes(), TEXT)
    bad = (image.mode, image.size, b"short", TEXT)
    requests = io.BytesIO(pack((1, str(tmp_path), [("a", [spec])])) + pack((2, str(tmp_path), [("b", [bad]), ("c", [])])))
    replies = io.BytesIO()
    assert serve(requests, replies) == 2
    replies.seek(0)
    first, second = read_frame(replies), read_frame(replies)
    assert read_frame(replies) is None
    assert first[0] == 1 and first[1][0][0] == "ok"
    assert second[0] == 2 and second[1][0][0] == "error" and "ValueError" in second[1][0][1]
    assert second[1][1] == ("ok", [])
    [(path, sha256, size)] = first[1][0][1]
    assert Path(path).read_bytes() == encode_png(image, TEXT) and size == Path(path).stat().st_size


def test_input_ending_inside_a_frame_is_an_error() -> None:
    frame = pack((1, "/nowhere", []))
    for cut in (2, len(frame) - 1):
        with pytest.raises(EOFError):
            read_frame(io.BytesIO(frame[:cut]))


def test_an_unwritable_folder_fails_the_job_with_its_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    image = picture((1, 1, 1))
    kind, reason = store_job(OutputStore(blocker / "outputs"), [(image.mode, image.size, image.tobytes(), None)])
    assert kind == "error" and "NotADirectoryError" in reason


async def test_start_runs_the_process_before_the_first_result(writer: PngWriter) -> None:
    await writer.start()
    pid = writer.pid
    assert pid is not None and writer.starts == 1
    await writer.write([("j", [(picture((1, 1, 1)), TEXT)])])
    assert writer.pid == pid and writer.starts == 1


async def test_a_start_that_fails_is_logged_and_the_first_batch_tries_again(
        writer: PngWriter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    real_exec = writer_module.asyncio.create_subprocess_exec
    calls = 0

    async def flaky(*args: object, **kwargs: object) -> asyncio.subprocess.Process:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(11, "Resource temporarily unavailable")
        return await real_exec(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(writer_module.asyncio, "create_subprocess_exec", flaky)
    await writer.start()
    assert writer.pid is None and "a later batch tries again" in caplog.text
    [files] = await writer.write([("j", [(picture((1, 1, 1)), TEXT)])])
    assert files is not None and writer.pid is not None and writer.starts == 2


async def test_the_thread_writer_never_starts_a_process(outputs: OutputStore) -> None:
    png_writer = PngWriter(outputs, use_process=False)
    await png_writer.start()
    [files] = await png_writer.write([("j", [(picture((1, 1, 1)), TEXT)])])
    await png_writer.close()
    assert files is not None and png_writer.starts == 0 and png_writer.pid is None


def test_a_batch_is_made_durable_with_one_sync_after_all_its_jobs(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = OutputStore(tmp_path / "outputs")
    order: list[str] = []
    real_write = store.write
    monkeypatch.setattr(store, "write", lambda data, suffix, durable=True: (order.append(f"write durable={durable}"),
                                                                            real_write(data, suffix, durable=durable))[1])
    monkeypatch.setattr(store, "sync", lambda: order.append("sync"))
    image = picture((1, 2, 3))
    spec = (image.mode, image.size, image.tobytes(), TEXT)
    outcomes = store_jobs(store, [[spec], [spec, spec]])
    assert [kind for kind, _ in outcomes] == ["ok", "ok"]
    assert order == ["write durable=False"] * 3 + ["sync"]


def test_a_failed_sync_fails_every_job_of_the_batch_and_keeps_each_jobs_own_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = OutputStore(tmp_path / "outputs")

    def broken_sync() -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store, "sync", broken_sync)
    image = picture((1, 2, 3))
    good = (image.mode, image.size, image.tobytes(), TEXT)
    bad = ("RGB", (4, 4), b"short", TEXT)  # too few pixels: this job fails on its own
    outcomes = store_jobs(store, [[good], [bad]])
    assert outcomes[0][0] == "error" and "Input/output error" in outcomes[0][1]
    assert outcomes[1][0] == "error" and "Input/output error" not in outcomes[1][1]


async def test_the_thread_fallback_syncs_its_batch_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = OutputStore(tmp_path / "outputs")
    syncs: list[int] = []
    monkeypatch.setattr(store, "sync", lambda: syncs.append(1))
    writer = PngWriter(store, use_process=False)
    stored = await writer.write([("a", [(picture((9, 9, 9)), TEXT)]), ("b", [(picture((8, 8, 8)), TEXT)])])
    assert all(files for files in stored) and syncs == [1]

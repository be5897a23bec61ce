"""The PNG writer process: encodes result images and stores them in the outputs folder.

Started by :class:`storage.png_writer.PngWriter` as ``python -c`` running :func:`main`, with
pipes on stdin (requests) and stdout (replies). It imports Pillow and the outputs store, never
torch, so it starts in well under a second and stays small.

Why a process: encoding a PNG and writing it (open, write, close, rename; one sync per batch)
is Python between many short C calls, and each of them lets go of the interpreter lock and
takes it back. On a thread of the bot, every take-back makes the GPU thread wait
(bench/README.md, "what the GPU thread loses"). Here it has its own interpreter.

Frames both ways: a 4-byte big-endian length, then a pickle. Request:
``(request_id, folder, jobs)`` with ``jobs`` a list of ``(label, images)`` and each image
``(mode, (width, height), pixels, parameters_text)``. Reply: ``(request_id, outcomes)``, one per
job: ``("ok", [(path, sha256, size), ...])`` or ``("error", traceback_text)``. Requests are
served in order; end of input ends the process after the last reply.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import traceback
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

from inference.imaging.pngmeta import encode_png
from storage.files import OutputStore

HEADER = struct.Struct(">I")

ImageSpec = tuple[str, tuple[int, int], bytes, "str | None"]
Outcome = tuple[str, Any]


def pack(message: Any) -> bytes:
    """One frame: length + pickle."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def _read_exactly(stream: BinaryIO, size: int) -> bytes | None:
    data = stream.read(size)
    if not data:
        return None
    if len(data) < size:
        raise EOFError(f"input ended inside a frame ({len(data)} of {size} bytes)")
    return data


def read_frame(stream: BinaryIO) -> Any:
    """The next message, or None at a clean end of input."""
    header = _read_exactly(stream, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    body = _read_exactly(stream, size)
    if body is None:
        raise EOFError("input ended after a frame header")
    return pickle.loads(body)


def store_job(store: OutputStore, images: list[ImageSpec]) -> Outcome:
    """Encode and store one job's images, not yet durable (:func:`store_jobs` syncs); an error
    fails this job only (disk full, a bad image)."""
    try:
        stored = []
        for mode, size, pixels, text in images:
            image = Image.frombuffer(mode, size, pixels, "raw", mode, 0, 1)
            saved = store.write(encode_png(image, text), ".png", durable=False)
            stored.append((str(saved.path), saved.sha256, saved.size))
        return ("ok", stored)
    except Exception:  # noqa: BLE001 - reported to the bot, which fails the job and logs it
        return ("error", traceback.format_exc())


def store_jobs(store: OutputStore, jobs: list[list[ImageSpec]]) -> list[Outcome]:
    """Store a batch of jobs' images and make them durable together: one sync of the outputs
    folder instead of two fsyncs per image (storage/files.py). Nothing is reported stored before
    that sync; if it fails, so does every job of the batch."""
    outcomes = [store_job(store, images) for images in jobs]
    if any(kind == "ok" for kind, _ in outcomes):
        try:
            store.sync()
        except OSError:
            failure = traceback.format_exc()
            return [("error", failure) if kind == "ok" else (kind, value) for kind, value in outcomes]
    return outcomes


def serve(requests: BinaryIO, replies: BinaryIO) -> int:
    """Answer requests until the input ends; returns how many were served."""
    stores: dict[str, OutputStore] = {}  # one per folder: it remembers the folders it made
    served = 0
    while (request := read_frame(requests)) is not None:
        request_id, folder, jobs = request
        store = stores.setdefault(folder, OutputStore(folder))
        outcomes = store_jobs(store, [images for _label, images in jobs])
        replies.write(pack((request_id, outcomes)))
        replies.flush()
        served += 1
    return served


def main() -> None:
    # Ctrl+C in a terminal reaches the whole process group, and a service manager may send SIGTERM
    # to every process of the service; the bot shuts down gracefully and still needs this process
    # to store its last results, so only the end of input stops it (the bot's exit, even a crash,
    # closes that pipe).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    # Replies get a private copy of stdout; anything a library prints goes to stderr instead.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    try:
        serve(requests, replies)
    except (BrokenPipeError, EOFError):  # the bot went away: nothing left to answer
        pass
    finally:
        replies.close()


def launch_code(root: Path) -> str:
    """The ``python -c`` program that runs :func:`main` with the project importable."""
    return f"import sys; sys.path.insert(0, {str(root)!r}); from storage.png_writer_child import main; main()"

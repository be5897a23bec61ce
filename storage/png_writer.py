"""Result images to PNG files, in a process of their own.

:class:`PngWriter` hands each batch of finished jobs' images to a small child process
(:mod:`storage.png_writer_child`) that encodes them as PNGs with their parameters and stores them
in the outputs folder (content-addressed, atomic: :class:`storage.files.OutputStore`), a batch made
durable with one sync of the folder's filesystem before the reply (:func:`store_jobs`).
The event loop only copies the pixels into one message and reads one reply per batch: no thread
of the bot runs the encoder or the file calls, so they never hold the interpreter lock the GPU
thread needs (on the tiny bench model that was ~10 of its ~13 waits per job).

Nothing is lost if the process is unavailable: a batch whose process died (or could not start) is
stored on a worker thread of the bot instead, with the very same code, and a later batch starts a
new process (up to :data:`MAX_STARTS` times; then the thread for good). ``use_process=False`` (and
platforms without ``fork``/pipes for asyncio subprocesses) always use the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import pickle
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from inference.imaging.pngmeta import in_mode_among
from storage.files import OutputStore, StoredFile
from storage.png_writer_child import HEADER, ImageSpec, Outcome, launch_code, pack, store_jobs

log = logging.getLogger(__name__)

MAX_STARTS = 5  # processes started over the bot's life before it settles for the thread
PIPE_BYTES = 1 << 20  # Linux pipe buffer for requests: a 512 px batch in a few writes, not dozens
CLOSE_TIMEOUT_S = 30.0
_ROOT = Path(__file__).resolve().parents[1]
_RAW_MODES = frozenset({"L", "LA", "RGB", "RGBA"})

JobImages = Sequence[tuple[Image.Image, "str | None"]]  # each image with its parameters text


class WriterGone(Exception):
    """The writer process ended (or could not start) before answering."""


def image_spec(image: Image.Image, text: str | None) -> ImageSpec:
    """What the child needs to rebuild ``image``: mode, size, raw pixels, parameters text.

    Modes whose raw pixels do not say it all (a palette) or that PNG would not keep as they are
    go as RGB(A), as :func:`encode_png` would store them; results from the pipelines are RGB."""
    image = in_mode_among(image, _RAW_MODES)
    return (image.mode, image.size, image.tobytes(), text)


class PngWriter:
    """Stores finished jobs' images as PNG files, in a child process when it can (module doc)."""

    def __init__(self, store: OutputStore, *, use_process: bool = True) -> None:
        self.store = store
        self.use_process = use_process and sys.platform != "win32"
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[list[Outcome]]] = {}
        self._ids = itertools.count(1)
        self._send = asyncio.Lock()
        self._starting = asyncio.Lock()
        self.starts = 0

    @property
    def pid(self) -> int | None:
        """The writer process's id while one runs (for tests and logs)."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def start(self) -> None:
        """Start the process now rather than at the first result (it takes a fraction of a
        second); if it cannot start, the first batch tries again or goes to the thread."""
        if self.use_process:
            try:
                await self._running()
            except WriterGone as err:
                log.warning("PNG writer process unavailable (%s); a later batch tries again", err)

    async def write(self, jobs: Sequence[tuple[str, JobImages]]) -> list[list[StoredFile] | None]:
        """Encode and store each job's images; per job, its files or None when they could not be
        stored (the error is logged under the job's label, usually its id)."""
        outcomes: dict[int, Outcome] = {}
        specs: list[tuple[str, list[ImageSpec]]] = []
        for index, (label, images) in enumerate(jobs):
            try:
                specs.append((label, [image_spec(image, text) for image, text in images]))
            except Exception:  # noqa: BLE001 - an image that cannot be read fails its job only
                outcomes[index] = ("error", traceback.format_exc())
        sent = [index for index in range(len(jobs)) if index not in outcomes]
        outcomes.update(zip(sent, await self._store(specs), strict=True))
        return [self._stored(label, outcomes[index]) for index, (label, _) in enumerate(jobs)]

    async def _store(self, specs: list[tuple[str, list[ImageSpec]]]) -> list[Outcome]:
        if not specs:
            return []
        if self.use_process:
            try:
                return await self._ask(specs)
            except WriterGone as err:
                log.warning("PNG writer process unavailable (%s); storing these images on a thread", err)
        return await asyncio.to_thread(store_jobs, self.store, [images for _, images in specs])

    @staticmethod
    def _stored(label: str, outcome: Outcome) -> list[StoredFile] | None:
        kind, value = outcome
        if kind == "ok":
            return [StoredFile(Path(path), sha256, size) for path, sha256, size in value]
        log.error("could not save the images of job %s:\n%s", label, str(value).rstrip())
        return None

    async def _ask(self, specs: list[tuple[str, list[ImageSpec]]]) -> list[Outcome]:
        proc = await self._running()
        request_id = next(self._ids)
        reply: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = reply
        try:
            async with self._send:
                if proc.stdin is None or proc.returncode is not None:
                    raise WriterGone("it has exited")
                proc.stdin.write(pack((request_id, str(self.store.folder), specs)))
                await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as err:  # a broken pipe, or a transport already closed
            self._waiting.pop(request_id, None)
            raise WriterGone(f"could not send to it: {err}") from err
        except BaseException:
            self._waiting.pop(request_id, None)
            raise
        return await reply

    async def _running(self) -> asyncio.subprocess.Process:
        async with self._starting:  # batches arriving together share one new process
            return await self._start_if_needed()

    async def _start_if_needed(self) -> asyncio.subprocess.Process:
        if self._proc is not None and self._proc.returncode is None and self._reader is not None \
                and not self._reader.done():
            return self._proc
        if self.starts >= MAX_STARTS:
            self.use_process = False
            raise WriterGone(f"it stopped {self.starts} times; using a thread from now on")
        self.starts += 1
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", launch_code(_ROOT),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        except (OSError, NotImplementedError) as err:
            raise WriterGone(f"could not start it: {err}") from err
        _widen_pipe(proc)
        self._proc = proc
        self._reader = asyncio.get_running_loop().create_task(self._read_replies(proc), name="easel-png-writer")
        if self.starts > 1:
            log.info("PNG writer process started again (pid %d)", proc.pid)
        return proc

    async def _read_replies(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        reason = "it closed its output"
        try:
            while True:
                header = await proc.stdout.readexactly(HEADER.size)
                (size,) = HEADER.unpack(header)
                request_id, outcomes = pickle.loads(await proc.stdout.readexactly(size))
                reply = self._waiting.pop(request_id, None)
                if reply is not None and not reply.done():
                    reply.set_result(outcomes)
        except asyncio.IncompleteReadError:
            code = await proc.wait()
            reason = f"it exited with code {code}"
        except Exception as err:  # noqa: BLE001 - a garbled reply: this process is no use any more
            reason = f"unreadable reply: {err!r}"
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        finally:
            waiting, self._waiting = self._waiting, {}
            for reply in waiting.values():
                if not reply.done():
                    reply.set_exception(WriterGone(reason))

    async def close(self) -> None:
        """Let the process answer what it was sent, then end it (killed after CLOSE_TIMEOUT_S)."""
        proc, reader = self._proc, self._reader
        self._proc = None
        if proc is None:
            return
        if proc.stdin is not None:  # its end of input: it answers what it has, then exits
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("PNG writer process did not stop; killing it")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if reader is not None:
            await reader


def _widen_pipe(proc: asyncio.subprocess.Process) -> None:
    """Best effort (Linux): a bigger request pipe means fewer writes, each a wake-up of the loop."""
    try:
        import fcntl

        pipe = proc.stdin.transport.get_extra_info("pipe") if proc.stdin is not None else None
        if pipe is not None and hasattr(fcntl, "F_SETPIPE_SZ"):
            fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, OSError, AttributeError):
        pass

"""The outputs folder: content-addressed files written atomically.

A file is named by the SHA-256 of its bytes, ``<folder>/<sha[:2]>/<sha><suffix>``: saving the
same bytes twice stores them once, and a name always matches its content. It is written to a temp
file in the same folder, flushed and fsynced, then ``os.replace``d onto its name, so the folder
never holds a half-written file under a final name; a crash leaves at most a temp file, which
:meth:`OutputStore.sweep_temp` removes at start-up. Blocking IO runs in ``asyncio.to_thread``.
:func:`content_files` lists the stored files, for the sweep of files no row names
(storage/retention.py).

A batch of results is written with ``durable=False`` and made durable with one
:meth:`OutputStore.sync` (``syncfs`` of the folder's filesystem) before anyone is told about the
files: two fsyncs per image made the kernel's journal work take the CPU from the GPU thread
(bench/README.md). Until that sync a crash can leave a final name over incomplete data, so a
file found under the name its bytes would get is reused only if its content checks out; otherwise
it is written again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import hashlib
import logging
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TEMP_PREFIX = ".easel-"
TEMP_SUFFIX = ".tmp"
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")
_SUBFOLDER = re.compile(r"^[0-9a-f]{2}$")
_CONTENT_NAME = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{1,10}$")
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _read_umask() -> int:
    """The process umask, read once at import: from /proc where there is one, else by setting it
    and back (which would race with files other threads create, so not later)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split(":", 1)[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_umask_strips_644 = bool(0o644 & _read_umask())


@dataclass(frozen=True)
class StoredFile:
    path: Path
    sha256: str
    size: int


class OutputStore:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._folders: set[Path] = set()  # sha[:2] folders known to exist (skips a mkdir per save)
        self._unsynced: list[Path] = []  # written with durable=False since the last sync
        self._batch_sync = BATCH_SYNC  # off for good once this folder's filesystem refuses syncfs

    def path_for(self, sha256: str, suffix: str = ".png") -> Path:
        return self.folder / sha256[:2] / f"{sha256}{_check_suffix(suffix)}"

    def address(self, data: bytes, suffix: str = ".png") -> Path:
        """Where :meth:`save_bytes` would store ``data`` (nothing is written; hashing is blocking)."""
        return self.path_for(hashlib.sha256(data).hexdigest(), suffix)

    async def save_bytes(self, data: bytes, suffix: str = ".png") -> StoredFile:
        """Store ``data``; returns where. Saving bytes already stored only refreshes the file's mtime
        (which tells a concurrent forget/prune that the file is wanted again)."""
        suffix = _check_suffix(suffix)
        return await asyncio.to_thread(self._save, bytes(data), suffix)

    def write(self, data: bytes, suffix: str = ".png", *, durable: bool = True) -> StoredFile:
        """:meth:`save_bytes` for code already on a worker thread (blocking: never on the event loop).

        ``durable=False``: no fsync; the caller calls :meth:`sync` once for the whole batch before
        it reports the files (without ``syncfs``, the file is fsynced anyway)."""
        durable = durable or not self._batch_sync
        stored = self._save(data, _check_suffix(suffix), durable=durable)
        if not durable:
            self._unsynced.append(stored.path)
        return stored

    def sync(self) -> None:
        """Make everything written under the folder so far durable: ``syncfs`` of its filesystem,
        which waits for the writes (Linux). Elsewhere every file was fsynced already: nothing to do.
        A filesystem that does not support syncfs gets each file fsynced instead (and from then on
        at once). Raises OSError when the system reports a write error."""
        unsynced, self._unsynced = self._unsynced, []
        if _syncfs is None or not self._batch_sync:
            return
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            code = 0 if _syncfs(fd) == 0 else ctypes.get_errno()
        finally:
            os.close(fd)
        if code in _UNSUPPORTED:
            log.warning("the outputs folder's filesystem does not support syncfs (%s); fsyncing each file",
                        os.strerror(code))
            self._batch_sync = False
            for path in unsynced:
                _fsync_path(path)
            for folder in dict.fromkeys(path.parent for path in unsynced):
                _fsync_folder(folder)
        elif code:
            raise OSError(code, os.strerror(code))

    def _save(self, data: bytes, suffix: str, *, durable: bool = True) -> StoredFile:
        digest = hashlib.sha256(data).hexdigest()
        final = self.path_for(digest, suffix)
        stored = StoredFile(final, digest, len(data))
        if _holds(final, data):
            try:
                os.utime(final)
                return stored
            except FileNotFoundError:  # removed just now (forget, prune): write it again
                pass
        # Plain os calls, as few as durability allows: each one lets go of the GIL and has to take
        # it back from the GPU thread (bench/README.md, "what the GPU thread loses").
        folder = final.parent
        if folder not in self._folders:
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)
        temp = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"
        try:
            fd = os.open(temp, _CREATE, 0o644)
        except FileNotFoundError:  # the folder was deleted behind our back: make it again
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(temp, _CREATE, 0o644)
        try:
            try:
                if _umask_strips_644:
                    os.fchmod(fd, 0o644)  # outputs are meant to be readable whatever the umask
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if durable:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        if durable:
            _fsync_folder(folder)
        return stored

    async def read(self, path: str | Path) -> bytes:
        """The bytes of a stored file; FileNotFoundError when it was removed (forget, prune)."""
        return await asyncio.to_thread(Path(path).read_bytes)

    async def remove(self, paths: Iterable[str | Path]) -> tuple[Path, ...]:
        """Delete files (missing ones are ignored); returns those actually deleted."""
        return await asyncio.to_thread(remove_files, list(paths))

    def sweep_temp(self) -> int:
        """Delete temp files a crash left behind; returns how many. Blocking: call at start-up,
        before any save (in a thread from async code, see :meth:`prepare`)."""
        if not self.folder.is_dir():
            return 0
        pattern = f"{TEMP_PREFIX}*{TEMP_SUFFIX}"
        removed = 0
        for temp in [*self.folder.glob(pattern), *self.folder.glob(f"*/{pattern}")]:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
                removed += 1
        if removed:
            log.info("removed %d unfinished temp file(s) from %s", removed, self.folder)
        return removed

    async def prepare(self) -> int:
        """Create the folder and sweep leftover temp files; returns how many were swept."""
        def run() -> int:
            self.folder.mkdir(parents=True, exist_ok=True)
            return self.sweep_temp()

        return await asyncio.to_thread(run)


def content_files(folder: Path) -> list[tuple[Path, float]]:
    """Every content-addressed file under ``folder`` (``<sha[:2]>/<sha><suffix>``) with its mtime;
    temp files and anything else found there are left out (blocking)."""
    found: list[tuple[Path, float]] = []
    if not folder.is_dir():
        return found
    for sub in folder.iterdir():
        if not _SUBFOLDER.match(sub.name) or not sub.is_dir():
            continue
        for path in sub.iterdir():
            if not _CONTENT_NAME.match(path.name) or not path.name.startswith(sub.name):
                continue
            try:
                found.append((path, path.stat().st_mtime))
            except FileNotFoundError:
                continue
    return found


def total_size(paths: Iterable[str | Path]) -> int:
    """The bytes the existing files among ``paths`` take, each counted once (blocking)."""
    total = 0
    for path in {str(p) for p in paths}:
        try:
            total += os.stat(path).st_size
        except OSError:
            continue
    return total


def remove_files(paths: Iterable[str | Path], *, untouched_since: float | None = None) -> tuple[Path, ...]:
    """Delete files, ignoring missing ones; returns those deleted (blocking).

    ``untouched_since``: keep a file whose mtime is at or after this time. ``save_bytes`` touches a
    file it is asked to store again, so a file that was unreferenced when forget/prune looked but
    has since been reused (same content) is not deleted under its new owner.
    """
    removed: list[Path] = []
    for item in paths:
        path = Path(item)
        try:
            if untouched_since is not None and path.stat().st_mtime >= untouched_since:
                log.info("keeping %s: it was stored again meanwhile", path)
                continue
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:
            log.warning("could not delete %s: %s", path, err)
            continue
        removed.append(path)
    return tuple(removed)


def _check_suffix(suffix: str) -> str:
    suffix = suffix if suffix.startswith(".") else f".{suffix}"
    if not _SUFFIX.match(suffix):
        raise ValueError(f"file suffix must be like '.png', not {suffix!r}")
    return suffix.lower()


def _holds(path: Path, data: bytes) -> bool:
    """Whether ``path`` exists with exactly these bytes (one read; only when the same bytes are
    saved again): a file under its final name may be what a crash left before its batch's sync."""
    try:
        if os.stat(path).st_size != len(data):
            return False
        with open(path, "rb") as existing:
            return existing.read() == data
    except OSError:
        return False


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs`` (Linux, glibc 2.14+), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        call = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int
    return call  # type: ignore[no-any-return]


_syncfs = _load_syncfs()
# POSIX lets sync() return before the data is written (macOS does), so only syncfs makes a batch
# durable; elsewhere every file is fsynced on its own.
BATCH_SYNC = _syncfs is not None


_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)}


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

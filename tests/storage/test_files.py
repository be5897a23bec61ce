"""The outputs folder: content-addressed names, and never a half-written file under a final name."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from storage import OutputStore, StoredFile
from storage import files as files_module

REPO = Path(__file__).resolve().parents[2]
DATA = b"\x89PNG\r\n\x1a\n pretend image bytes"
SHA = hashlib.sha256(DATA).hexdigest()


def everything(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def temp_files(folder: Path) -> list[Path]:
    return [p for p in everything(folder) if p.name.startswith(files_module.TEMP_PREFIX)]


async def test_files_are_named_by_their_content(outputs: OutputStore) -> None:
    stored = await outputs.save_bytes(DATA)
    assert stored == StoredFile(outputs.folder / SHA[:2] / f"{SHA}.png", SHA, len(DATA))
    assert stored.path.read_bytes() == DATA
    assert await outputs.read(stored.path) == DATA
    assert stored.path.stat().st_mode & 0o777 == 0o644
    assert everything(outputs.folder) == [stored.path]


async def test_saving_the_same_bytes_twice_stores_them_once(outputs: OutputStore) -> None:
    first = await outputs.save_bytes(DATA)
    os.utime(first.path, (1_000_000, 1_000_000))
    second = await outputs.save_bytes(DATA)
    assert second == first and everything(outputs.folder) == [first.path]
    assert first.path.stat().st_mtime > 1_000_000  # touched: tells a running forget the file is wanted


async def test_concurrent_saves_of_the_same_bytes(outputs: OutputStore) -> None:
    results = await asyncio.gather(*(outputs.save_bytes(DATA) for _ in range(8)))
    assert len(set(results)) == 1 and everything(outputs.folder) == [results[0].path]


@pytest.mark.parametrize(("suffix", "name"), [(".webp", f"{SHA}.webp"), ("JPG", f"{SHA}.jpg")])
async def test_suffixes(outputs: OutputStore, suffix: str, name: str) -> None:
    assert (await outputs.save_bytes(DATA, suffix=suffix)).path.name == name


@pytest.mark.parametrize("suffix", ["/../../etc", ".", ".p n g", ".toolongsuffix"])
async def test_bad_suffixes_are_refused(outputs: OutputStore, suffix: str) -> None:
    with pytest.raises(ValueError, match="suffix"):
        await outputs.save_bytes(DATA, suffix=suffix)
    assert not outputs.folder.exists()


@pytest.mark.parametrize("fail_in", ["replace", "fsync", "write"])
async def test_a_failure_mid_write_leaves_neither_final_nor_temp_file(outputs: OutputStore,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        fail_in: str) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    if fail_in == "write":
        real_write = os.write
        calls: list[int] = []

        def half_then_full_disk(fd: int, data: bytes) -> int:
            calls.append(fd)
            if len(calls) == 1:
                return real_write(fd, bytes(data[: len(data) // 2]))
            boom()
            return 0

        monkeypatch.setattr(files_module.os, "write", half_then_full_disk)
    else:
        monkeypatch.setattr(files_module.os, fail_in, boom)
    with pytest.raises(OSError, match="No space left"):
        await outputs.save_bytes(DATA)
    assert everything(outputs.folder) == []
    monkeypatch.undo()
    assert (await outputs.save_bytes(DATA)).path.read_bytes() == DATA


async def test_a_crash_mid_write_leaves_only_a_temp_file_which_is_swept(outputs: OutputStore) -> None:
    """A child process dies (os._exit) after writing the temp file, before the rename."""
    script = textwrap.dedent(f"""
        import asyncio, os
        from storage import OutputStore, files

        files.os.replace = lambda *a: os._exit(3)
        asyncio.run(OutputStore({str(outputs.folder)!r}).save_bytes({DATA!r}))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 3, result.stderr
    leftovers = temp_files(outputs.folder)
    assert len(leftovers) == 1 and leftovers == everything(outputs.folder)
    assert not outputs.path_for(SHA).exists()

    (outputs.folder / "keep.txt").write_text("not a temp file")
    assert await outputs.prepare() == 1
    assert everything(outputs.folder) == [outputs.folder / "keep.txt"]
    assert outputs.sweep_temp() == 0


def test_sweeping_a_folder_that_does_not_exist_yet(tmp_path: Path) -> None:
    assert OutputStore(tmp_path / "nothing").sweep_temp() == 0


async def test_prepare_creates_the_folder(tmp_path: Path) -> None:
    store = OutputStore(tmp_path / "new" / "outputs")
    assert await store.prepare() == 0 and store.folder.is_dir()


async def test_remove_ignores_missing_files(outputs: OutputStore) -> None:
    a = (await outputs.save_bytes(b"a")).path
    b = (await outputs.save_bytes(b"b")).path
    assert await outputs.remove([a, str(b), outputs.folder / "never.png"]) == (a, b)
    assert everything(outputs.folder) == []


async def test_reading_a_removed_file_raises_file_not_found(outputs: OutputStore) -> None:
    stored = await outputs.save_bytes(DATA)
    await outputs.remove([stored.path])
    with pytest.raises(FileNotFoundError):
        await outputs.read(stored.path)


def test_write_is_the_blocking_twin_of_save_bytes(tmp_path) -> None:
    from storage import OutputStore

    store = OutputStore(tmp_path / "out")
    first = store.write(b"same bytes", ".png")
    again = store.write(b"same bytes", ".png")
    assert first.path == again.path and first.path.read_bytes() == b"same bytes"
    with pytest.raises(ValueError):
        store.write(b"x", "png; rm -rf")


async def test_a_folder_deleted_behind_the_stores_back_is_made_again(outputs: OutputStore) -> None:
    first = await outputs.save_bytes(DATA)
    first.path.unlink()
    first.path.parent.rmdir()  # the store remembers having made it
    again = await outputs.save_bytes(DATA)
    assert again.path == first.path and again.path.read_bytes() == DATA


async def test_outputs_are_readable_whatever_the_umask(outputs: OutputStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_module, "_umask_strips_644", True)
    old = os.umask(0o077)
    try:
        stored = await outputs.save_bytes(b"private by default")
    finally:
        os.umask(old)
    assert stored.path.stat().st_mode & 0o777 == 0o644


def test_a_durable_write_fsyncs_the_file_and_its_folder_and_a_batch_write_leaves_that_to_sync(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = OutputStore(tmp_path)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(files_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    store.write(DATA)
    assert len(synced) == 2  # the file's data, then the folder entry of its new name
    synced.clear()
    other = store.write(b"another image", durable=False)
    assert synced == [] or not files_module.BATCH_SYNC  # (without a batch sync call every file is fsynced)
    store.sync()  # syncfs of the folder's filesystem here; raises if the system reports an error
    assert other.path.read_bytes() == b"another image"


def test_a_file_a_crash_left_incomplete_under_its_final_name_is_written_again(tmp_path: Path) -> None:
    """Written with ``durable=False``, a file's name can reach the disk before its data (a crash
    before the batch's sync). Saving the same bytes again must not trust such a file."""
    store = OutputStore(tmp_path)
    final = store.path_for(SHA, ".png")
    final.parent.mkdir(parents=True)
    final.write_bytes(b"\0" * len(DATA))  # the right size, zeros where the data never arrived
    assert store.write(DATA, durable=False).path == final
    assert final.read_bytes() == DATA
    final.write_bytes(DATA[:5])  # cut short
    store.write(DATA)
    assert final.read_bytes() == DATA
    os.utime(final, (1, 1))
    store.write(DATA)  # intact: kept, and its mtime refreshed (forget/prune see it is wanted)
    assert final.read_bytes() == DATA and final.stat().st_mtime > 1


def test_sync_reports_a_write_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if files_module._syncfs is None:
        pytest.skip("no syncfs here")
    monkeypatch.setattr(files_module, "_syncfs", lambda fd: -1)
    monkeypatch.setattr(files_module.ctypes, "get_errno", lambda: 5)
    with pytest.raises(OSError, match="Input/output error"):
        OutputStore(tmp_path).sync()


def test_without_syncfs_every_file_is_fsynced_and_sync_does_nothing(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files_module, "_syncfs", None)
    monkeypatch.setattr(files_module, "BATCH_SYNC", False)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(files_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    store = OutputStore(tmp_path)
    store.write(DATA, durable=False)
    assert len(synced) == 2  # durable on its own: no batch sync to rely on
    store.sync()
    assert len(synced) == 2


def test_a_filesystem_without_syncfs_gets_each_file_of_the_batch_fsynced_and_then_fsyncs_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    if files_module._syncfs is None:
        pytest.skip("no syncfs here")
    monkeypatch.setattr(files_module, "_syncfs", lambda fd: -1)
    monkeypatch.setattr(files_module.ctypes, "get_errno", lambda: files_module.errno.ENOSYS)
    store = OutputStore(tmp_path)
    written = [store.write(bytes([n]) * 10, durable=False) for n in range(3)]
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(files_module.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                              real_fsync(fd)))
    with caplog.at_level("WARNING", logger="storage.files"):
        store.sync()  # no error: the files are made durable one by one instead
    assert "does not support syncfs" in caplog.text
    assert {str(f.path) for f in written} <= set(synced)  # every file, and their folders
    assert {str(f.path.parent) for f in written} <= set(synced)
    synced.clear()
    store.write(b"later", durable=False)  # from now on fsynced at once
    assert len(synced) == 2

"""The pictures posted with a result fit the message: at most 10 attachments in all, together within
the upload limit left beside the result, the rest left out and said; shown as the gate decided."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from cogs.utils.extras import extra_files, file_stems
from cogs.utils.gate import Treatment


def png(side: int, seed: int = 0) -> bytes:
    noise = Image.effect_noise((side, side), 64 + seed).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    return buffer.getvalue()


def bot_with(files: dict[Path, bytes]) -> SimpleNamespace:
    async def read(path: Path) -> bytes:
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return files[path]

    return SimpleNamespace(studio=SimpleNamespace(outputs=SimpleNamespace(read=read)))


def test_file_names_say_what_each_picture_is() -> None:
    assert file_stems(["tile"]) == ["tile-preview"]
    assert file_stems(["control", "tile", "tile"]) == ["control", "tile-preview-1", "tile-preview-2"]


async def test_extras_within_the_limit_go_as_they_are_spoilered_when_the_job_is() -> None:
    data = png(64)
    bot = bot_with({Path("/o/t.png"): data, Path("/o/c.png"): data})
    shown = await extra_files(bot, [("tile", Path("/o/t.png")), ("control", Path("/o/c.png"))], Treatment.SPOILER,
                              10 * 1024 * 1024)
    assert [f.filename for f in shown.files] == ["SPOILER_tile-preview.png", "SPOILER_control.png"]
    assert shown.note == ""


async def test_a_withheld_result_never_gets_its_extras_sent() -> None:
    bot = bot_with({Path("/o/t.png"): png(64)})
    with pytest.raises(ValueError, match="withheld"):
        await extra_files(bot, [("tile", Path("/o/t.png"))], Treatment.WITHHELD, 10 * 1024 * 1024)


async def test_extras_share_what_is_left_of_the_upload_limit_and_the_rest_is_left_out() -> None:
    data = png(256)
    bot = bot_with({Path(f"/o/{n}.png"): data for n in range(3)})
    budget = len(data) + 200  # the first as it is; no copy of the second fits in 200 bytes
    shown = await extra_files(bot, [("tile", Path(f"/o/{n}.png")) for n in range(2)], Treatment.PLAIN, budget)
    assert [f.filename for f in shown.files] == ["tile-preview-1.png"]
    assert "Not attached" in shown.note and "the tile preview" in shown.note


async def test_no_more_than_ten_attachments_in_a_message() -> None:
    data = png(16)
    bot = bot_with({Path(f"/o/{n}.png"): data for n in range(12)})
    shown = await extra_files(bot, [("control", Path(f"/o/{n}.png")) for n in range(12)], Treatment.PLAIN,
                              10 * 1024 * 1024, attached=1)
    assert len(shown.files) == 9
    assert "the control map" in shown.note

"""/describe served by the real bot.py process (a tiny random BLIP folder) against the fake
Discord: the answer's suggestions, then *Imagine 2* after a restart posting an image whose prompt
is suggestion 2 (read from the job log, where the describe job's result is stored)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from inference.imaging import read_parameters
from inference.imaging.pngmeta import parse_parameters
from tests.e2e.client import Member
from tests.e2e.conftest import Easel, Settings
from tests.e2e.easel_helpers import buttons, job_id_of, png, result_attachment, result_of
from tests.e2e.fake_discord import FakeDiscord

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def easel_settings(tiny_blip_dir: Path) -> Settings:
    return {"describe": {"source": tiny_blip_dir, "device": "cpu", "suggestions": 4}}


def stored_suggestions(easel: Easel, job_id: str) -> list[str]:
    with sqlite3.connect(f"file:{easel.work / 'easel.db'}?mode=ro", uri=True) as db:
        (params,) = db.execute("SELECT params FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return json.loads(params)["result"]


async def test_describe_then_imagine_2_after_a_restart(easel_bot: Easel) -> None:
    server: FakeDiscord = easel_bot.server
    alice, bob = Member(server, "alice"), Member(server, "bob")
    upload = server.attachment("cat.png", png((64, 48)))
    record = await alice.slash("describe", image=upload)
    answer = await server.wait_for(
        lambda: record.original if "Imagine 1" in buttons(record.original or {}) else None, 120, "the suggestions")
    assert not result_attachment(answer) and not answer.get("attachments")
    job = job_id_of(answer)
    texts = stored_suggestions(easel_bot, job)
    assert 1 <= len(texts) <= 4 and len(set(texts)) == len(texts)
    assert [label for label in buttons(answer) if label.startswith("Imagine")] == [
        f"Imagine {i + 1}" for i in range(len(texts))]
    assert len(texts) >= 2  # BLIP's conditional prefixes make them distinct
    await easel_bot.process.stop()
    await easel_bot.start()
    made = await result_of(server, await bob.click(answer, buttons(answer)["Imagine 2"]))
    params = parse_parameters(read_parameters(result_attachment(made)["data"]))
    assert params["prompt"] == texts[1] and params["easel kind"] == "imagine"

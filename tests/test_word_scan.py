"""The word-flag backfill at start runs once per word list (storage/migrations/0010_word_flag_scan.sql):
the same ``discord.nsfw_words`` at the next start scans nothing; a changed list scans again."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from config import Config
from inference.jobs import TextToImageJob
from inference.prompt_words import word_list_digest
from storage import Database
from storage.images import NewImage
from studio import Studio


def with_words(config: Config, tmp_path: Path, *words: str) -> Config:
    return dataclasses.replace(config, base_dir=tmp_path,
                               discord=dataclasses.replace(config.discord, nsfw_words=words))


async def record(config: Config, job_id: str, prompt: str) -> None:
    """A result as recorded before images carried the word flag (none on it)."""
    db = await Database.open(config.path(config.storage.database))
    try:
        job = TextToImageJob(job_id=job_id, owner=1, prompt=prompt, width=64, height=64, steps=2, model="tiny")
        await db.jobs.add(job_id=job_id, kind="imagine", user_id=1, guild_id=None, channel_id=6, params=job.to_params())
        await db.record_results([NewImage(job_id, 0, 9, f"/o/{job_id}.png", 64, 64, "aa" * 32, 10)], [job_id])
    finally:
        await db.close()


async def flags_after_start(config: Config, job_id: str) -> list[bool]:
    studio = Studio(config)
    try:
        await studio.start(warm_up=False)
        return [r.nsfw_word for r in await studio.database.images.for_job(job_id)]
    finally:
        await studio.close()


async def test_the_same_word_list_is_not_scanned_again_and_a_new_one_is(tiny_config: Config, tmp_path: Path) -> None:
    config = with_words(tiny_config, tmp_path, "nsfwword")
    await record(config, "old", "a nsfwword harbour")
    assert await flags_after_start(config, "old") == [True]

    await record(config, "unscanned", "a nsfwword quay")  # unflagged, as no accepted job could be
    assert await flags_after_start(config, "unscanned") == [False]  # the same list: not read again
    assert await flags_after_start(with_words(tiny_config, tmp_path, "NSFWWORD"), "unscanned") == [False]

    assert await flags_after_start(with_words(tiny_config, tmp_path, "nsfwword", "gore"), "unscanned") == [True]


def test_the_digest_ignores_order_case_and_repeats() -> None:
    assert word_list_digest(["b", "A", "a"]) == word_list_digest(["a", "B"])
    assert word_list_digest(["a"]) != word_list_digest(["a", "b"]) != word_list_digest([])

"""The word-flag backfill (``Images.backfill_word_flags``): images recorded before they carried the
word flag, or before a word was added to ``discord.nsfw_words``, get it from their job's prompt;
a flag is never cleared."""

from __future__ import annotations

from functools import partial

import pytest

from inference.prompt_words import has_nsfw_word
from storage import Database
from storage import images as images_module
from storage.images import NewImage
from tests.storage.helpers import add_job

HAS_WORD = partial(has_nsfw_word, words=("nsfwword",))


async def image(db: Database, job_id: str, idx: int = 0, *, word: bool = False) -> None:
    await db.images.add_many([NewImage(job_id, idx, idx, f"/o/{job_id}-{idx}.png", 8, 8, "aa" * 32, 1,
                                       nsfw_word=word)])


async def word_flags(db: Database, job_id: str) -> list[bool]:
    return [r.nsfw_word for r in await db.images.for_job(job_id)]


async def test_images_whose_prompt_has_a_word_are_flagged_page_by_page(db: Database) -> None:
    await add_job(db, "old", prompt="a NSFWword cat")  # a grid recorded before the flag existed
    await image(db, "old", 0)
    await image(db, "old", 1)
    await add_job(db, "clean", prompt="a nsfwwordy classic cat")  # the word only inside a longer one
    await image(db, "clean")
    await add_job(db, "anime", kind="anime", prompt=None)
    await image(db, "anime")
    await add_job(db, "queued", prompt="nsfwword")  # no images yet: nothing to flag
    await add_job(db, "late", prompt="nsfwword, at the end of the log")
    await image(db, "late")

    assert await db.images.backfill_word_flags(HAS_WORD, batch=1) == 3
    assert await word_flags(db, "old") == [True, True]
    assert await word_flags(db, "late") == [True]
    assert await word_flags(db, "clean") == [False] and await word_flags(db, "anime") == [False]
    assert await db.images.backfill_word_flags(HAS_WORD) == 0  # once flagged, never read again


async def test_the_backfill_never_clears_a_flag(db: Database) -> None:
    """The word list may have lost a word since the image was shown spoilered: it stays flagged."""
    await add_job(db, "before", prompt="a forbidden cat")
    await image(db, "before", word=True)
    assert await db.images.backfill_word_flags(HAS_WORD) == 0
    assert await word_flags(db, "before") == [True]
    assert await db.images.unflagged_prompts() == []


async def test_many_jobs_are_flagged_over_several_statements(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images_module, "WORD_FLAG_BATCH", 2)
    ids = [f"j{i}" for i in range(5)]
    for job_id in ids:
        await add_job(db, job_id, prompt="nsfwword")
        await image(db, job_id)
    assert await db.images.flag_words(ids) == 5
    assert [await word_flags(db, j) for j in ids] == [[True]] * 5
    assert await db.images.flag_words([]) == 0

"""History: newest first, paginated, scoped to a member or a guild, searchable by prompt words."""

from __future__ import annotations

import sqlite3

import pytest

from storage import Database
from tests.storage.helpers import add_job

HOSTILE = ['"', '""', "*", "AND", "OR NOT", "-cat", "cat -", "NEAR(cat dog)", "prompt:cat", "^cat", "{prompt}: cat",
           'a" OR "b', "cat*", "(", ")", "'; DROP TABLE jobs; --", "%", "_", "\\", "100%", "💥 cat", "\x00", "+",
           "NOT cat", "cat AND", ":", ".", "\u200b", "a" * 5000, " ".join(["w"] * 500)]


async def test_history_needs_a_scope(db: Database) -> None:
    with pytest.raises(ValueError, match="user_id or a guild_id"):
        await db.jobs.history()


async def test_members_see_their_own_jobs_and_admins_their_guild(db: Database) -> None:
    await add_job(db, "u1g10", user_id=1, guild_id=10)
    await add_job(db, "u2g10", user_id=2, guild_id=10)
    await add_job(db, "u1g20", user_id=1, guild_id=20)
    await add_job(db, "u3dm", user_id=3, guild_id=None)
    await add_job(db, "u2g20", user_id=2, guild_id=20)

    async def ids(**scope: int) -> list[str]:
        return [r.job_id for r in (await db.jobs.history(**scope)).rows]

    assert await ids(user_id=1) == ["u1g20", "u1g10"]
    assert await ids(user_id=3) == ["u3dm"]
    assert await ids(guild_id=10) == ["u2g10", "u1g10"]
    assert await ids(guild_id=20) == ["u2g20", "u1g20"]
    assert await ids(user_id=1, guild_id=20) == ["u1g20"]
    assert await ids(user_id=4) == []


async def test_pages_are_newest_first_with_a_total(db: Database) -> None:
    for n in range(25):
        await add_job(db, f"j{n:02d}")
    pages = [await db.jobs.history(user_id=1, limit=10, offset=offset) for offset in (0, 10, 20, 30)]
    assert [len(p.rows) for p in pages] == [10, 10, 5, 0]
    assert all(p.total == 25 for p in pages)
    ids = [r.job_id for p in pages for r in p.rows]
    assert ids == [f"j{n:02d}" for n in reversed(range(25))]


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (101, 0), (10, -1)])
async def test_bad_page_bounds_are_refused(db: Database, limit: int, offset: int) -> None:
    with pytest.raises(ValueError):
        await db.jobs.history(user_id=1, limit=limit, offset=offset)


async def test_filter_by_kind(db: Database) -> None:
    await add_job(db, "i1", kind="imagine")
    await add_job(db, "a1", kind="anime", prompt=None)
    await add_job(db, "v1", kind="vary")
    assert [r.job_id for r in (await db.jobs.history(user_id=1, kind="anime")).rows] == ["a1"]
    assert (await db.jobs.history(user_id=1, kind="")).total == 3


async def test_one_job_comes_back_with_its_full_parameters(db: Database) -> None:
    params = {"prompt": "a castle", "negative_prompt": "fog", "steps": 30, "guidance": 7.5, "seed": 123,
              "loras": [["ink", 0.8]], "width": 512, "height": 768}
    await db.jobs.add(job_id="j1", kind="imagine", user_id=1, guild_id=10, channel_id=100, params=params)
    row = (await db.jobs.history(user_id=1)).rows[0]
    assert row.params == params and (await db.jobs.get("j1")).params == params  # type: ignore[union-attr]


async def test_search_finds_prompt_words(search_db: Database) -> None:
    db = search_db
    await add_job(db, "fox", prompt="A red fox in the snow")
    await add_job(db, "whale", prompt="Blue whale at night")
    await add_job(db, "car", prompt="a red car, studio light")
    await add_job(db, "other", prompt="a red balloon", user_id=2)
    await add_job(db, "anime", prompt=None, kind="anime")

    async def found(search: str, **scope: int) -> list[str]:
        page = await db.jobs.history(search=search, **(scope or {"user_id": 1}))
        assert page.total == len(page.rows)
        return [r.job_id for r in page.rows]

    assert await found("red") == ["car", "fox"]
    assert await found("RED fox") == ["fox"]
    assert await found("snow fox") == ["fox"]  # words in any order
    assert await found("fox whale") == []  # every word must match
    assert await found("wha") == ["whale"]  # a word being typed
    assert await found("dog") == []
    assert await found("red", guild_id=10) == ["other", "car", "fox"]
    assert await found("  ") == ["anime", "car", "whale", "fox"]  # blank: no search


async def test_search_treats_underscore_and_percent_as_text(search_db: Database) -> None:
    await add_job(search_db, "under", prompt="cyber_punk city")
    await add_job(search_db, "plain", prompt="cyberXpunk city")
    assert [r.job_id for r in (await search_db.jobs.history(user_id=1, search="cyber_punk")).rows] == ["under"]


async def test_search_with_no_words_matches_nothing(search_db: Database) -> None:
    await add_job(search_db, "j1", prompt="100% cotton * stars")
    for search in ("%", "*", '"', "-- ;"):
        assert (await search_db.jobs.history(user_id=1, search=search)).total == 0


@pytest.mark.parametrize("search", HOSTILE)
async def test_hostile_search_strings_never_raise(search_db: Database, search: str) -> None:
    await add_job(search_db, "j1", prompt="a cat and a dog, NOT a bird")
    page = await search_db.jobs.history(user_id=1, search=search)
    assert page.total == len(page.rows) <= 1
    assert (await search_db.jobs.get("j1")) is not None


async def test_search_index_stays_consistent(db: Database) -> None:
    """The FTS triggers keep the external-content index in step through inserts and deletes."""
    for n in range(10):
        await add_job(db, f"j{n}", user_id=n % 3, prompt=f"prompt number {n}")
    await db.forget(1)
    with sqlite3.connect(db.path) as conn:
        conn.execute("INSERT INTO jobs_fts (jobs_fts) VALUES ('integrity-check')")
    assert (await db.jobs.history(user_id=1, search="prompt")).total == 0
    assert (await db.jobs.history(user_id=2, search="number")).total == 3

"""Per-guild settings and per-member preferences: defaults, updates, validation, persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storage import Database, GuildSettings, UserPrefs


async def test_a_guild_never_configured_gets_defaults(db: Database) -> None:
    settings = await db.settings.guild(10)
    assert settings == GuildSettings(10, (), "block", None, None)
    assert settings.channel_enabled(12345)


async def test_guild_updates_are_partial_and_persist(db_path: Path) -> None:
    db = await Database.open(db_path)
    first = await db.settings.update_guild(10, enabled_channels=[300, 100, 300], nsfw_policy="spoiler")
    assert first.enabled_channels == (100, 300) and first.nsfw_policy == "spoiler"
    second = await db.settings.update_guild(10, per_user_cap=2, default_model=" turbo ")
    assert second == GuildSettings(10, (100, 300), "spoiler", 2, "turbo")
    assert await db.settings.guild(20) == GuildSettings(20)
    await db.close()

    db = await Database.open(db_path)
    try:
        settings = await db.settings.guild(10)
        assert settings == second
        assert settings.channel_enabled(100) and not settings.channel_enabled(200)
        cleared = await db.settings.update_guild(10, enabled_channels=[], per_user_cap=None, default_model=None)
        assert cleared == GuildSettings(10, (), "spoiler", None, None) and cleared.channel_enabled(200)
        assert await db.settings.update_guild(10) == cleared
    finally:
        await db.close()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "blue"}, "unknown guild setting 'colour'"),
        ({"nsfw_policy": "sometimes"}, "nsfw_policy must be one of"),
        ({"per_user_cap": 0}, "per_user_cap"),
        ({"per_user_cap": True}, "per_user_cap"),
        ({"per_user_cap": "3"}, "per_user_cap"),
        ({"enabled_channels": "123"}, "list of channel ids"),
        ({"enabled_channels": 123}, "list of channel ids"),
        ({"enabled_channels": [1, "2"]}, "channel ids"),
        ({"enabled_channels": [-5]}, "channel ids"),
        ({"default_model": ""}, "default_model must be a non-empty name"),
        ({"default_model": "x" * 201}, "default_model"),
        ({"nsfw_policy": "off", "typo": 1}, "unknown guild setting"),
    ],
)
async def test_bad_guild_settings_are_refused_and_nothing_is_written(db: Database, changes: dict[str, Any],
                                                                     message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await db.settings.update_guild(10, **changes)
    assert await db.settings.guild(10) == GuildSettings(10)


async def test_a_member_never_configured_gets_defaults(db: Database) -> None:
    assert await db.settings.user(1) == UserPrefs(1, None, None, False)


async def test_member_preferences_update_and_persist(db_path: Path) -> None:
    db = await Database.open(db_path)
    await db.settings.update_user(1, default_aspect="16:9")
    prefs = await db.settings.update_user(1, dm_results=True, default_model="sdxl")
    assert prefs == UserPrefs(1, "sdxl", "16:9", True)
    await db.close()
    db = await Database.open(db_path)
    try:
        assert await db.settings.user(1) == prefs
        assert await db.settings.update_user(1, default_aspect=None) == UserPrefs(1, "sdxl", None, True)
        assert await db.settings.user(2) == UserPrefs(2)
    finally:
        await db.close()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"theme": "dark"}, "unknown preference 'theme'"),
        ({"dm_results": 1}, "dm_results must be True or False"),
        ({"dm_results": "yes"}, "dm_results"),
        ({"default_aspect": "very wide"}, "default_aspect must look like"),
        ({"default_aspect": "0:1"}, "default_aspect"),
        ({"default_aspect": "16:9:1"}, "default_aspect"),
        ({"default_aspect": 1.5}, "default_aspect"),
        ({"default_model": "   "}, "default_model"),
    ],
)
async def test_bad_preferences_are_refused(db: Database, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await db.settings.update_user(1, **changes)
    assert await db.settings.user(1) == UserPrefs(1)

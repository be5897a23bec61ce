"""Per-channel policies: a channel's own settings over its server's, partial updates, reset, validation."""

from __future__ import annotations

from typing import Any

import pytest

from storage import Database, UserPrefs
from storage.channels import ChannelSettings, parse_commands


async def test_a_channel_without_settings_follows_its_server(db: Database) -> None:
    await db.settings.update_guild(10, nsfw_policy="spoiler", per_user_cap=3, default_model="turbo")
    here = await db.channels.effective(10, (100,))
    assert (here.nsfw_policy, here.per_user_cap, here.default_model) == ("spoiler", 3, "turbo")
    assert here.allowed_commands is None and here.allows("morph") and not here.from_channel("nsfw_policy")


async def test_a_channels_own_settings_win_and_the_rest_are_the_servers(db: Database) -> None:
    await db.settings.update_guild(10, nsfw_policy="block", per_user_cap=3, default_model="turbo")
    await db.channels.update(10, 100, nsfw_policy="spoiler", allowed_commands=["vary", "imagine"])
    here = await db.channels.effective(10, (100,))
    assert here.nsfw_policy == "spoiler" and here.from_channel("nsfw_policy")
    assert (here.per_user_cap, here.default_model) == (3, "turbo")  # the server's
    assert here.allowed_commands == ("imagine", "vary") and not here.allows("paint")
    elsewhere = await db.channels.effective(10, (200,))
    assert elsewhere.nsfw_policy == "block" and elsewhere.allows("paint")


async def test_a_thread_follows_its_parent_channel_unless_it_has_its_own(db: Database) -> None:
    await db.channels.update(10, 100, per_user_cap=1)
    assert (await db.channels.effective(10, (555, 100))).per_user_cap == 1
    await db.channels.update(10, 555, per_user_cap=2)
    assert (await db.channels.effective(10, (555, 100))).per_user_cap == 2


async def test_a_channel_of_another_server_is_not_taken(db: Database) -> None:
    await db.channels.update(10, 100, nsfw_policy="off")
    assert (await db.channels.effective(20, (100,))).nsfw_policy == "block"


async def test_updates_are_partial_and_none_goes_back_to_the_server(db: Database) -> None:
    first = await db.channels.update(10, 100, nsfw_policy="off", per_user_cap=2)
    assert first == ChannelSettings(100, 10, "off", 2, None, None)
    second = await db.channels.update(10, 100, per_user_cap=None, default_model=" sdxl ")
    assert second == ChannelSettings(100, 10, "off", None, "sdxl", None)
    assert await db.channels.channel(100) == second


async def test_reset_and_an_emptied_channel_leave_no_row(db: Database) -> None:
    await db.channels.update(10, 100, nsfw_policy="off")
    assert await db.channels.reset(100) is True
    assert await db.channels.channel(100) is None and await db.channels.reset(100) is False
    await db.channels.update(10, 200, per_user_cap=2)
    await db.channels.update(10, 200, per_user_cap=None)
    assert await db.channels.channel(200) is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, "unknown channel setting 'colour'"),
        ({"nsfw_policy": "allow"}, "nsfw_policy must be one of"),
        ({"per_user_cap": 0}, "per_user_cap"),
        ({"per_user_cap": True}, "per_user_cap"),
        ({"allowed_commands": ["imagine", "dance"]}, "allowed_commands must name"),
        ({"allowed_commands": []}, "allowed_commands must name"),
        ({"allowed_commands": "imagine"}, "list of command names"),
        ({"default_model": " "}, "default_model"),
    ],
)
async def test_bad_channel_settings_are_refused(db: Database, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await db.channels.update(10, 100, **changes)
    assert await db.channels.channel(100) is None


def test_command_lists_are_read_as_members_write_them() -> None:
    assert parse_commands(" /Vary, imagine ,") == ("imagine", "vary")
    assert parse_commands("all") is None and parse_commands(" , ") is None
    with pytest.raises(ValueError, match="unknown command dance"):
        parse_commands("imagine, dance")


async def test_new_preferences_are_kept_and_cleared(db: Database) -> None:
    prefs = await db.settings.update_user(1, negative="blurry", sampler="euler", dm_when_done_s=60,
                                          default_aspect="wide")
    assert prefs == UserPrefs(1, None, "wide", False, "blurry", "euler", 60)
    with pytest.raises(ValueError, match="dm_when_done_s"):
        await db.settings.update_user(1, dm_when_done_s=0)
    assert await db.settings.clear_user(1) is True
    assert await db.settings.user(1) == UserPrefs(1) and await db.settings.clear_user(1) is False


async def test_kept_preferences_follow_every_change_and_forget(db: Database) -> None:
    """Preferences are kept in memory after a read (storage/settings.py): each change is still seen."""
    await db.settings.update_user(1, sampler="euler")
    assert (await db.settings.user(1)).sampler == "euler"  # now kept
    await db.settings.update_user(1, sampler="ddim")
    assert (await db.settings.user(1)).sampler == "ddim"
    await db.settings.clear_user(1)
    assert await db.settings.user(1) == UserPrefs(1)
    await db.settings.update_user(1, negative="blurry")
    assert (await db.settings.user(1)).negative == "blurry"
    await db.forget(1)
    assert await db.settings.user(1) == UserPrefs(1)


async def test_a_threads_own_cap_keeps_its_parent_channels_other_settings(db: Database) -> None:
    await db.settings.update_guild(10, nsfw_policy="off")
    await db.channels.update(10, 100, nsfw_policy="block", allowed_commands=("imagine",))
    await db.channels.update(10, 200, per_user_cap=2)  # a thread of channel 100
    here = await db.channels.effective(10, [200, 100])
    assert (here.nsfw_policy, here.per_user_cap, here.allowed_commands) == ("block", 2, ("imagine",))
    assert not here.allows("paint")

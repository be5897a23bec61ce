"""Per-guild settings and per-member preferences, with defaults when nothing was ever set."""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from storage.connection import Connection, changed, executemany, fetchone

NSFW_POLICIES: tuple[str, ...] = ("block", "spoiler", "off")
_ASPECT = re.compile(r"^(?:[1-9]\d{0,2}:[1-9]\d{0,2}|[a-z]{1,20})$")  # "16:9" or a named shape ("wide")
MAX_NAME = 200
CACHED_MEMBERS = 10_000  # members whose preferences are kept in memory (see Settings)

_GUILD_ROW = (
    "SELECT g.*, (SELECT group_concat(c.channel_id) FROM guild_channels c WHERE c.guild_id = g.guild_id)"
    " AS channels FROM guild_settings g WHERE g.guild_id = ?"
)


@dataclass(frozen=True)
class GuildSettings:
    guild_id: int
    enabled_channels: tuple[int, ...] = ()  # empty: every channel
    # NSFW outside age-restricted channels: "block" (refuse), "spoiler" (post behind a spoiler), "off"
    nsfw_policy: str = "block"
    per_user_cap: int | None = None  # None: the configured queue.per_user
    default_model: str | None = None

    def channel_enabled(self, channel_id: int) -> bool:
        return not self.enabled_channels or channel_id in self.enabled_channels


@dataclass(frozen=True)
class UserPrefs:
    user_id: int
    default_model: str | None = None
    default_aspect: str | None = None  # "W:H" ("16:9") or a named shape ("wide")
    dm_results: bool = False  # results go to the member by DM (/prefs private)
    negative: str | None = None  # the negative prompt when a command's is left out
    sampler: str | None = None
    dm_when_done_s: int | None = None  # a DM when a job took at least this long (None: never)


class Settings:
    def __init__(self, conn: Connection, *, clock: Callable[[], float] = time.time) -> None:
        self._conn = conn
        self._clock = clock
        # Members' preferences are read for every request and every posted result (/prefs): the
        # most recently used are kept here, written through by every change made in this process
        # (update_user, clear_user, Database.forget). ``_writes`` counts the changes, so that a
        # read that overlapped one does not put back what it read before.
        self._users: OrderedDict[int, UserPrefs] = OrderedDict()
        self._writes = 0

    # ------------------------------------------------------------------ guilds

    async def guild(self, guild_id: int) -> GuildSettings:
        row = await self._conn.fetchone(_GUILD_ROW, (guild_id,))
        return _guild_from_row(guild_id, row)

    async def update_guild(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change some settings of a guild; returns all of them. Unknown keys or bad values: ValueError."""
        values = {key: _check_guild(key, value) for key, value in changes.items()}
        channels = values.pop("enabled_channels", None)
        async with self._conn.transaction() as raw:
            await raw.execute(
                "INSERT INTO guild_settings (guild_id, updated_at) VALUES (?, ?)"
                " ON CONFLICT (guild_id) DO UPDATE SET updated_at = excluded.updated_at",
                (guild_id, self._clock()),
            )
            if values:
                assignments = ", ".join(f"{key} = :{key}" for key in values)  # keys checked against a fixed set
                await changed(raw, f"UPDATE guild_settings SET {assignments} WHERE guild_id = :guild_id",
                              {**values, "guild_id": guild_id})
            if channels is not None:
                await raw.execute("DELETE FROM guild_channels WHERE guild_id = ?", (guild_id,))
                await executemany(raw, "INSERT INTO guild_channels (guild_id, channel_id) VALUES (?, ?)",
                                  [(guild_id, c) for c in channels])
            row = await fetchone(raw, _GUILD_ROW, (guild_id,))
        return _guild_from_row(guild_id, row)

    # ------------------------------------------------------------------ members

    async def user(self, user_id: int) -> UserPrefs:
        cached = self._users.get(user_id)
        if cached is not None:
            self._users.move_to_end(user_id)
            return cached
        writes = self._writes
        row = await self._conn.fetchone("SELECT * FROM user_prefs WHERE user_id = ?", (user_id,))
        prefs = _prefs_from_row(user_id, row)
        if writes == self._writes:
            self._keep(prefs)
        return prefs

    def _keep(self, prefs: UserPrefs) -> None:
        self._users[prefs.user_id] = prefs
        self._users.move_to_end(prefs.user_id)
        while len(self._users) > CACHED_MEMBERS:
            self._users.popitem(last=False)

    def forget_cached(self, user_id: int) -> None:
        """The member's row was changed elsewhere (/forget): read it again next time."""
        self._writes += 1
        self._users.pop(user_id, None)

    async def update_user(self, user_id: int, **changes: Any) -> UserPrefs:
        """Change some preferences of a member; returns all of them. Unknown keys or bad values: ValueError."""
        values = {key: _check_user(key, value) for key, value in changes.items()}
        self.forget_cached(user_id)
        async with self._conn.transaction() as raw:
            await raw.execute(
                "INSERT INTO user_prefs (user_id, updated_at) VALUES (?, ?)"
                " ON CONFLICT (user_id) DO UPDATE SET updated_at = excluded.updated_at",
                (user_id, self._clock()),
            )
            if values:
                assignments = ", ".join(f"{key} = :{key}" for key in values)
                await changed(raw, f"UPDATE user_prefs SET {assignments} WHERE user_id = :user_id",
                              {**values, "user_id": user_id})
            row = await fetchone(raw, "SELECT * FROM user_prefs WHERE user_id = ?", (user_id,))
        self.forget_cached(user_id)
        return _prefs_from_row(user_id, row)

    async def clear_user(self, user_id: int) -> bool:
        """Back to no preferences at all; False when the member had none."""
        self.forget_cached(user_id)
        try:
            return await self._conn.execute("DELETE FROM user_prefs WHERE user_id = ?", (user_id,)) > 0
        finally:
            self.forget_cached(user_id)


# ---------------------------------------------------------------------- validation


def _check_guild(key: str, value: Any) -> Any:
    if key == "enabled_channels":
        return _check_channels(value)
    if key == "nsfw_policy":
        if value not in NSFW_POLICIES:
            raise ValueError(f"nsfw_policy must be one of {', '.join(NSFW_POLICIES)}, not {value!r}")
        return value
    if key == "per_user_cap":
        if value is not None and (not _is_int(value) or value < 1):
            raise ValueError(f"per_user_cap must be a whole number of at least 1 (or None), not {value!r}")
        return value
    if key == "default_model":
        return _check_name(key, value)
    raise ValueError(f"unknown guild setting {key!r} (enabled_channels, nsfw_policy, per_user_cap, default_model)")


def _check_user(key: str, value: Any) -> Any:
    if key == "default_model":
        return _check_name(key, value)
    if key == "default_aspect":
        if value is not None and (not isinstance(value, str) or not _ASPECT.match(value)):
            raise ValueError(f"default_aspect must look like '16:9' or 'wide' (or None), not {value!r}")
        return value
    if key == "dm_results":
        if not isinstance(value, bool):
            raise ValueError(f"dm_results must be True or False, not {value!r}")
        return int(value)
    if key in ("negative", "sampler"):
        return _check_name(key, value)
    if key == "dm_when_done_s":
        if value is not None and (not _is_int(value) or value < 1):
            raise ValueError(f"dm_when_done_s must be a whole number of at least 1 (or None), not {value!r}")
        return value
    raise ValueError(f"unknown preference {key!r} (default_model, default_aspect, dm_results, negative, sampler,"
                     " dm_when_done_s)")


def _check_channels(value: Any) -> tuple[int, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError("enabled_channels must be a list of channel ids")
    channels = list(value)
    if not all(_is_int(c) and c > 0 for c in channels):
        raise ValueError(f"enabled_channels must hold channel ids (positive whole numbers), not {channels!r}")
    return tuple(sorted(set(channels)))


def _check_name(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise ValueError(f"{key} must be a non-empty name of at most {MAX_NAME} characters (or None)")
    return value.strip()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _guild_from_row(guild_id: int, row: Any) -> GuildSettings:
    if row is None:
        return GuildSettings(guild_id)
    channels = tuple(sorted(int(c) for c in row["channels"].split(","))) if row["channels"] else ()
    return GuildSettings(guild_id, channels, row["nsfw_policy"], row["per_user_cap"], row["default_model"])


def _prefs_from_row(user_id: int, row: Any) -> UserPrefs:
    if row is None:
        return UserPrefs(user_id)
    return UserPrefs(user_id, row["default_model"], row["default_aspect"], bool(row["dm_results"]),
                     row["negative"], row["sampler"], row["dm_when_done_s"])

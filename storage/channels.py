"""Per-channel policies (/easel settings channel:) and the effective settings of a channel.

A channel row overrides some of its server's settings; each NULL column means "the server's".
:meth:`Channels.effective` is the one answer to "which settings apply here": the channel's own
row (or, in a thread, its parent channel's) over the server's.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from storage.connection import Connection, changed, fetchone
from storage.settings import _GUILD_ROW, NSFW_POLICIES, GuildSettings, _guild_from_row
from storage.settings import _check_name as check_name
from storage.settings import _is_int as is_int

COMMANDS: tuple[str, ...] = ("imagine", "vary", "paint", "anime", "morph", "describe", "upscale")
FIELDS: tuple[str, ...] = ("nsfw_policy", "per_user_cap", "default_model", "allowed_commands")


@dataclass(frozen=True)
class ChannelSettings:
    channel_id: int
    guild_id: int
    nsfw_policy: str | None = None  # None: the server's
    per_user_cap: int | None = None
    default_model: str | None = None
    allowed_commands: tuple[str, ...] | None = None  # None: every command

    @property
    def empty(self) -> bool:
        return all(getattr(self, key) is None for key in FIELDS)


@dataclass(frozen=True)
class EffectiveSettings:
    """The settings in force in one channel: the channel's where it has them, else the server's.
    Offers what GuildSettings offers, so code that read the server's settings reads these."""

    guild: GuildSettings
    channel: ChannelSettings | None = None

    def _pick(self, key: str) -> Any:
        own = getattr(self.channel, key) if self.channel is not None else None
        return own if own is not None else getattr(self.guild, key, None)

    def from_channel(self, key: str) -> bool:
        """Whether ``key`` is the channel's own setting (not the server's)."""
        return self.channel is not None and getattr(self.channel, key) is not None

    @property
    def guild_id(self) -> int:
        return self.guild.guild_id

    @property
    def enabled_channels(self) -> tuple[int, ...]:
        return self.guild.enabled_channels

    def channel_enabled(self, channel_id: int) -> bool:
        return self.guild.channel_enabled(channel_id)

    @property
    def nsfw_policy(self) -> str:
        return str(self._pick("nsfw_policy"))

    @property
    def per_user_cap(self) -> int | None:
        return self._pick("per_user_cap")  # type: ignore[no-any-return]

    @property
    def default_model(self) -> str | None:
        return self._pick("default_model")  # type: ignore[no-any-return]

    @property
    def allowed_commands(self) -> tuple[str, ...] | None:
        return self.channel.allowed_commands if self.channel is not None else None

    def allows(self, command: str) -> bool:
        allowed = self.allowed_commands
        return allowed is None or command in allowed


class Channels:
    def __init__(self, conn: Connection, *, clock: Callable[[], float] = time.time) -> None:
        self._conn = conn
        self._clock = clock

    async def channel(self, channel_id: int) -> ChannelSettings | None:
        row = await self._conn.fetchone("SELECT * FROM channel_settings WHERE channel_id = ?", (channel_id,))
        return _from_row(row)

    async def effective(self, guild_id: int, channel_ids: Sequence[int]) -> EffectiveSettings:
        """The settings in force where ``channel_ids`` point (a thread, then its parent channel):
        setting by setting, the first of them that has its own, else the server's."""
        ids = list(channel_ids)
        marks = ", ".join("?" for _ in ids)
        guild_row, channel_rows = await self._conn.run_in_order([  # one trip to SQLite's thread
            (_GUILD_ROW, (guild_id,), True),
            (f"SELECT * FROM channel_settings WHERE guild_id = ? AND channel_id IN ({marks})", (guild_id, *ids), True),
        ])
        guild = _guild_from_row(guild_id, next(iter(guild_row), None))
        own = {row["channel_id"]: _from_row(row) for row in channel_rows}
        rows = [own[channel_id] for channel_id in ids if own.get(channel_id) is not None]
        if not rows:
            return EffectiveSettings(guild)
        merged = {key: next((getattr(r, key) for r in rows if getattr(r, key) is not None), None) for key in FIELDS}
        return EffectiveSettings(guild, dataclasses.replace(rows[0], **merged))

    async def update(self, guild_id: int, channel_id: int, **changes: Any) -> ChannelSettings:
        """Change some settings of a channel (None: back to the server's); returns all of them.
        Unknown keys or bad values: ValueError. A channel left with nothing of its own has no row."""
        values = {key: _check(key, value) for key, value in changes.items()}
        async with self._conn.transaction() as raw:
            await raw.execute(
                "INSERT INTO channel_settings (channel_id, guild_id, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (channel_id) DO UPDATE SET guild_id = excluded.guild_id,"
                " updated_at = excluded.updated_at",
                (channel_id, guild_id, self._clock()),
            )
            if values:
                assignments = ", ".join(f"{key} = :{key}" for key in values)  # keys checked against FIELDS
                await changed(raw, f"UPDATE channel_settings SET {assignments} WHERE channel_id = :channel_id",
                              {**values, "channel_id": channel_id})
            row = await fetchone(raw, "SELECT * FROM channel_settings WHERE channel_id = ?", (channel_id,))
            settings = _from_row(row)
            assert settings is not None
            if settings.empty:
                await raw.execute("DELETE FROM channel_settings WHERE channel_id = ?", (channel_id,))
        return settings

    async def reset(self, channel_id: int) -> bool:
        """The channel follows its server again; False when it had nothing of its own."""
        return await self._conn.execute("DELETE FROM channel_settings WHERE channel_id = ?", (channel_id,)) > 0


def parse_commands(text: str) -> tuple[str, ...] | None:
    """``imagine, vary`` as command names; ``all`` (or nothing): None. Unknown names: ValueError."""
    names = [n.strip().lstrip("/").lower() for n in text.split(",") if n.strip()]
    if not names or names == ["all"]:
        return None
    unknown = [n for n in names if n not in COMMANDS]
    if unknown:
        raise ValueError(f"unknown command {', '.join(unknown)}: use some of {', '.join(COMMANDS)} (or all)")
    return tuple(c for c in COMMANDS if c in names)


def _check(key: str, value: Any) -> Any:
    if key == "nsfw_policy":
        if value is not None and value not in NSFW_POLICIES:
            raise ValueError(f"nsfw_policy must be one of {', '.join(NSFW_POLICIES)} (or None), not {value!r}")
        return value
    if key == "per_user_cap":
        if value is not None and (not is_int(value) or value < 1):
            raise ValueError(f"per_user_cap must be a whole number of at least 1 (or None), not {value!r}")
        return value
    if key == "default_model":
        return check_name(key, value)
    if key == "allowed_commands":
        return None if value is None else ",".join(_check_commands(value))
    raise ValueError(f"unknown channel setting {key!r} ({', '.join(FIELDS)})")


def _check_commands(value: Any) -> tuple[str, ...]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError("allowed_commands must be a list of command names (or None)")
    names = list(value)
    if not names or any(n not in COMMANDS for n in names):
        raise ValueError(f"allowed_commands must name some of {', '.join(COMMANDS)}, not {names!r}")
    return tuple(c for c in COMMANDS if c in names)


def _from_row(row: Any) -> ChannelSettings | None:
    if row is None:
        return None
    commands = tuple(row["allowed_commands"].split(",")) if row["allowed_commands"] else None
    return ChannelSettings(row["channel_id"], row["guild_id"], row["nsfw_policy"], row["per_user_cap"],
                           row["default_model"], commands)

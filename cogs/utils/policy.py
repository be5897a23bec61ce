"""The one answer to "which settings apply here": a channel's own policy over its server's.

Everything that reads easel's per-server settings (the channel check and the allowed commands,
the NSFW gate, the default model, the per-member cap, /easel status) asks :func:`settings_here`.
A thread follows its own row if it has one, else its parent channel's. Outside servers: None.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot import EaselBot
    from storage.channels import EffectiveSettings


def channel_ids(channel_id: int, channel: Any) -> tuple[int, ...]:
    """The channel, then (in a thread) its parent: where a channel policy may be set."""
    parent = getattr(channel, "parent_id", None)
    return (channel_id, parent) if isinstance(parent, int) and parent != channel_id else (channel_id,)


async def settings_here(bot: EaselBot, guild_id: int | None, channel_id: int | None,
                        channel: Any = None) -> EffectiveSettings | None:
    """The effective settings in ``channel_id`` of ``guild_id`` (None outside servers)."""
    if guild_id is None:
        return None
    ids = channel_ids(channel_id, channel) if channel_id else ()
    return await bot.studio.database.channels.effective(guild_id, ids)

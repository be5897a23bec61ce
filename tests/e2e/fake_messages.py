"""Messages, attachments and reactions on the fake Discord, and the limits Discord enforces on them.

``FakeDiscord`` mixes ``Messages`` in; the REST routes (``fake_rest``) and the members (``client``) both
go through it, so a message stored here is announced to the bot over the gateway the same way either way.
Stored message dicts are Discord message payloads plus ``allowed_mentions`` exactly as sent, and
attachments carry their bytes under ``"data"`` (stripped from what goes over the wire by ``wire``).
Attachment bytes are served by the fake itself at ``{base_url}/attachments/{id}/{filename}``.
"""

from __future__ import annotations

import datetime
import mimetypes
import struct
from collections.abc import Callable
from typing import Any

from tests.e2e.fake_wire import ApiError, Upload, wire

EPHEMERAL = 1 << 6
LOADING = 1 << 7
UPLOAD_LIMIT = 10 * 1024 * 1024


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG header, the way Discord reports image attachments."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return None


def _emoji(text: str) -> dict:
    """``"🔁"`` or a custom ``"name:id"`` as Discord's partial emoji payload."""
    name, _, custom_id = text.partition(":")
    return {"id": custom_id or None, "name": name}


class Messages:
    """Needs the host's ids, channels and message stores (set up in ``FakeDiscord.__init__``) and ``dispatch``."""

    application_id: str
    guild_id: str
    channel_id: str
    channels: dict[str, dict]
    messages: dict[str, list[dict]]
    messages_by_id: dict[str, dict]
    files: dict[str, tuple[bytes, str]]
    reactions: list[dict]
    attachment_size_limit: int
    _reactors: dict[tuple[str, str], list[str]]
    base_url: str
    new_id: Callable[[], str]
    dispatch: Callable[[str, dict], None]

    def host_file(self, name: str, data: bytes, content_type: str | None = None) -> str:
        """Serve ``data`` at a URL on the fake (members' uploads); returns the URL."""
        return self._host(name, data, content_type)["url"]

    def attachment(self, name: str, data: bytes, content_type: str | None = None) -> dict:
        """A hosted attachment payload, as Discord puts it into messages and ``resolved.attachments``."""
        return self._host(name, data, content_type)

    def _host(self, name: str, data: bytes, content_type: str | None, description: str | None = None) -> dict:
        aid = self.new_id()
        ctype = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        self.files[aid] = (bytes(data), ctype)
        url = f"{self.base_url}/attachments/{aid}/{name}"
        att = {"id": aid, "filename": name, "size": len(data), "url": url, "proxy_url": url,
               "content_type": ctype, "data": bytes(data)}
        if description is not None:
            att["description"] = description
        if (size := png_size(data)) is not None:
            att["width"], att["height"] = size
        return att
    def attachments_for(self, payload: dict, files: dict[int, Upload], existing: list[dict]) -> list[dict]:
        """Apply Discord's rules: ``attachments`` lists what to keep by id plus new files by index."""
        listed = payload.get("attachments")
        if listed is None:
            return [*existing, *(self._host(f.filename, f.data, None) for f in files.values())]
        old = {a["id"]: a for a in existing}
        out, used = [], set()
        for entry in listed:
            key = str(entry.get("id"))
            if key in old:
                out.append(old[key])
            elif key.isdigit() and int(key) in files:
                used.add(int(key))
                upload = files[int(key)]
                out.append(self._host(entry.get("filename") or upload.filename, upload.data, None,
                                      entry.get("description")))
            else:
                raise ApiError(400, 50035, f"Invalid Form Body: attachments: unknown attachment id {key}")
        return out + [self._host(f.filename, f.data, None) for i, f in files.items() if i not in used]

    def create_message(self, channel_id: str, payload: dict, *, author: dict, files: dict[int, Upload] | None = None,
                       attachments: list[dict] | None = None, member: dict | None = None,
                       validate: bool = True, **extra: Any) -> dict:
        """Store a message (from the bot or a member) and tell the bot about it unless it is ephemeral."""
        channel = self.channels.get(channel_id)
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        msg = {"id": self.new_id(), "channel_id": channel_id, "type": 0, "content": payload.get("content") or "",
               "embeds": payload.get("embeds") or [], "components": payload.get("components") or [],
               "attachments": list(attachments or []), "allowed_mentions": payload.get("allowed_mentions"),
               "flags": payload.get("flags") or 0, "author": author, "timestamp": now_iso(),
               "edited_timestamp": None, "tts": bool(payload.get("tts")), "mention_everyone": False,
               "mentions": [], "mention_roles": [], "pinned": False, "reactions": []}
        if payload.get("message_reference"):
            msg["message_reference"] = self.stored_reference(payload["message_reference"], channel_id)
        if "guild_id" in channel:
            msg["guild_id"] = self.guild_id
        msg.update(extra)
        msg["attachments"] += self.attachments_for(payload, files or {}, [])
        if validate:
            self.validate(msg, files or {})
        self.messages_by_id[msg["id"]] = msg
        if not msg["flags"] & EPHEMERAL:
            self.messages.setdefault(channel_id, []).append(msg)
            event = wire(msg)
            if member is not None and "guild_id" in msg:
                event["member"] = {k: v for k, v in member.items() if k != "user"}
            self.dispatch("MESSAGE_CREATE", event)
        return msg

    def stored_reference(self, reference: dict, channel_id: str) -> dict:
        """A reply's reference as Discord stores it: snowflakes as strings (discord.py sends integers),
        the channel filled in, and the request-only ``fail_if_not_exists`` dropped."""
        stored = {"type": int(reference.get("type") or 0), "message_id": str(reference["message_id"]),
                  "channel_id": str(reference.get("channel_id") or channel_id)}
        if "guild_id" in self.channels[channel_id]:
            stored["guild_id"] = self.guild_id
        return stored

    def edit_message(self, msg: dict, payload: dict, files: dict[int, Upload]) -> dict:
        """Apply an edit in place (every reference to the message sees it); a refused edit changes nothing."""
        edited = {**msg, "flags": msg["flags"] & ~LOADING, "edited_timestamp": now_iso()}
        for key, empty in (("content", ""), ("embeds", []), ("components", []), ("allowed_mentions", None)):
            if key in payload:
                edited[key] = payload[key] if payload[key] is not None else empty
        if "attachments" in payload or files:
            edited["attachments"] = self.attachments_for(payload, files, msg["attachments"])
        self.validate(edited, files)
        msg.update(edited)
        if not msg["flags"] & EPHEMERAL:
            self.dispatch("MESSAGE_UPDATE", wire(msg))
        return msg

    def delete_message(self, msg: dict) -> None:
        self.messages_by_id.pop(msg["id"], None)
        channel = self.messages.get(msg["channel_id"], [])
        if msg in channel:
            channel.remove(msg)
            self.dispatch("MESSAGE_DELETE", {"id": msg["id"], "channel_id": msg["channel_id"],
                                             "guild_id": self.guild_id})
        msg["deleted"] = True

    def validate(self, msg: dict, files: dict[int, Upload]) -> None:
        """The limits Discord enforces on every message the bot sends."""
        if len(msg["content"]) > 2000:
            raise ApiError(400, 50035, "Invalid Form Body: content: Must be 2000 or fewer in length.")
        if len(msg["attachments"]) > 10:
            raise ApiError(400, 50035, "Invalid Form Body: attachments: Must be 10 or fewer in length.")
        if any(len(f.data) > self.attachment_size_limit for f in files.values()):
            raise ApiError(413, 40005, "Request entity too large")
        if not (msg["content"] or msg["embeds"] or msg["attachments"] or msg["components"]):
            raise ApiError(400, 50006, "Cannot send an empty message")

    def set_reaction(self, msg: dict, emoji: str, user_id: str, *, added: bool, member: dict | None = None) -> None:
        """Add or remove one user's reaction, keep ``msg["reactions"]`` current and tell the bot."""
        users = self._reactors.setdefault((msg["id"], emoji), [])
        if added == (user_id in users):
            return
        users.append(user_id) if added else users.remove(user_id)
        msg["reactions"] = [{"emoji": _emoji(e), "count": len(u), "me": self.application_id in u,
                             "count_details": {"normal": len(u), "burst": 0}, "burst_colors": []}
                            for (mid, e), u in self._reactors.items() if mid == msg["id"] and u]
        self.reactions.append({"message_id": msg["id"], "emoji": emoji, "user_id": user_id, "added": added})
        event = {"user_id": user_id, "channel_id": msg["channel_id"], "message_id": msg["id"],
                 "guild_id": self.guild_id, "emoji": _emoji(emoji), "burst": False, "type": 0}
        if added:
            event.update(message_author_id=msg["author"]["id"], burst_colors=[])
            if member is not None:
                event["member"] = member
        self.dispatch("MESSAGE_REACTION_ADD" if added else "MESSAGE_REACTION_REMOVE", event)

    def channel_messages(self, channel_id: str | None = None) -> list[dict]:
        return self.messages.get(channel_id or self.channel_id, [])

"""A fake Discord that real discord.py talks to over loopback sockets, for end-to-end tests.

Not a Discord clone: one guild with a few text channels, the REST routes (``fake_rest``) and gateway
events (``fake_gateway``) a bot like easel uses, and everything the bot sends kept in plain dicts that
tests assert on. Start it in the test's event loop::

    async with FakeDiscord() as server:
        ...  # start a bot with server.rest_url / server.gateway_url, act through tests.e2e.client.Member

Stored message dicts are Discord message payloads plus ``allowed_mentions`` exactly as sent, and
attachments carry their bytes under ``"data"`` (stripped from what goes over the wire).
"""

from __future__ import annotations

import asyncio
import datetime
import fnmatch
import itertools
import mimetypes
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.e2e.fake_gateway import FakeGateway
from tests.e2e.fake_rest import ApiError, RestApi, Upload, wire

DISCORD_EPOCH_MS = 1_420_070_400_000
EPHEMERAL = 1 << 6
LOADING = 1 << 7
MANAGE_GUILD, MANAGE_MESSAGES = 1 << 5, 1 << 13
# Add reactions, view channel, send messages, embed links, attach files, read history, external emojis, use commands.
MEMBER_PERMISSIONS = sum(1 << bit for bit in (6, 10, 11, 14, 15, 16, 18, 31))
BOT_PERMISSIONS = MEMBER_PERMISSIONS | MANAGE_MESSAGES
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


@dataclass
class InteractionRecord:
    """One interaction sent to the bot and everything the bot answered to it.

    ``original`` is the message of the initial response (for a component interaction answered with type 6
    or 7, the message the component is on). The first followup after a deferred response fills the
    "thinking" message, as Discord does, so it is both ``original`` and ``followups[0]``.
    """

    id: str
    token: str
    type: int
    payload: dict
    callbacks: list[dict] = field(default_factory=list)  # {"type", "data", "files": [filename, ...]}
    original: dict | None = None
    followups: list[dict] = field(default_factory=list)
    edits: list[dict] = field(default_factory=list)  # {"message_id", "payload", "files"} per PATCH
    expired: bool = False

    @property
    def response_type(self) -> int | None:
        return self.callbacks[0]["type"] if self.callbacks else None

    @property
    def messages(self) -> list[dict]:
        out = [self.original] if self.original is not None else []
        return out + [m for m in self.followups if m is not self.original]


@dataclass
class Fault:
    method: str
    pattern: str
    status: int
    retry_after: float
    times: int
    upload: str | None = None  # only requests uploading a file whose name matches this glob
    hold: asyncio.Event | None = None  # hold_next: the request is carried out, its answer waits for this


class FakeDiscord:
    """The fake's state and lifecycle. Routes live in ``fake_rest``, the gateway in ``fake_gateway``."""

    def __init__(self, *, token: str = "fake-bot-token", channel_names: tuple[str, ...] = ("general", "art"),
                 heartbeat_interval_ms: int = 10_000) -> None:
        self.token = token
        self._last_id = 0
        self._counter = itertools.count(1)
        self.application_id = self.new_id()
        self.bot_user = self.make_user("easel-bot", bot=True, user_id=self.application_id)
        self.owner = self.make_user("owner")
        self.guild_id = self.new_id()
        self.admin_role_id = self.new_id()
        self.bot_role_id = self.new_id()
        self.roles = [
            {"id": self.guild_id, "name": "@everyone", "permissions": str(MEMBER_PERMISSIONS), "position": 0},
            {"id": self.admin_role_id, "name": "Moderators", "permissions": str(MANAGE_GUILD), "position": 1},
            {"id": self.bot_role_id, "name": "easel", "permissions": str(BOT_PERMISSIONS), "position": 2,
             "managed": True, "tags": {"bot_id": self.application_id}},
        ]
        self.gateway = FakeGateway(self, heartbeat_interval_ms)
        self.rest = RestApi(self)
        self.channels: dict[str, dict] = {}
        self.messages: dict[str, list[dict]] = {}  # channel id -> its non-ephemeral messages, in order
        for name in channel_names:
            self.add_channel(name)
        self.channel_id = next(iter(self.channels))
        self.members: dict[str, dict] = {}
        self.add_member("easel-bot", user_id=self.application_id, roles=[self.bot_role_id], user=self.bot_user)
        self.attachment_size_limit = UPLOAD_LIMIT
        # What tests assert on (and ``messages`` above).
        self.messages_by_id: dict[str, dict] = {}  # every message, ephemeral ones too
        self.interactions: dict[str, InteractionRecord] = {}
        self.commands: dict[str | None, list[dict]] = {}  # guild id (None: global) -> synced commands
        self.reactions: list[dict] = []  # log: {"message_id", "emoji", "user_id", "added"}
        self.requests: list[tuple[str, str, str, int]] = []  # (method, path, query, status)
        self.unknown_routes: list[str] = []
        self.errors: list[str] = []  # crashes inside the fake itself
        self.files: dict[str, tuple[bytes, str]] = {}  # attachment id -> (bytes, content type)
        self.expire_on_ack = False
        self.nonces: dict[tuple[str, str], tuple[dict, float]] = {}  # (author, nonce) -> (message, when)
        self.nonce_window_s = 300.0  # Discord keeps enforced nonces "a few minutes"
        self.clock = time.monotonic
        self.held: list[tuple[str, str]] = []  # (method, path) of requests whose answer hold_next keeps back
        self._faults: list[Fault] = []
        self._holds: list[Fault] = []
        self._by_token: dict[str, InteractionRecord] = {}
        self._reactors: dict[tuple[str, str], list[str]] = {}
        self._watchdogs: list[Callable[[], str | None]] = []
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/", self.gateway.handle)
        app.router.add_get("/attachments/{id}/{filename}", self.rest.serve_file)
        app.router.add_route("*", "/api/v10/{tail:.*}", self.rest.handle)
        app.router.add_route("*", "/{tail:.*}", self.rest.not_found)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        for hold in self._holds:
            assert hold.hold is not None
            hold.hold.set()
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        """What the launcher sets as ``discord.http.Route.BASE``."""
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """What the launcher sets as ``DiscordWebSocket.DEFAULT_GATEWAY``; also the resume URL."""
        return f"ws://127.0.0.1:{self.port}/"

    def new_id(self) -> str:
        """A snowflake: increasing, with a timestamp discord.py can read back."""
        stamp = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(self._last_id + 1, stamp | (next(self._counter) & 0xFFF))
        return str(self._last_id)

    def make_user(self, name: str, *, bot: bool = False, user_id: str | None = None) -> dict:
        return {"id": user_id or self.new_id(), "username": name, "global_name": name, "discriminator": "0",
                "avatar": None, "bot": bot, "public_flags": 0, "flags": 0}

    def add_channel(self, name: str) -> str:
        cid = self.new_id()
        self.channels[cid] = {"id": cid, "type": 0, "guild_id": self.guild_id, "name": name,
                              "position": len(self.channels), "permission_overwrites": [], "nsfw": False,
                              "parent_id": None, "topic": None, "last_message_id": None, "rate_limit_per_user": 0}
        self.messages[cid] = []
        return cid

    def add_member(self, name: str, *, admin: bool = False, user_id: str | None = None,
                   roles: list[str] | None = None, user: dict | None = None) -> dict:
        """A guild member payload (with ``user``); ``admin`` adds the Manage Guild role."""
        user = user or self.make_user(name, user_id=user_id)
        member = {"user": user, "roles": list(roles or []) + ([self.admin_role_id] if admin else []),
                  "joined_at": now_iso(), "deaf": False, "mute": False, "flags": 0, "nick": None,
                  "avatar": None, "pending": False, "premium_since": None}
        self.members[user["id"]] = member
        if self.gateway.identified:
            self.dispatch("GUILD_MEMBER_ADD", {**member, "guild_id": self.guild_id})
        return member

    def permissions_of(self, member: dict) -> int:
        perms = 0
        for role in self.roles:
            if role["id"] == self.guild_id or role["id"] in member["roles"]:
                perms |= int(role["permissions"])
        return perms

    def guild_payload(self) -> dict:
        """The guild as GET /guilds/{id} shows it; the gateway's GUILD_CREATE adds channels and members."""
        return {"id": self.guild_id, "name": "easel test", "owner_id": self.owner["id"], "roles": self.roles,
                 "emojis": [], "stickers": [], "features": [], "icon": None, "afk_timeout": 300,
                 "verification_level": 0, "default_message_notifications": 1, "explicit_content_filter": 0,
                 "mfa_level": 0, "nsfw_level": 0, "premium_tier": 0, "preferred_locale": "en-US",
                "system_channel_id": self.channel_id, "system_channel_flags": 0, "description": None}

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

    def send_interaction(self, payload: dict) -> InteractionRecord:
        """Give a member-built interaction an id and a token, keep a record, dispatch it to the bot."""
        iid, token = self.new_id(), secrets.token_urlsafe(32)
        payload = {**payload, "id": iid, "token": token, "application_id": self.application_id, "version": 1}
        record = InteractionRecord(id=iid, token=token, type=payload["type"], payload=payload)
        self.interactions[iid] = record
        self._by_token[token] = record
        self.dispatch("INTERACTION_CREATE", payload)
        return record

    def interaction_by_token(self, token: str) -> InteractionRecord | None:
        return self._by_token.get(token)

    def expire_interaction_tokens(self) -> None:
        """Every token issued so far stops working, as 15 minutes later: 401 code 50027 on webhook routes."""
        for record in self.interactions.values():
            record.expired = True

    def expire_tokens_after_ack(self, enabled: bool = True) -> None:
        """From now on a token expires right after the bot's initial response is stored.

        Deterministic stand-in for "the job took longer than the token lives": the defer succeeds, every
        followup or edit through the interaction webhook then gets 401 code 50027.
        """
        self.expire_on_ack = enabled

    def find_command(self, name: str, type: int) -> tuple[dict, str | None]:
        """A synced command by name and type, guild commands first (as Discord shows them)."""
        for guild in (self.guild_id, None):
            for cmd in self.commands.get(guild, []):
                if cmd["name"] == name and cmd.get("type", 1) == type:
                    return cmd, guild
        synced = sorted(c["name"] for cmds in self.commands.values() for c in cmds)
        raise AssertionError(f"no command {name!r} of type {type} was synced; synced: {synced}")

    def dispatch(self, event: str, data: dict) -> None:
        self.gateway.dispatch(event, data)

    async def drop_gateway(self) -> None:
        """Close the bot's gateway socket with a resumable code; events meanwhile wait for its RESUME."""
        await self.gateway.drop()

    def fail_next(self, method: str, path_pattern: str, status: int = 429, retry_after: float = 0.2,
                  times: int = 1, upload: str | None = None) -> None:
        """Answer the next ``times`` requests matching ``method`` and the glob ``path_pattern`` (the path
        after /api/v10, e.g. ``/webhooks/*``) with ``status``; a 429 comes with ``Via`` and ``retry_after``.

        ``upload`` narrows it to requests uploading a file whose name matches that glob (e.g. a bot's
        result, not its progress edits)."""
        self._faults.append(Fault(method.upper(), path_pattern, status, retry_after, times, upload))

    def hold_next(self, method: str, path_pattern: str, *, upload: str | None = None) -> asyncio.Event:
        """Carry out the next request matching (as ``fail_next``) but keep its answer back until the returned
        event is set (or the fake closes): the change is made, and a bot killed meanwhile never learns it was."""
        release = asyncio.Event()
        self._holds.append(Fault(method.upper(), path_pattern, 200, 0.0, 1, upload, release))
        return release

    def take_hold(self, method: str, path: str, filenames: tuple[str, ...] = ()) -> asyncio.Event | None:
        for hold in self._holds:
            if hold.times > 0 and hold.method == method and fnmatch.fnmatchcase(path, hold.pattern) and (
                    hold.upload is None or any(fnmatch.fnmatchcase(f, hold.upload) for f in filenames)):
                hold.times = 0  # kept in the list: close() releases it
                return hold.hold
        return None

    def take_fault(self, method: str, path: str, filenames: tuple[str, ...] = ()) -> Fault | None:
        for fault in self._faults:
            if fault.upload is not None and not any(fnmatch.fnmatchcase(f, fault.upload) for f in filenames):
                continue
            if fault.method == method and fnmatch.fnmatchcase(path, fault.pattern):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def touch(self) -> None:
        """Wake every ``wait_for``: something changed."""
        self._changed.set()
        self._changed = asyncio.Event()

    def add_watchdog(self, check: Callable[[], str | None]) -> None:
        """``check()`` returns a reason to stop waiting (e.g. the bot process died) or None."""
        self._watchdogs.append(check)

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
        """Wait until ``predicate()`` is truthy and return its value; fail with context on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (result := predicate()):
            for check in self._watchdogs:
                if (reason := check()) is not None:
                    raise AssertionError(f"stopped waiting for {what or predicate}: {reason}")
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = "\n".join(f"  {m} {p}?{q} -> {s}" for m, p, q, s in self.requests[-15:])
                lost = [e["t"] for e in self.gateway.undelivered]
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}; "
                                     f"recent requests:\n{recent}\nunknown routes: {self.unknown_routes}"
                                     + (f"\nevents raised before the bot connected: {lost}" if lost else ""))
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
            except TimeoutError:
                pass
        return result

    async def wait_logged_in(self, count: int = 1, timeout: float = 60.0) -> None:
        """Until the ``count``-th IDENTIFY got its READY and GUILD_CREATE (later events reach a ready cache).

        ``count=2`` waits for a restarted bot: a killed bot's session may still look connected for a moment.
        """
        await self.wait_for(lambda: len(self.gateway.sent("GUILD_CREATE")) >= count, timeout,
                            f"login number {count} of the bot")

    def assert_clean(self) -> None:
        """Fail when the bot used a route the fake does not know, or the fake itself crashed."""
        problems = [f"unknown route: {r}" for r in self.unknown_routes] + [f"fake crashed: {e}" for e in self.errors]
        if problems:
            raise AssertionError("the fake Discord saw requests it cannot answer:\n" + "\n".join(problems))

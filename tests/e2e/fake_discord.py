"""A fake Discord that real discord.py talks to over loopback sockets, for end-to-end tests.

Not a Discord clone: one guild with a few text channels, the REST routes (``fake_rest``) and gateway
events (``fake_gateway``) a bot like easel uses, and everything the bot sends kept in plain dicts that
tests assert on. Start it in the test's event loop::

    async with FakeDiscord() as server:
        ...  # start a bot with server.rest_url / server.gateway_url, act through tests.e2e.client.Member

``FakeDiscord`` keeps the guild, its members, channels and interactions here and combines three mixins:
``fake_messages.Messages`` (messages, attachments and the files the fake hosts, reactions),
``fake_faults.Faults`` (``fail_next``, ``hold_next``) and ``fake_waiting.Waiting`` (``wait_for``,
watchdogs, ``assert_clean``). Names tests use from those modules are re-exported here.
"""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field

from aiohttp import web

from tests.e2e.fake_faults import Fault, Faults
from tests.e2e.fake_gateway import FakeGateway
from tests.e2e.fake_messages import EPHEMERAL, LOADING, UPLOAD_LIMIT, Messages, now_iso, png_size
from tests.e2e.fake_rest import RestApi
from tests.e2e.fake_waiting import Waiting
from tests.e2e.fake_wire import ApiError, Upload, wire

__all__ = ["BOT_PERMISSIONS", "DISCORD_EPOCH_MS", "EPHEMERAL", "LOADING", "MANAGE_GUILD", "MANAGE_MESSAGES",
           "MEMBER_PERMISSIONS", "UPLOAD_LIMIT", "ApiError", "Fault", "FakeDiscord", "InteractionRecord", "Upload",
           "now_iso", "png_size", "wire"]

DISCORD_EPOCH_MS = 1_420_070_400_000
MANAGE_GUILD, MANAGE_MESSAGES = 1 << 5, 1 << 13
# Add reactions, view channel, send messages, embed links, attach files, read history, external emojis, use commands.
MEMBER_PERMISSIONS = sum(1 << bit for bit in (6, 10, 11, 14, 15, 16, 18, 31))
BOT_PERMISSIONS = MEMBER_PERMISSIONS | MANAGE_MESSAGES


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


class FakeDiscord(Messages, Faults, Waiting):
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
        self._by_token: dict[str, InteractionRecord] = {}
        self._reactors: dict[tuple[str, str], list[str]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._init_faults()
        self._init_waiting()

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
        self.release_holds()
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

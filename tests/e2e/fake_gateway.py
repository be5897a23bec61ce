"""The fake Discord's gateway: a websocket speaking Discord's JSON protocol with zlib-stream compression.

One session per IDENTIFY. Every dispatched event gets the session's next sequence number and is kept, so
a RESUME after a dropped connection replays what the bot missed and then sends RESUMED, as Discord does.
All sends to one connection go through its outbox, so ``dispatch`` can be called from synchronous code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import traceback
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

if TYPE_CHECKING:
    from tests.e2e.fake_discord import FakeDiscord

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE, RESUME = 0, 1, 2, 3, 4, 6
REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 8, 9, 10, 11
GUILD_MEMBERS, GUILD_MESSAGES, GUILD_REACTIONS = 1 << 1, 1 << 9, 1 << 10
DIRECT_MESSAGES, DIRECT_REACTIONS, MESSAGE_CONTENT = 1 << 12, 1 << 13, 1 << 15
# Events Discord sends only to a session whose IDENTIFY asked for the intent: (in a guild, in a DM).
EVENT_INTENTS = {
    "MESSAGE_CREATE": (GUILD_MESSAGES, DIRECT_MESSAGES),
    "MESSAGE_UPDATE": (GUILD_MESSAGES, DIRECT_MESSAGES),
    "MESSAGE_DELETE": (GUILD_MESSAGES, DIRECT_MESSAGES),
    "MESSAGE_REACTION_ADD": (GUILD_REACTIONS, DIRECT_REACTIONS),
    "MESSAGE_REACTION_REMOVE": (GUILD_REACTIONS, DIRECT_REACTIONS),
    "GUILD_MEMBER_ADD": (GUILD_MEMBERS, GUILD_MEMBERS),
}


def visible(event: str, data: dict, intents: int, bot_id: str) -> dict | None:
    """What a session with ``intents`` receives of ``event``: nothing without the event's intent, and
    message bodies blanked without Message Content unless the bot wrote or is mentioned in the message."""
    needed = EVENT_INTENTS.get(event)
    if needed is not None and not intents & needed[0 if "guild_id" in data else 1]:
        return None
    if event in ("MESSAGE_CREATE", "MESSAGE_UPDATE") and not intents & MESSAGE_CONTENT and "guild_id" in data:
        author = (data.get("author") or {}).get("id")
        if author != bot_id and f"<@{bot_id}>" not in data.get("content", ""):
            return {**data, "content": "", "embeds": [], "attachments": [], "components": []}
    return data


class Connection:
    """One websocket. With ``compress=zlib-stream`` every payload is deflated by one compressor per
    connection and ends with a Z_SYNC_FLUSH marker, which is how discord.py finds message boundaries."""

    def __init__(self, ws: web.WebSocketResponse, compress: bool) -> None:
        self.ws = ws
        self.compressor = zlib.compressobj() if compress else None
        self.outbox: asyncio.Queue[dict] = asyncio.Queue()
        self.session: Session | None = None

    def send(self, payload: dict) -> None:
        self.outbox.put_nowait(payload)

    async def write_forever(self) -> None:
        while True:
            payload = await self.outbox.get()
            data = json.dumps(payload)
            try:
                if self.compressor is None:
                    await self.ws.send_str(data)
                else:
                    deflated = self.compressor.compress(data.encode()) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(deflated)
            except (ConnectionError, RuntimeError):
                return  # closed under us: the session keeps the event for a RESUME


@dataclass
class Session:
    id: str
    intents: int
    seq: int = 0
    backlog: list[dict] = field(default_factory=list)
    conn: Connection | None = None


class FakeGateway:
    def __init__(self, server: FakeDiscord, heartbeat_interval_ms: int) -> None:
        self.server = server
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.current: Session | None = None  # the bot's latest session; dispatch goes there
        self.sessions: dict[str, Session] = {}
        self.received: list[dict] = []  # every payload the bot sent (heartbeats included), token kept
        self.log: list[dict] = []  # every dispatch sent, from every session, in order
        self.undelivered: list[dict] = []  # events raised before any bot identified
        self.connections: set[Connection] = set()

    @property
    def identified(self) -> bool:
        return self.current is not None

    @property
    def intents(self) -> int:
        """The intents of the bot's current session (0 before any IDENTIFY)."""
        return self.current.intents if self.current is not None else 0

    def sent(self, event: str) -> list[dict]:
        """The data of every ``event`` dispatched so far (READY, GUILD_CREATE, RESUMED, ...)."""
        return [p["d"] for p in self.log if p["t"] == event]

    def ops(self, op: int) -> list[dict]:
        """The data of every payload with opcode ``op`` the bot sent (e.g. IDENTIFY, RESUME)."""
        return [p.get("d") for p in self.received if p.get("op") == op]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress")
        if compress not in (None, "zlib-stream"):
            self.server.unknown_routes.append(f"GATEWAY compress={compress}")
            await ws.close(code=4000, message=b"unsupported compression")
            return ws
        conn = Connection(ws, compress == "zlib-stream")
        self.connections.add(conn)
        writer = asyncio.create_task(conn.write_forever())
        conn.send({"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}, "s": None, "t": None})
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    try:
                        self._receive(conn, json.loads(msg.data))
                    except Exception:  # a bug in the fake: record it, keep the socket
                        self.server.errors.append(f"gateway {msg.data[:200]}\n{traceback.format_exc()}")
                else:
                    self.server.unknown_routes.append(f"GATEWAY frame {msg.type.name}")
        finally:
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            self.connections.discard(conn)
            await _stop(writer)
            self.server.touch()
        return ws

    def _receive(self, conn: Connection, payload: dict[str, Any]) -> None:
        self.received.append(payload)
        op, data = payload.get("op"), payload.get("d") or {}
        if op == HEARTBEAT:
            conn.send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
        elif op == IDENTIFY:
            if data.get("token") != self.server.token:
                asyncio.get_running_loop().create_task(conn.ws.close(code=4004, message=b"Authentication failed."))
                return
            session = Session(id=secrets.token_hex(16), intents=int(data.get("intents", 0)))
            self.sessions[session.id] = session
            self.current = session
            self._attach(conn, session)
            self._dispatch(session, "READY", self._ready(session))
            self._dispatch(session, "GUILD_CREATE", self._guild_create())
        elif op == RESUME:
            session = self.sessions.get(data.get("session_id", ""))
            if session is None or data.get("token") != self.server.token:
                conn.send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
                return
            self._attach(conn, session)
            last = data.get("seq") or 0
            for missed in session.backlog:
                if missed["s"] > last:
                    conn.send(missed)
            self._dispatch(session, "RESUMED", {})
        elif op == REQUEST_MEMBERS:
            self.dispatch("GUILD_MEMBERS_CHUNK", {
                "guild_id": self.server.guild_id, "members": list(self.server.members.values()), "chunk_index": 0,
                "chunk_count": 1, "not_found": [], "presences": [], "nonce": data.get("nonce")})
        elif op not in (PRESENCE, VOICE):
            self.server.unknown_routes.append(f"GATEWAY op {op}")
        self.server.touch()

    def _attach(self, conn: Connection, session: Session) -> None:
        conn.session = session
        session.conn = conn

    def _ready(self, session: Session) -> dict:
        return {"v": 10, "user": {**self.server.bot_user, "verified": True, "mfa_enabled": False},
                "application": {"id": self.server.application_id, "flags": 0}, "session_id": session.id,
                "session_type": "normal", "resume_gateway_url": self.server.gateway_url,
                "guilds": [{"id": self.server.guild_id, "unavailable": True}], "private_channels": [],
                "relationships": [], "user_settings": {}, "geo_ordered_rtc_regions": []}

    def _guild_create(self) -> dict:
        """Every member included, so discord.py sees a chunked guild and asks for nothing more."""
        server = self.server
        return {**server.guild_payload(), "channels": [c for c in server.channels.values() if c["type"] == 0],
                "members": list(server.members.values()), "member_count": len(server.members), "large": False,
                "unavailable": False, "joined_at": server.members[server.application_id]["joined_at"],
                "threads": [], "voice_states": [], "presences": [], "stage_instances": [],
                "guild_scheduled_events": [], "soundboard_sounds": []}

    def dispatch(self, event: str, data: dict) -> None:
        """Send ``event`` to the bot's session; while its socket is down the event waits for RESUME.

        Before any bot identified, Discord has nobody to tell: the event is only noted in ``undelivered``.
        """
        if self.current is None:
            self.undelivered.append({"t": event, "d": data})
            return
        self._dispatch(self.current, event, data)

    def _dispatch(self, session: Session, event: str, data: dict) -> None:
        data = visible(event, data, session.intents, self.server.application_id)
        if data is None:
            return
        session.seq += 1
        payload = {"op": DISPATCH, "t": event, "s": session.seq, "d": data}
        session.backlog.append(payload)
        self.log.append(payload)
        if session.conn is not None:
            session.conn.send(payload)
        self.server.touch()

    async def drop(self, code: int = 4000) -> None:
        """Close the current session's socket with a code discord.py answers with RESUME."""
        session = self.current
        if session is None or session.conn is None:
            raise RuntimeError("no gateway connection to drop")
        conn, session.conn = session.conn, None
        await conn.ws.close(code=code, message=b"dropped by the fake Discord")

    async def close(self) -> None:
        for conn in list(self.connections):
            await conn.ws.close(code=1001, message=b"fake Discord shutting down")


async def _stop(writer: asyncio.Task) -> None:
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer

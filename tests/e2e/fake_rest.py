"""The fake Discord's REST API under /api/v10: a table of routes, each a small handler on the fake's state.

Every answer is JSON with exactly ``Content-Type: application/json`` (discord.py checks it verbatim).
A request no route matches gets a 404 and is recorded in ``server.unknown_routes``.

This module routes requests (authorisation, injected faults and holds from ``fake_faults``) and holds the
login, command, channel, message and guild routes; the interaction and webhook routes live in
``fake_webhooks`` and the wire format (``ApiError``, ``Upload``, ``wire``, ...) in ``fake_wire``, both
re-exported here.
"""

from __future__ import annotations

import json
import traceback
from typing import TYPE_CHECKING

from aiohttp import web

from tests.e2e.fake_webhooks import InteractionRoutes
from tests.e2e.fake_wire import (
    ApiError,
    Body,
    Handler,
    Upload,
    _compile,
    json_response,
    no_content,
    public,
    read_body,
    wire,
)

if TYPE_CHECKING:
    from tests.e2e.fake_discord import FakeDiscord

__all__ = ["API_PREFIX", "ApiError", "Body", "Handler", "RestApi", "Upload", "json_response", "no_content",
           "public", "read_body", "wire"]

API_PREFIX = "/api/v10"


class RestApi(InteractionRoutes):
    def __init__(self, server: FakeDiscord) -> None:
        self.server = server
        table: dict[tuple[str, str], Handler] = {
            ("GET", "/gateway"): self.get_gateway,
            ("GET", "/gateway/bot"): self.get_gateway,
            ("GET", "/users/@me"): self.get_me,
            ("GET", "/users/{user}"): self.get_user,
            ("GET", "/oauth2/applications/@me"): self.get_app,
            ("GET", "/applications/{app}/commands"): self.get_commands,
            ("PUT", "/applications/{app}/commands"): self.put_commands,
            ("GET", "/applications/{app}/guilds/{guild}/commands"): self.get_commands,
            ("PUT", "/applications/{app}/guilds/{guild}/commands"): self.put_commands,
            ("POST", "/interactions/{id}/{token}/callback"): self.callback,
            ("POST", "/webhooks/{app}/{token}"): self.followup,
            ("GET", "/webhooks/{app}/{token}/messages/{message}"): self.get_webhook_message,
            ("PATCH", "/webhooks/{app}/{token}/messages/{message}"): self.edit_webhook_message,
            ("DELETE", "/webhooks/{app}/{token}/messages/{message}"): self.delete_webhook_message,
            ("GET", "/channels/{channel}"): self.get_channel,
            ("POST", "/channels/{channel}/typing"): self.typing,
            ("GET", "/channels/{channel}/messages"): self.list_messages,
            ("POST", "/channels/{channel}/messages"): self.post_message,
            ("GET", "/channels/{channel}/messages/{message}"): self.get_message,
            ("PATCH", "/channels/{channel}/messages/{message}"): self.edit_message,
            ("DELETE", "/channels/{channel}/messages/{message}"): self.delete_message,
            ("PUT", "/channels/{channel}/messages/{message}/reactions/{emoji}/@me"): self.add_reaction,
            ("DELETE", "/channels/{channel}/messages/{message}/reactions/{emoji}/@me"): self.remove_reaction,
            ("POST", "/users/@me/channels"): self.create_dm,
            ("GET", "/guilds/{guild}"): self.get_guild,
            ("GET", "/guilds/{guild}/members/{user}"): self.get_member,
        }
        self.routes = [(method, _compile(path), handler) for (method, path), handler in table.items()]

    async def serve_file(self, request: web.Request) -> web.StreamResponse:
        """The attachment file server: members' uploads and everything the bot uploaded."""
        found = self.server.files.get(request.match_info["id"])
        if found is None:
            return await self.not_found(request)
        self.server.requests.append(("GET", request.path, request.query_string, 200))
        return web.Response(body=found[0], content_type=found[1])

    async def not_found(self, request: web.Request) -> web.StreamResponse:
        self.server.unknown_routes.append(f"{request.method} {request.path}")
        self.server.requests.append((request.method, request.path, request.query_string, 404))
        self.server.touch()
        return json_response({"message": "404: Not Found", "code": 0}, 404)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        server = self.server
        path = request.path.removeprefix(API_PREFIX)
        try:
            response = await self._route(request, path)
        except ApiError as exc:
            response = json_response({"message": exc.message, "code": exc.code}, exc.status)
        except Exception:  # a bug in the fake: record it, answer 400 so discord.py does not retry for long
            server.errors.append(f"{request.method} {path}\n{traceback.format_exc()}")
            response = json_response({"message": "the fake Discord crashed; see server.errors", "code": 0}, 400)
        server.requests.append((request.method, path, request.query_string, response.status))
        server.touch()
        return response

    async def _route(self, request: web.Request, path: str) -> web.Response:
        server = self.server
        open_route = path.startswith(("/interactions/", "/webhooks/"))  # authorised by the token in the path
        if not open_route and request.headers.get("Authorization") != f"Bot {server.token}":
            raise ApiError(401, 0, "401: Unauthorized")
        body = await read_body(request)
        fault = server.take_fault(request.method, path, tuple(f.filename for f in body.files.values()))
        if fault is not None:
            if fault.status == 429:
                return web.Response(
                    body=json.dumps({"message": "You are being rate limited.", "retry_after": fault.retry_after,
                                     "global": False}).encode(),
                    status=429, content_type="application/json", headers={"Via": "1.1 google"})
            raise ApiError(fault.status, 0, f"injected failure {fault.status}")
        for method, pattern, handler in self.routes:
            if method == request.method and (match := pattern.fullmatch(path)) is not None:
                response = await handler(match.groupdict(), body, request)
                hold = server.take_hold(request.method, path, tuple(f.filename for f in body.files.values()))
                if hold is not None:  # done, but the answer is held back (as if the bot died before reading it)
                    server.held.append((request.method, path))
                    server.touch()
                    await hold.wait()
                return response
        server.unknown_routes.append(f"{request.method} {path}")
        raise ApiError(404, 0, "404: Not Found")

    # -- login and commands ----------------------------------------------------------------------

    async def get_gateway(self, params: dict, body: Body, request: web.Request) -> web.Response:
        return json_response({"url": self.server.gateway_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})

    async def get_me(self, params: dict, body: Body, request: web.Request) -> web.Response:
        return json_response({**self.server.bot_user, "verified": True, "mfa_enabled": False})

    async def get_user(self, params: dict, body: Body, request: web.Request) -> web.Response:
        member = self.server.members.get(params["user"])
        if member is None:
            raise ApiError(404, 10013, "Unknown User")
        return json_response(member["user"])

    async def get_app(self, params: dict, body: Body, request: web.Request) -> web.Response:
        server = self.server
        return json_response({
            "id": server.application_id, "name": "easel", "description": "", "icon": None, "bot_public": True,
            "bot_require_code_grant": False, "owner": server.owner, "verify_key": "0" * 64, "flags": 0,
            "team": None, "bot": server.bot_user})

    def _check_app(self, params: dict) -> None:
        if params["app"] != self.server.application_id:
            raise ApiError(404, 10002, "Unknown Application")

    async def get_commands(self, params: dict, body: Body, request: web.Request) -> web.Response:
        self._check_app(params)
        return json_response(self.server.commands.get(params.get("guild"), []))

    async def put_commands(self, params: dict, body: Body, request: web.Request) -> web.Response:
        """Bulk overwrite: keep each command's id across syncs, as Discord does for unchanged names."""
        self._check_app(params)
        guild = params.get("guild")
        old = {(c["name"], c.get("type", 1)): c["id"] for c in self.server.commands.get(guild, [])}
        synced = []
        for cmd in body.json:
            key = (cmd["name"], cmd.get("type", 1))
            stored = {"type": 1, "description": "", "options": [], "default_member_permissions": None, **cmd,
                      "id": old.get(key) or self.server.new_id(), "application_id": self.server.application_id,
                      "version": self.server.new_id()}
            if guild is not None:
                stored["guild_id"] = guild
            synced.append(stored)
        self.server.commands[guild] = synced
        return json_response(synced)

    # -- channels, messages, reactions -----------------------------------------------------------

    def _channel(self, params: dict) -> dict:
        channel = self.server.channels.get(params["channel"])
        if channel is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return channel

    def _message(self, params: dict) -> dict:
        self._channel(params)
        message = self.server.messages_by_id.get(params["message"])
        if message is None or message["channel_id"] != params["channel"] or message["flags"] & 64:
            raise ApiError(404, 10008, "Unknown Message")
        return message

    async def get_channel(self, params: dict, body: Body, request: web.Request) -> web.Response:
        return json_response(self._channel(params))

    async def typing(self, params: dict, body: Body, request: web.Request) -> web.Response:
        self._channel(params)
        return no_content()

    async def list_messages(self, params: dict, body: Body, request: web.Request) -> web.Response:
        """Newest first, like Discord; ``after`` picks the oldest ``limit`` messages after the id."""
        self._channel(params)
        query = request.query
        limit = max(1, min(100, int(query.get("limit", 50))))
        found = self.server.channel_messages(params["channel"])
        if "before" in query:
            found = [m for m in found if int(m["id"]) < int(query["before"])]
        if "after" in query:
            found = [m for m in found if int(m["id"]) > int(query["after"])]
        found = found[:limit] if "after" in query and "before" not in query else found[-limit:]
        return json_response([wire(m) for m in reversed(found)])

    async def post_message(self, params: dict, body: Body, request: web.Request) -> web.Response:
        self._channel(params)
        nonce = body.json.get("nonce")
        if nonce is not None and body.json.get("enforce_nonce"):
            # Discord: a message by the same author with the same nonce a few minutes ago is returned, not repeated.
            earlier = self.server.nonces.get((self.server.application_id, str(nonce)))
            if earlier is not None and earlier[1] > self.server.clock() - self.server.nonce_window_s:
                return json_response(wire(earlier[0]))
        bot_member = self.server.members[self.server.application_id]
        message = self.server.create_message(params["channel"], {**body.json, "flags": (body.json.get("flags") or 0) & ~64}, author=self.server.bot_user,
                                             files=body.files, member=bot_member)
        if nonce is not None:
            message["nonce"] = nonce
            self.server.nonces[(self.server.application_id, str(nonce))] = (message, self.server.clock())
        return json_response(wire(message))

    async def get_message(self, params: dict, body: Body, request: web.Request) -> web.Response:
        return json_response(wire(self._message(params)))

    async def edit_message(self, params: dict, body: Body, request: web.Request) -> web.Response:
        message = self._message(params)
        if message["author"]["id"] != self.server.application_id:
            raise ApiError(403, 50005, "Cannot edit a message authored by another user")
        return json_response(wire(self.server.edit_message(message, body.json, body.files)))

    async def delete_message(self, params: dict, body: Body, request: web.Request) -> web.Response:
        self.server.delete_message(self._message(params))
        return no_content()

    async def add_reaction(self, params: dict, body: Body, request: web.Request) -> web.Response:
        self.server.set_reaction(self._message(params), params["emoji"], self.server.application_id, added=True,
                                 member=self.server.members[self.server.application_id])
        return no_content()

    async def remove_reaction(self, params: dict, body: Body, request: web.Request) -> web.Response:
        self.server.set_reaction(self._message(params), params["emoji"], self.server.application_id, added=False)
        return no_content()

    async def create_dm(self, params: dict, body: Body, request: web.Request) -> web.Response:
        server = self.server
        member = server.members.get(str(body.json.get("recipient_id")))
        if member is None:
            raise ApiError(400, 50033, "Invalid Recipients")
        for channel in server.channels.values():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == member["user"]["id"]:
                return json_response(channel)
        cid = server.new_id()
        server.channels[cid] = {"id": cid, "type": 1, "recipients": [member["user"]], "last_message_id": None}
        server.messages[cid] = []
        return json_response(server.channels[cid])

    # -- guild -----------------------------------------------------------------------------------

    async def get_guild(self, params: dict, body: Body, request: web.Request) -> web.Response:
        if params["guild"] != self.server.guild_id:
            raise ApiError(404, 10004, "Unknown Guild")
        guild = self.server.guild_payload()
        if request.query.get("with_counts") in ("1", "true"):
            guild.update(approximate_member_count=len(self.server.members), approximate_presence_count=0)
        return json_response(guild)

    async def get_member(self, params: dict, body: Body, request: web.Request) -> web.Response:
        member = self.server.members.get(params["user"]) if params["guild"] == self.server.guild_id else None
        if member is None:
            raise ApiError(404, 10007, "Unknown Member")
        return json_response(member)

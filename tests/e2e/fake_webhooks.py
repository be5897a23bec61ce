"""Interaction routes of the fake Discord's REST API: the initial response callback and the interaction
webhook (followups, and getting, editing and deleting the original response or a followup).

Tokens are checked against ``server.interactions``; an expired token (``expire_interaction_tokens``,
``expire_tokens_after_ack``) answers 401 code 50027 as Discord does. A deferred response is a "thinking"
message (flag 128) that the first followup fills in place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.e2e.fake_wire import ApiError, Body, Upload, json_response, no_content, wire

if TYPE_CHECKING:
    from tests.e2e.fake_discord import FakeDiscord, InteractionRecord


class InteractionRoutes:
    """Route handlers mixed into ``RestApi``."""

    server: FakeDiscord

    async def callback(self, params: dict, body: Body, request: web.Request) -> web.Response:
        server = self.server
        record = server.interactions.get(params["id"])
        if record is None or record.token != params["token"] or record.expired:
            raise ApiError(404, 10062, "Unknown interaction")
        if record.callbacks:
            raise ApiError(400, 40060, "Interaction has already been acknowledged.")
        kind, data = body.json["type"], body.json.get("data") or {}
        component_message = server.messages_by_id.get((record.payload.get("message") or {}).get("id", ""))
        message = None
        if kind == 4:
            message = self._response_message(record, data, body.files)
        elif kind == 5:
            message = self._response_message(record, {"flags": (data.get("flags") or 0) & 64}, {}, loading=True)
        elif kind in (6, 7):
            if component_message is None:
                raise ApiError(400, 50035, "Invalid Form Body: this interaction has no message to update")
            record.original = message = component_message
            if kind == 7:
                server.edit_message(component_message, data, body.files)
        elif kind not in (1, 8, 9):
            raise ApiError(400, 50035, f"Invalid Form Body: unknown callback type {kind}")
        record.callbacks.append({"type": kind, "data": data, "files": [f.filename for f in body.files.values()]})
        record.expired = record.expired or server.expire_on_ack
        if request.query.get("with_response") not in ("1", "true", "True"):
            return no_content()
        flags = message["flags"] if message is not None else 0
        answer: dict[str, Any] = {"interaction": {
            "id": record.id, "type": record.type, "response_message_loading": bool(flags & 128),
            "response_message_ephemeral": bool(flags & 64)}}
        if message is not None and kind in (4, 5, 7):
            answer["interaction"]["response_message_id"] = message["id"]
            answer["resource"] = {"type": kind, "message": wire(message)}
        return json_response(answer)

    def _response_message(self, record: InteractionRecord, data: dict, files: dict[int, Upload], *,
                          loading: bool = False, followup: bool = False) -> dict:
        """A message the bot sends through an interaction: the original response or a followup."""
        server = self.server
        command_type = (record.payload.get("data") or {}).get("type", 1)
        kind = {1: 20, 2: 23, 3: 23}.get(command_type, 20) if record.type == 2 else 0
        meta = {"id": record.id, "type": record.type, "user": record.payload["member"]["user"],
                "authorizing_integration_owners": record.payload.get("authorizing_integration_owners", {})}
        if followup and record.original is not None:
            meta["original_response_message_id"] = record.original["id"]
        if record.payload.get("message"):
            meta["interacted_message_id"] = record.payload["message"]["id"]
        payload = {**data, "flags": (data.get("flags") or 0) | (128 if loading else 0)}
        message = server.create_message(record.payload["channel_id"], payload, author=server.bot_user,
                                        files=files, validate=not loading, type=kind,
                                        webhook_id=server.application_id, application_id=server.application_id,
                                        interaction_metadata=meta)
        if not followup:
            record.original = message
        return message

    def _webhook_record(self, params: dict) -> InteractionRecord:
        if params["app"] != self.server.application_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        record = self.server.interaction_by_token(params["token"])
        if record is None or record.expired:
            raise ApiError(401, 50027, "Invalid Webhook Token")
        return record

    def _webhook_message(self, record: InteractionRecord, message_id: str) -> dict:
        message = record.original if message_id == "@original" else next(
            (m for m in record.messages if m["id"] == message_id), None)
        if message is None or message.get("deleted"):
            raise ApiError(404, 10008, "Unknown Message")
        return message

    async def followup(self, params: dict, body: Body, request: web.Request) -> web.Response:
        record = self._webhook_record(params)
        if not record.callbacks:
            raise ApiError(404, 10015, "Unknown Webhook")
        original = record.original
        if original is not None and original["flags"] & 128 and not original.get("deleted"):
            # The first followup after a defer fills the "thinking" message; the defer chose ephemeral.
            message = self.server.edit_message(original, {k: v for k, v in body.json.items() if k != "flags"},
                                               body.files)
        else:
            message = self._response_message(record, body.json, body.files, followup=True)
        record.followups.append(message)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(wire(message))
        return no_content()

    async def get_webhook_message(self, params: dict, body: Body, request: web.Request) -> web.Response:
        return json_response(wire(self._webhook_message(self._webhook_record(params), params["message"])))

    async def edit_webhook_message(self, params: dict, body: Body, request: web.Request) -> web.Response:
        record = self._webhook_record(params)
        message = self._webhook_message(record, params["message"])
        self.server.edit_message(message, body.json, body.files)
        record.edits.append({"message_id": message["id"], "payload": body.json,
                             "files": [f.filename for f in body.files.values()]})
        return json_response(wire(message))

    async def delete_webhook_message(self, params: dict, body: Body, request: web.Request) -> web.Response:
        record = self._webhook_record(params)
        self.server.delete_message(self._webhook_message(record, params["message"]))
        return no_content()

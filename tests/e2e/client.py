"""Guild members driven by tests: each action reaches the bot the way Discord would deliver it.

    alice = Member(server, "alice")
    record = await alice.slash("imagine", prompt="cat", count=2, image=server.attachment("in.png", png))
    await server.wait_for(lambda: record.original and record.original["attachments"])

Slash options are typed from the schema the bot synced, so a test cannot send an option the bot never
declared. Values are passed through unchanged (out-of-range values included: that is the bot's job).
"""

from __future__ import annotations

import re
from typing import Any

from tests.e2e.fake_discord import FakeDiscord, InteractionRecord
from tests.e2e.fake_rest import public, wire

CHAT_INPUT, USER_MENU, MESSAGE_MENU = 1, 2, 3
SUBCOMMAND, GROUP, USER, CHANNEL, ROLE, MENTIONABLE, ATTACHMENT = 1, 2, 6, 7, 8, 9, 11


class Member:
    """A member of the fake guild. ``admin`` gives the Manage Guild permission."""

    def __init__(self, server: FakeDiscord, name: str = "member", *, admin: bool = False, locale: str = "en-US",
                 user_id: str | None = None) -> None:
        self.server = server
        self.locale = locale
        self.payload = server.add_member(name, admin=admin, user_id=user_id)

    @property
    def id(self) -> str:
        return self.payload["user"]["id"]

    @property
    def name(self) -> str:
        return self.payload["user"]["username"]

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def _interaction(self, kind: int, channel_id: str | None, data: dict, **extra: Any) -> InteractionRecord:
        server = self.server
        channel = server.channels[channel_id or server.channel_id]
        member = {**self.payload, "permissions": str(server.permissions_of(self.payload))}
        return server.send_interaction({
            "type": kind, "data": data, "guild_id": server.guild_id,
            "guild": {"id": server.guild_id, "locale": "en-US", "features": []},
            "channel_id": channel["id"], "channel": channel, "member": member,
            "app_permissions": str(server.permissions_of(server.members[server.application_id])),
            "locale": self.locale, "guild_locale": "en-US", "entitlements": [], "entitlement_sku_ids": [],
            "authorizing_integration_owners": {"0": server.guild_id}, "context": 0,
            "attachment_size_limit": server.attachment_size_limit, **extra})

    # -- application commands --------------------------------------------------------------------

    async def slash(self, command: str, *, where: str | None = None, **options: Any) -> InteractionRecord:
        """Run ``/command`` (``"queue cancel"`` for a subcommand) in channel ``where`` (default: general)."""
        return self._interaction(2, where, self._command_data(command, options, focused=None))

    async def autocomplete(self, command: str, focused: str, *, where: str | None = None,
                           **options: Any) -> InteractionRecord:
        """Type into option ``focused`` of ``/command``; the bot answers with callback type 8."""
        return self._interaction(4, where, self._command_data(command, options, focused=focused))

    async def context_menu(self, name: str, target: dict | Member) -> InteractionRecord:
        """Apps > ``name`` on a message (a stored message dict) or on a member."""
        server = self.server
        if isinstance(target, Member):
            cmd, guild = server.find_command(name, USER_MENU)
            resolved = {"users": {target.id: target.payload["user"]},
                        "members": {target.id: {k: v for k, v in target.payload.items() if k != "user"}}}
            data = {"id": cmd["id"], "name": name, "type": USER_MENU, "target_id": target.id, "resolved": resolved}
            channel_id = None
        else:
            cmd, guild = server.find_command(name, MESSAGE_MENU)
            data = {"id": cmd["id"], "name": name, "type": MESSAGE_MENU, "target_id": target["id"],
                    "resolved": {"messages": {target["id"]: wire(target)}}}
            channel_id = target["channel_id"]
        if guild is not None:
            data["guild_id"] = guild
        return self._interaction(2, channel_id, data)

    def _command_data(self, command: str, values: dict[str, Any], focused: str | None) -> dict:
        root, *path = command.split()
        cmd, guild = self.server.find_command(root, CHAT_INPUT)
        schema = cmd.get("options") or []
        chain = []
        for name in path:  # walk down subcommand groups and subcommands
            sub = next((o for o in schema if o["name"] == name and o["type"] in (SUBCOMMAND, GROUP)), None)
            if sub is None:
                raise AssertionError(f"/{root} has no subcommand {name!r}")
            chain.append(sub)
            schema = sub.get("options") or []
        resolved: dict[str, dict] = {}
        options = self._options(command, schema, values, focused, resolved)
        for sub in reversed(chain):
            options = [{"name": sub["name"], "type": sub["type"], "options": options}]
        data = {"id": cmd["id"], "name": root, "type": CHAT_INPUT, "options": options}
        if resolved:
            data["resolved"] = resolved
        if guild is not None:
            data["guild_id"] = guild
        return data

    def _options(self, command: str, schema: list[dict], values: dict[str, Any], focused: str | None,
                 resolved: dict[str, dict]) -> list[dict]:
        by_name = {o["name"]: o for o in schema}
        if focused is None:
            missing = [o["name"] for o in schema if o.get("required") and o["name"] not in values]
            if missing:
                raise AssertionError(f"/{command} needs {missing}: Discord would not send it without them")
        out = []
        for name, value in values.items():
            spec = by_name.get(name)
            if spec is None:
                raise AssertionError(f"/{command} has no option {name!r}; synced options: {sorted(by_name)}")
            kind = spec["type"]
            if kind == ATTACHMENT:
                resolved.setdefault("attachments", {})[value["id"]] = public(value)
                value = value["id"]
            elif kind in (USER, MENTIONABLE) and isinstance(value, Member):
                resolved.setdefault("users", {})[value.id] = value.payload["user"]
                resolved.setdefault("members", {})[value.id] = {k: v for k, v in value.payload.items() if k != "user"}
                value = value.id
            elif kind in (CHANNEL, ROLE) and isinstance(value, dict):
                resolved.setdefault("channels" if kind == CHANNEL else "roles", {})[value["id"]] = value
                value = value["id"]
            option = {"name": name, "type": kind, "value": value}
            if name == focused:
                option["focused"] = True
            out.append(option)
        return out

    # -- components and modals -------------------------------------------------------------------

    async def click(self, message: dict, custom_id: str) -> InteractionRecord:
        """Press the button ``custom_id`` on ``message``."""
        return self._component(message, custom_id, {})

    async def select(self, message: dict, custom_id: str, values: list[str]) -> InteractionRecord:
        """Pick ``values`` in the select menu ``custom_id`` on ``message``."""
        return self._component(message, custom_id, {"values": values})

    def _component(self, message: dict, custom_id: str, extra: dict) -> InteractionRecord:
        found = {c.get("custom_id"): c for c in _walk(message.get("components") or [])}
        if custom_id not in found:
            raise AssertionError(f"message {message['id']} has no component {custom_id!r}; it has {sorted(found, key=str)}")
        data = {"custom_id": custom_id, "component_type": found[custom_id]["type"], **extra}
        return self._interaction(3, message["channel_id"], data, message=wire(message))

    async def submit_modal(self, shown: InteractionRecord, values: dict[str, str]) -> InteractionRecord:
        """Fill in and submit the modal the bot showed in answer to ``shown`` (callback type 9)."""
        modal = next((c["data"] for c in shown.callbacks if c["type"] == 9), None)
        if modal is None:
            raise AssertionError(f"the bot showed no modal for interaction {shown.id}: {shown.callbacks}")
        inputs = {c.get("custom_id") for c in _walk(modal["components"]) if c["type"] == 4}
        unknown = set(values) - inputs
        if unknown:
            raise AssertionError(f"the modal has no text inputs {sorted(unknown)}; it has {sorted(inputs, key=str)}")
        components = [_submitted(row, values) for row in modal["components"]]
        extra = {"message": shown.payload["message"]} if "message" in shown.payload else {}
        data = {"custom_id": modal["custom_id"], "components": components}
        return self._interaction(5, shown.payload["channel_id"], data, **extra)

    # -- messages and reactions ------------------------------------------------------------------

    async def post_message(self, content: str = "", attachments: list[dict] | tuple[dict, ...] = (), *,
                           where: str | None = None, reply_to: dict | None = None) -> dict:
        """Post a message (attachments from ``server.attachment``); the bot gets MESSAGE_CREATE."""
        payload: dict[str, Any] = {"content": content}
        if reply_to is not None:
            payload["message_reference"] = {"message_id": reply_to["id"], "channel_id": reply_to["channel_id"],
                                            "guild_id": self.server.guild_id}
        return self.server.create_message(where or self.server.channel_id, payload, author=self.payload["user"],
                                          attachments=list(attachments), member=self.payload, validate=False)

    async def react(self, message: dict, emoji: str) -> None:
        """Add ``emoji`` (unicode, or ``name:id`` for a custom one); the bot gets MESSAGE_REACTION_ADD."""
        self.server.set_reaction(message, emoji, self.id, added=True, member=self.payload)

    async def unreact(self, message: dict, emoji: str) -> None:
        self.server.set_reaction(message, emoji, self.id, added=False)


def _walk(components: list[dict]) -> list[dict]:
    out = []
    for component in components:
        out.append(component)
        out += _walk(component.get("components") or [])
        if "component" in component:  # a label (type 18) wraps one component
            out += _walk([component["component"]])
    return out


def _submitted(component: dict, values: dict[str, str]) -> dict:
    """A modal component as Discord sends it back: same layout, text inputs carry their value."""
    if component["type"] == 4:
        return {"type": 4, "id": component.get("id"), "custom_id": component["custom_id"],
                "value": values.get(component["custom_id"], component.get("value") or "")}
    if component["type"] == 18:
        return {"type": 18, "id": component.get("id"), "component": _submitted(component["component"], values)}
    if component["type"] == 1:
        return {"type": 1, "components": [_submitted(c, values) for c in component["components"]]}
    return {k: v for k, v in component.items() if k in ("type", "id", "custom_id", "values", "content")}


def pings(server: FakeDiscord, message: dict) -> list[str]:
    """Who Discord would notify for ``message`` given its content and ``allowed_mentions``.

    Returns entries like ``"@everyone"``, ``"@here"``, ``"user:<id>"``, ``"role:<id>"``, ``"reply:<id>"``;
    an empty list means nobody is pinged. Role mentionability is ignored (errs towards "pinged").
    """
    content = message.get("content") or ""
    allowed = message.get("allowed_mentions")
    parse = {"everyone", "users", "roles"} if allowed is None else set(allowed.get("parse") or [])
    users = {str(u) for u in (allowed or {}).get("users") or []}
    roles = {str(r) for r in (allowed or {}).get("roles") or []}
    out = [token for token in ("@everyone", "@here") if token in content and "everyone" in parse]
    out += [f"user:{uid}" for uid in re.findall(r"<@!?(\d+)>", content) if "users" in parse or uid in users]
    out += [f"role:{rid}" for rid in re.findall(r"<@&(\d+)>", content) if "roles" in parse or rid in roles]
    reference = message.get("message_reference")
    if reference and (allowed is None or allowed.get("replied_user")):
        replied = server.messages_by_id.get(str(reference.get("message_id")))
        if replied is not None:
            out.append(f"reply:{replied['author']['id']}")
    return out

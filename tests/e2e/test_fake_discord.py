"""Self-tests of the fake Discord: a small real discord.py bot (sample_bot.py) runs through the launcher as a
subprocess and talks to the fake over loopback; the tests act as members and assert on what the fake got.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.e2e.client import Member, pings
from tests.e2e.fake_discord import EPHEMERAL, LOADING, FakeDiscord, InteractionRecord
from tests.e2e.fake_gateway import GUILD_MESSAGES, IDENTIFY, MESSAGE_CONTENT, RESUME, visible
from tests.e2e.launcher import BotProcess, start_bot_process
from tests.e2e.launcher import main as launcher_main

SAMPLE_BOT = Path(__file__).with_name("sample_bot.py")


@pytest.fixture
async def bot(server: FakeDiscord, tmp_path: Path) -> AsyncIterator[BotProcess]:
    process = await start_bot_process(SAMPLE_BOT, rest=server.rest_url, gateway=server.gateway_url, cwd=tmp_path,
                                      env={"DISCORD_TOKEN": server.token, "SAMPLE_GUILD_ID": server.guild_id},
                                      log_path=tmp_path / "bot.log")
    server.add_watchdog(process.crash_report)
    try:
        await server.wait_logged_in()
        yield process
    finally:
        await process.stop()
    process.assert_no_traceback()


@pytest.fixture
def alice(server: FakeDiscord) -> Member:
    return Member(server, "alice")


async def api(server: FakeDiscord, method: str, path: str, **kwargs) -> tuple[int, Any, Any]:
    """One REST call as the bot would make it (with its token)."""
    headers = {"Authorization": f"Bot {server.token}", **kwargs.pop("headers", {})}
    async with aiohttp.ClientSession() as session, session.request(
            method, server.rest_url + path, headers=headers, **kwargs) as response:
        body = await response.json(content_type=None) if response.status != 204 else None
        return response.status, body, response.headers


def png_text(data: bytes) -> str:
    return Image.open(io.BytesIO(data)).text["echo"]


async def echo(server: FakeDiscord, member: Member, text: str) -> InteractionRecord:
    record = await member.slash("echo", text=text)
    await server.wait_for(lambda: record.followups, what=f"the followup to /echo {text}")
    return record


# -- with the sample bot ---------------------------------------------------------------------------


async def test_login_syncs_commands_with_their_options(server: FakeDiscord, bot: BotProcess) -> None:
    await bot.wait_for_log("sample bot ready in 1 guild(s)")  # discord.py parsed READY and GUILD_CREATE
    assert server.gateway.ops(IDENTIFY)[0]["token"] == server.token
    assert server.gateway.sent("READY")[0]["application"]["id"] == server.application_id
    global_commands = {c["name"]: c for c in server.commands[None]}
    assert set(global_commands) == {"echo", "rename", "Shout"}
    [text] = global_commands["echo"]["options"]
    assert (text["name"], text["type"], text["required"], text["autocomplete"]) == ("text", 3, True, True)
    assert global_commands["Shout"]["type"] == 3
    assert [c["name"] for c in server.commands[server.guild_id]] == ["ping"]


async def test_slash_defers_then_followup_carries_file_and_button(server: FakeDiscord, bot: BotProcess,
                                                                  alice: Member) -> None:
    record = await echo(server, alice, "hello <@&1> @everyone")
    assert record.response_type == 5
    message = record.followups[0]
    assert message is record.original and not message["flags"] & LOADING  # it filled the thinking message
    assert message["content"] == "echo: hello <@&1> @everyone"
    assert message["allowed_mentions"] == {"parse": []} and pings(server, message) == []
    assert message["components"][0]["components"][0]["custom_id"] == "sample:again"
    [attachment] = message["attachments"]
    assert png_text(attachment["data"]) == "hello <@&1> @everyone"
    async with aiohttp.ClientSession() as session, session.get(attachment["url"]) as response:
        assert await response.read() == attachment["data"]
    assert message in server.channel_messages()


async def test_button_click_edits_the_message(server: FakeDiscord, bot: BotProcess, alice: Member) -> None:
    message = (await echo(server, alice, "hi")).followups[0]
    click = await alice.click(message, "sample:again")
    await server.wait_for(lambda: message["content"] == "clicked by alice", what="the edited message")
    assert click.response_type == 7 and click.original is message
    assert message["components"] == [] and message["edited_timestamp"] is not None


async def test_reaction_and_member_upload_reach_the_bot(server: FakeDiscord, bot: BotProcess, alice: Member) -> None:
    message = (await echo(server, alice, "hi")).followups[0]
    await alice.react(message, "🔁")
    await server.wait_for(lambda: any(m["content"] == f"saw 🔁 from {alice.id}" for m in server.channel_messages()),
                          what="the bot's answer to the reaction")
    await server.wait_for(lambda: any(r["me"] and r["emoji"]["name"] == "👀" for r in message["reactions"]),
                          what="the bot's own reaction")
    upload = server.attachment("cat.png", b"\x89PNG\r\n\x1a\n" + bytes(40))
    await alice.post_message("look", [upload])
    await server.wait_for(lambda: any(m["content"] == "got 48 bytes in cat.png" for m in server.channel_messages()),
                          what="the bot reading the member's attachment from the file server")


async def test_context_menu_modal_autocomplete_and_guild_command(server: FakeDiscord, bot: BotProcess,
                                                                 alice: Member) -> None:
    posted = await alice.post_message("quiet words")
    shout = await alice.context_menu("Shout", posted)
    await server.wait_for(lambda: shout.original, what="the context menu answer")
    assert shout.original["content"] == "QUIET WORDS" and shout.original["flags"] & EPHEMERAL
    assert shout.original not in server.channel_messages()

    rename = await alice.slash("rename")
    await server.wait_for(lambda: rename.callbacks, what="the modal")
    assert rename.response_type == 9
    submitted = await alice.submit_modal(rename, {"name": "Bob"})
    await server.wait_for(lambda: submitted.original, what="the modal answer")
    assert submitted.original["content"] == "renamed to Bob"

    typing = await alice.autocomplete("echo", "text", text="ca")
    await server.wait_for(lambda: typing.callbacks, what="autocomplete choices")
    assert typing.callbacks[0] == {"type": 8, "data": {"choices": [{"name": "ca", "value": "ca"},
                                                                   {"name": "CA", "value": "CA"}]}, "files": []}

    ping = await alice.slash("ping")
    await server.wait_for(lambda: any(m["content"] == "pong by DM" for m in server.messages_by_id.values()),
                          what="the DM")
    assert ping.payload["data"]["guild_id"] == server.guild_id and ping.original["flags"] & EPHEMERAL


async def test_429_on_the_followup_is_retried(server: FakeDiscord, bot: BotProcess, alice: Member) -> None:
    server.fail_next("POST", "/webhooks/*", status=429, retry_after=0.2)
    record = await echo(server, alice, "again")
    statuses = [s for m, p, _, s in server.requests if m == "POST" and p.startswith("/webhooks/")]
    assert statuses == [429, 200]
    assert record.followups[0]["content"] == "echo: again"
    assert "rate limited" in bot.log()


async def test_dropped_gateway_resumes_and_replays_missed_events(server: FakeDiscord, bot: BotProcess,
                                                                 alice: Member) -> None:
    await server.drop_gateway()
    missed = await alice.slash("echo", text="sent while disconnected")
    await server.wait_for(lambda: missed.followups, what="the replayed interaction's followup")
    assert len(server.gateway.ops(RESUME)) == 1 and len(server.gateway.ops(IDENTIFY)) == 1
    assert len(server.gateway.sent("RESUMED")) == 1
    await echo(server, alice, "after the resume")


async def test_expired_token_makes_the_bot_post_to_the_channel(server: FakeDiscord, bot: BotProcess,
                                                              alice: Member) -> None:
    done = await echo(server, alice, "early")
    server.expire_interaction_tokens()
    status, body, _ = await api(server, "PATCH", f"/webhooks/{server.application_id}/{done.token}/messages/@original",
                                json={"content": "too late"})
    assert (status, body["code"]) == (401, 50027)

    server.expire_tokens_after_ack()
    record = await alice.slash("echo", text="late")
    fallback = await server.wait_for(
        lambda: next((m for m in server.channel_messages() if m["content"] == "echo (token expired): late"), None),
        what="the fallback channel message")
    assert png_text(fallback["attachments"][0]["data"]) == "late"
    assert record.followups == [] and record.original["flags"] & LOADING
    assert ("POST", f"/webhooks/{server.application_id}/{record.token}", "wait=1&with_components=1", 401) \
        in server.requests


# -- the fake on its own ---------------------------------------------------------------------------


async def test_rest_routes_answer_like_discord(server: FakeDiscord) -> None:
    channel = f"/channels/{server.channel_id}/messages"
    status, first, headers = await api(server, "POST", channel, json={"content": "one"})
    assert status == 200 and headers["Content-Type"] == "application/json"
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("payload_json", '{"content": "two", "attachments": [{"id": 0, "filename": "a.txt"}]}')
    form.add_field("files[0]", b"abc", filename="a.txt", content_type="application/octet-stream")
    status, second, _ = await api(server, "POST", channel, data=form)
    assert status == 200 and server.files[second["attachments"][0]["id"]] == (b"abc", "text/plain")
    _, third, _ = await api(server, "POST", channel, json={"content": "three"})
    _, newest, _ = await api(server, "GET", channel + "?limit=2")
    assert [m["content"] for m in newest] == ["three", "two"]
    _, after, _ = await api(server, "GET", f"{channel}?after={first['id']}&limit=1")
    assert [m["content"] for m in after] == ["two"]
    status, edited, _ = await api(server, "PATCH", f"{channel}/{third['id']}", json={"content": "3"})
    assert edited["content"] == "3" and edited["edited_timestamp"]
    assert (await api(server, "PUT", f"{channel}/{first['id']}/reactions/%F0%9F%94%81/@me"))[0] == 204
    assert server.messages_by_id[first["id"]]["reactions"][0]["emoji"]["name"] == "🔁"
    assert (await api(server, "DELETE", f"{channel}/{third['id']}"))[0] == 204
    assert (await api(server, "GET", f"{channel}/{third['id']}"))[1]["code"] == 10008
    assert (await api(server, "POST", channel, json={"content": "x" * 2001}))[1]["code"] == 50035
    assert (await api(server, "POST", channel, json={"content": ""}))[1]["code"] == 50006
    member = Member(server, "bob")
    _, dm, _ = await api(server, "POST", "/users/@me/channels", json={"recipient_id": member.id})
    assert dm["type"] == 1 and (await api(server, "POST", f"/channels/{dm['id']}/messages", json={"content": "hi"}))[0] == 200
    assert (await api(server, "GET", f"/guilds/{server.guild_id}"))[1]["roles"] == server.roles
    assert (await api(server, "GET", f"/guilds/{server.guild_id}/members/{member.id}"))[1]["user"]["username"] == "bob"
    assert (await api(server, "GET", "/users/@me", headers={"Authorization": "Bot wrong"}))[0] == 401


async def test_injected_429_carries_what_discord_py_needs(server: FakeDiscord) -> None:
    server.fail_next("GET", "/users/@me", status=429, retry_after=0.5)
    status, body, headers = await api(server, "GET", "/users/@me")
    assert status == 429 and headers["Via"] and body == {"message": "You are being rate limited.",
                                                          "retry_after": 0.5, "global": False}
    assert (await api(server, "GET", "/users/@me"))[0] == 200  # only the next one


async def test_an_injected_fault_can_wait_for_a_named_upload(server: FakeDiscord) -> None:
    channel = f"/channels/{server.channel_id}/messages"
    server.fail_next("POST", "/channels/*/messages", status=429, retry_after=0.1, upload="result-*")

    def with_file(name: str) -> aiohttp.FormData:
        form = aiohttp.FormData(quote_fields=False)
        form.add_field("payload_json", '{"content": "file"}')
        form.add_field("files[0]", b"abc", filename=name, content_type="application/octet-stream")
        return form

    assert (await api(server, "POST", channel, json={"content": "no file"}))[0] == 200
    assert (await api(server, "POST", channel, data=with_file("preview.png")))[0] == 200
    assert (await api(server, "POST", channel, data=with_file("result-1.png")))[0] == 429
    assert (await api(server, "POST", channel, data=with_file("result-1.png")))[0] == 200


async def test_an_enforced_nonce_returns_the_earlier_message_within_its_window(server: FakeDiscord) -> None:
    channel = f"/channels/{server.channel_id}/messages"
    once = {"content": "once", "nonce": "job-1", "enforce_nonce": True}
    _, first, _ = await api(server, "POST", channel, json=once)
    _, again, _ = await api(server, "POST", channel, json=once)
    assert again["id"] == first["id"] and [m["content"] for m in server.channel_messages()] == ["once"]
    _, loose, _ = await api(server, "POST", channel, json={"content": "twice", "nonce": "job-1"})
    assert loose["id"] != first["id"]  # without enforce_nonce a nonce only comes back
    server.nonce_window_s = 0.0  # the window has passed
    _, late, _ = await api(server, "POST", channel, json=once)
    assert late["id"] not in (first["id"], loose["id"])


async def test_a_held_request_is_carried_out_and_its_answer_kept_back(server: FakeDiscord) -> None:
    channel = f"/channels/{server.channel_id}/messages"
    release = server.hold_next("POST", "/channels/*/messages")
    call = asyncio.ensure_future(api(server, "POST", channel, json={"content": "held"}))
    await server.wait_for(lambda: server.held, what="the held request")
    assert [m["content"] for m in server.channel_messages()] == ["held"] and not call.done()
    release.set()
    assert (await call)[0] == 200
    assert (await api(server, "POST", channel, json={"content": "free"}))[0] == 200  # only the next one


async def test_a_reply_keeps_its_reference_as_discord_stores_it(server: FakeDiscord) -> None:
    channel = f"/channels/{server.channel_id}/messages"
    _, first, _ = await api(server, "POST", channel, json={"content": "one"})
    reference = {"message_id": int(first["id"]), "channel_id": int(server.channel_id), "fail_if_not_exists": False}
    _, reply, _ = await api(server, "POST", channel, json={"content": "two", "message_reference": reference})
    assert reply["message_reference"] == {"type": 0, "message_id": first["id"], "channel_id": server.channel_id,
                                          "guild_id": server.guild_id}


async def test_unknown_routes_are_recorded_and_fail_the_check(server: FakeDiscord) -> None:
    status, body, _ = await api(server, "GET", "/voice/regions")
    assert status == 404 and server.unknown_routes == ["GET /voice/regions"]
    with pytest.raises(AssertionError, match="GET /voice/regions"):
        server.assert_clean()
    server.unknown_routes.clear()


async def test_member_actions_are_checked_against_the_synced_schema(server: FakeDiscord, alice: Member) -> None:
    with pytest.raises(AssertionError, match="no command 'imagine'"):
        await alice.slash("imagine", prompt="cat")
    server.commands[None] = [{"id": "1", "name": "echo", "type": 1,
                              "options": [{"name": "text", "type": 3, "required": True}]}]
    with pytest.raises(AssertionError, match="no option 'colour'"):
        await alice.slash("echo", text="x", colour="red")
    with pytest.raises(AssertionError, match=r"needs \['text'\]"):
        await alice.slash("echo")


async def test_launcher_reports_a_crashing_script(server: FakeDiscord, tmp_path: Path) -> None:
    script = tmp_path / "crash.py"
    script.write_text("import sys, discord.http\nprint(discord.http.Route.BASE, sys.argv[1:])\nraise SystemExit(1 / 0)\n")
    process = await start_bot_process(script, ["--flag"], rest=server.rest_url, gateway=server.gateway_url,
                                      log_path=tmp_path / "crash.log")
    assert await process.process.wait() == 1
    assert f"{server.rest_url} ['--flag']" in process.log()
    assert "exited with code 1" in process.crash_report()
    with pytest.raises(AssertionError, match="ZeroDivisionError"):
        process.assert_no_traceback()
    server.add_watchdog(process.crash_report)
    with pytest.raises(AssertionError, match="exited with code 1"):
        await server.wait_for(lambda: False, timeout=30, what="a message that never comes")


def test_launcher_needs_a_script_after_the_separator(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        launcher_main(["--rest", "http://x/api/v10", "--gateway", "ws://x/"])
    assert exc.value.code == 2 and "give the bot script after '--'" in capsys.readouterr().err


def test_events_follow_the_bot_intents() -> None:
    msg = {"id": "1", "guild_id": "9", "author": {"id": "5"}, "content": "hi", "attachments": [{"id": "2"}],
           "embeds": [], "components": []}
    assert visible("MESSAGE_CREATE", msg, 0, "7") is None
    blanked = visible("MESSAGE_CREATE", msg, GUILD_MESSAGES, "7")
    assert blanked["content"] == "" and blanked["attachments"] == []  # no Message Content intent
    assert visible("MESSAGE_CREATE", {**msg, "content": "<@7> hi"}, GUILD_MESSAGES, "7")["content"] == "<@7> hi"
    assert visible("MESSAGE_CREATE", msg, GUILD_MESSAGES | MESSAGE_CONTENT, "7") == msg
    assert visible("MESSAGE_REACTION_ADD", {"guild_id": "9"}, GUILD_MESSAGES, "7") is None
    assert visible("INTERACTION_CREATE", {"id": "3"}, 0, "7") == {"id": "3"}


def test_pings_follow_allowed_mentions() -> None:
    server = FakeDiscord()
    message = {"content": "@everyone <@1> <@&2>", "allowed_mentions": None}
    assert pings(server, message) == ["@everyone", "user:1", "role:2"]
    assert pings(server, {**message, "allowed_mentions": {"parse": [], "users": ["1"]}}) == ["user:1"]
    assert pings(server, {**message, "allowed_mentions": {"parse": ["roles"]}}) == ["role:2"]


async def test_wait_for_names_what_never_came(server: FakeDiscord) -> None:
    with pytest.raises(AssertionError, match="timed out after 0 s waiting for the moon"):
        await server.wait_for(lambda: False, timeout=0.1, what="the moon")

"""The poster's words and rules without Discord: failure and result captions, message nonces, which
failures are tried again, how long to wait, interaction tokens' lifetime, missing permissions."""

from __future__ import annotations

import errno
import socket
import sqlite3
import time
from types import SimpleNamespace

import aiohttp
import discord

from cogs.utils import posting
from cogs.utils.result_text import caption, failure_text
from inference.executor import internal_error_message
from inference.jobs import TextToImageJob


def test_a_failure_shows_its_reason_as_plain_text_and_the_job_id_once() -> None:
    text = failure_text(internal_error_message(), "abc123")
    assert text.count("abc123") == 1 and text.endswith("job `abc123`")
    assert "\\`" not in text and "Something went wrong" in text
    quoted = failure_text("There is no LoRA `x_y` here.", "abc123")
    assert "\\`" not in quoted and "LoRA x\\_y" in quoted  # the member's words stay inert, without code marks


def job(prompt: str) -> TextToImageJob:
    return TextToImageJob(job_id="abc123", owner=7, prompt=prompt, width=64, height=64, steps=2, model="tiny", seed=1)


def test_an_empty_prompt_is_not_captioned_as_empty_bold() -> None:
    assert "****" not in caption(job(""), [1], 1.0)
    assert caption(job(" "), [1], 1.0).startswith("*(no prompt)* for <@7>")
    assert caption(job("a cat"), [1], 1.0).startswith("**a cat** for <@7>")


def test_nonces_are_the_same_for_the_same_post_and_differ_for_another() -> None:
    first = posting.nonce_for("abc123", None)
    assert first == posting.nonce_for("abc123", None) and len(first) <= 25
    assert len({first, posting.nonce_for("abc123", 99), posting.nonce_for("def456", None)}) == 3


class Response(SimpleNamespace):
    pass


def http_error(kind: type[discord.HTTPException], status: int, code: int = 0) -> discord.HTTPException:
    return kind(Response(status=status, reason="x"), {"code": code, "message": "m"})


def test_failures_are_retried_refused_or_blamed_on_permissions() -> None:
    assert posting.classify(http_error(discord.DiscordServerError, 503)) == "retry"
    assert posting.classify(http_error(discord.HTTPException, 429)) == "retry"
    assert posting.classify(ConnectionResetError("connection reset")) == "retry"
    assert posting.classify(aiohttp.ClientOSError(104, "reset by peer")) == "retry"
    assert posting.classify(socket.gaierror(-3, "Temporary failure in name resolution")) == "retry"
    assert posting.classify(TimeoutError()) == "retry"
    assert posting.classify(OSError(errno.ENETUNREACH, "Network is unreachable")) == "retry"
    assert posting.classify(sqlite3.OperationalError("database is locked")) == "retry"
    assert posting.classify(http_error(discord.Forbidden, 403, 50013)) == "permission"
    assert posting.classify(http_error(discord.HTTPException, 400, 50035)) == "refused"
    assert posting.classify(RuntimeError("a bug")) == "refused"


def test_a_file_that_cannot_be_read_is_not_taken_for_the_network() -> None:
    """No wait brings back a result file deleted from outputs/ or one easel may not read: it is not
    retried without end like Discord's and the network's failures."""
    missing = FileNotFoundError(2, "No such file or directory", "outputs/ab/ab.png")
    for error in (missing, PermissionError(13, "Permission denied"), OSError(5, "Input/output error")):
        assert posting.classify(error) == "refused" and not posting.from_discord(error)


def test_retry_waits_double_up_to_the_longest() -> None:
    assert [posting.retry_delay(n, 5, 60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def row(**kw: object) -> SimpleNamespace:
    base = {"interaction_token": "tok", "application_id": 1, "interaction_id": None, "created_at": time.time()}
    return SimpleNamespace(**{**base, **kw})


def test_an_interaction_token_is_trusted_for_a_little_under_15_minutes() -> None:
    now = time.time()
    assert posting.token_alive(row(created_at=now - 60), now)  # type: ignore[arg-type]
    assert not posting.token_alive(row(created_at=now - 14.5 * 60), now)  # type: ignore[arg-type]
    assert not posting.token_alive(row(interaction_token=None), now)  # type: ignore[arg-type]
    snowflake = discord.utils.time_snowflake(discord.utils.utcnow())  # the interaction's own clock wins
    assert posting.token_alive(row(interaction_id=snowflake, created_at=0.0), now)  # type: ignore[arg-type]


def test_missing_permissions_are_named_as_discord_shows_them() -> None:
    perms = discord.Permissions(view_channel=True, send_messages=True, read_message_history=True)
    channel = SimpleNamespace(guild=SimpleNamespace(me=object()), permissions_for=lambda member: perms)
    assert posting.missing_permissions(channel) == ["Attach Files"]
    assert posting.missing_permissions(SimpleNamespace()) == []  # a DM: the cache cannot tell

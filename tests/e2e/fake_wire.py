"""The fake Discord's REST wire format: error answers, request bodies (JSON or multipart uploads), JSON
responses, and ``wire``, which turns a stored message into what Discord sends.

Every answer is JSON with exactly ``Content-Type: application/json`` (discord.py checks it verbatim).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web


class ApiError(Exception):
    """An error answer the way Discord words it: HTTP status plus a JSON error code and message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Upload:
    """One ``files[n]`` part of a multipart request."""

    filename: str
    data: bytes


@dataclass
class Body:
    json: Any
    files: dict[int, Upload]


Handler = Callable[[dict[str, str], Body, web.Request], Awaitable[web.Response]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, content_type="application/json")


def no_content() -> web.Response:
    return web.Response(status=204)


def public(attachment: dict) -> dict:
    """An attachment as Discord sends it: the bytes stay on the fake, behind its ``url``."""
    return {k: v for k, v in attachment.items() if k != "data"}


def wire(message: dict) -> dict:
    """A stored message as Discord sends it."""
    return {**message, "attachments": [public(a) for a in message.get("attachments", [])]}


def _compile(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template))


async def read_body(request: web.Request) -> Body:
    """JSON, or multipart with ``payload_json`` and ``files[n]`` the way discord.py uploads files."""
    if request.content_type.startswith("multipart/"):
        payload: Any = {}
        files: dict[int, Upload] = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if part.name == "payload_json":
                payload = json.loads(await part.text())
            elif (match := re.fullmatch(r"files\[(\d+)\]", part.name or "")) is not None:
                data = bytes(await part.read(decode=False))
                files[int(match[1])] = Upload(part.filename or f"file{match[1]}", data)
            else:
                raise ApiError(400, 50035, f"Invalid Form Body: unexpected multipart field {part.name!r}")
        return Body(payload, files)
    raw = await request.read()
    return Body(json.loads(raw) if raw else {}, {})

"""A loopback HTTP server that answers like the Hugging Face Inference API (hf-inference protocol).

``InferenceClient(base_url=...)`` POSTs straight to the given URL: text-to-image as
``{"inputs": prompt, "parameters": {...}}``, image-to-image as ``{"inputs": <base64 image>,
"parameters": {...}}``. By default the server answers with a PNG of the requested size whose
colour encodes the seed, so a test can tell which request made which image. Tests script faults
with :meth:`FakeInferenceAPI.expect`: each queued :class:`Reply` answers one request, in order.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

PATH = "/v1/generate"
HOLD_LIMIT_S = 30.0  # a held request is released after this even if the test forgot it


def seed_colour(seed: int) -> tuple[int, int, int]:
    """The colour the fake paints for ``seed`` (distinct for small seeds)."""
    return (seed * 37) % 256, (seed * 91 + 40) % 256, (seed * 53 + 80) % 256


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class Reply:
    """One scripted answer. ``body=None`` means "the image the request asked for"."""

    status: int = 200
    body: bytes | None = None
    content_type: str = "image/png"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    hold: threading.Event | None = None  # answer only once the test sets it
    truncate: bool = False  # send only the first half of the image


def loading(estimated_time: float = 0.05) -> Reply:
    body = {"error": "Model stabilityai/sdxl-turbo is currently loading", "estimated_time": estimated_time}
    return Reply(503, json.dumps(body).encode(), "application/json")


def rate_limited(retry_after: str = "0") -> Reply:
    return Reply(429, json.dumps({"error": "Rate limit reached"}).encode(), "application/json",
                 headers={"Retry-After": retry_after})


def json_instead_of_image() -> Reply:
    return Reply(200, json.dumps({"generated_image": "not here"}).encode(), "application/json")


def error(status: int, message: str) -> Reply:
    return Reply(status, json.dumps({"error": message}).encode(), "application/json")


@dataclass(frozen=True)
class Seen:
    """A request as the server received it."""

    path: str
    headers: dict[str, str]
    payload: dict[str, Any]

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.payload.get("parameters") or {})

    @property
    def input_image(self) -> Image.Image:
        return Image.open(io.BytesIO(base64.b64decode(self.payload["inputs"])))


class FakeInferenceAPI:
    def __init__(self, *, token: str | None = None) -> None:
        self.token = token  # when set, requests without "Bearer <token>" get a 401
        self.seen: list[Seen] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-hf-api", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{PATH}"

    def start(self) -> FakeInferenceAPI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def expect(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else Reply()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body in two packets wait ~40 ms for an ACK

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server API
                return

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = json.loads(raw)
                except ValueError:
                    payload = {"raw": len(raw)}
                with api._lock:
                    api.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, payload))
                    api.active += 1
                    api.max_active = max(api.max_active, api.active)
                try:
                    self._answer(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout, shutdown)
                finally:
                    with api._lock:
                        api.active -= 1

            def _answer(self, payload: dict[str, Any]) -> None:
                if self.path != PATH:
                    return self._send(404, json.dumps({"error": "Not Found"}).encode(), "application/json")
                if api.token is not None and self.headers.get("Authorization") != f"Bearer {api.token}":
                    return self._send(401, json.dumps({"error": "Invalid credentials in Authorization header"})
                                      .encode(), "application/json")
                reply = api._next_reply()
                if reply.hold is not None:
                    reply.hold.wait(HOLD_LIMIT_S)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                body = reply.body if reply.body is not None else self._image_for(payload)
                if reply.truncate:
                    body = body[: len(body) // 2]
                self._send(reply.status, body, reply.content_type, reply.headers)

            def _image_for(self, payload: dict[str, Any]) -> bytes:
                params = payload.get("parameters") or {}
                size = params.get("target_size") or params
                width, height = int(size.get("width") or 64), int(size.get("height") or 64)
                return png(width, height, seed_colour(int(params.get("seed") or 0)))

            def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler

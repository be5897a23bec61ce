"""Turning what the Inference API (or the network) did into one message for the member.

A failed remote call ends as one of two things. :class:`Retry`: a 429, a 503 ("model is loading"),
another 5xx, a dropped connection or a body that is not an image; the retry loop may wait it out,
as long as the service asks for the waiting it is told to accept. :class:`RemoteError`: a
:class:`JobError` whose text the member sees as it is. What an admin needs (status code, the
server's own words, which setting to fix) goes to the log, not to the member.
"""

from __future__ import annotations

import email.utils
import time
from dataclasses import dataclass
from typing import Any

from huggingface_hub import InferenceTimeoutError
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from PIL import Image, UnidentifiedImageError

from inference.jobs import JobError

LOADING = "The model is still starting up on the image service. Please try again in a minute or two."
RATE_LIMITED = ("The image service is getting too many requests from this bot right now. "
                "Please try again in a few minutes.")
UNREACHABLE = "The image service cannot be reached right now. Please try again later."
NOT_AN_IMAGE = "The image service sent back something that is not an image. Please try again later."
TOKEN_REFUSED = ("The image service refused this bot's access token, so no images can be made right now. "
                 "The admins need to check it.")
NO_TOKEN = ("This bot has no access token for the image service, so no images can be made right now. "
            "The admins need to set it.")
OUT_OF_CREDITS = ("This bot has used up its allowance on the image service. Images can be made again once "
                  "the admins add credits.")
OFFLINE = ("This bot is set to work offline (HF_HUB_OFFLINE), so it cannot reach the image service. "
           "The admins need to unset it.")
SERVER_MESSAGE_CHARS = 200


class RemoteError(JobError):
    """A remote request failed for good; ``str()`` is for the member."""


class RemoteUnsupported(RemoteError):
    """The configured service cannot do this kind of job at all (e.g. inpainting)."""


class Retry(Exception):
    """A failure worth another attempt. ``message`` is the member's if the attempts run out;
    ``wait_s`` is what the service asked for (Retry-After, ``estimated_time``), None for backoff."""

    def __init__(self, message: str, wait_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.wait_s = wait_s


@dataclass(frozen=True)
class Context:
    """What the messages mention: the model as members know it, the timeout, the provider."""

    model: str
    timeout_s: float
    provider: str


def classify(exc: BaseException, ctx: Context) -> RemoteError | Retry | None:
    """The member-facing meaning of ``exc``, or None when it is not a remote failure (a bug)."""
    if isinstance(exc, RemoteError | Retry):
        return exc
    if isinstance(exc, OfflineModeIsEnabled):
        return RemoteError(OFFLINE)
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return _from_status(exc.response, ctx)
    if isinstance(exc, InferenceTimeoutError | TimeoutError):
        return RemoteError(f"The image service did not answer within {ctx.timeout_s:g} seconds. "
                           "Please try again later.")
    if isinstance(exc, UnidentifiedImageError | Image.DecompressionBombError):
        return Retry(NOT_AN_IMAGE)
    if is_transport_error(exc):
        return Retry(UNREACHABLE)
    if isinstance(exc, ValueError):
        return _from_client_refusal(str(exc), ctx)
    return None


def is_transport_error(exc: BaseException) -> bool:
    """Refused, reset or dropped connections, DNS failures. httpx, httpx2 and requests (which
    huggingface_hub used over the years) name their base classes differently; the names are stable."""
    if isinstance(exc, ConnectionError):
        return True
    return any(cls.__name__ in ("TransportError", "ConnectionError") for cls in type(exc).__mro__)


def _from_client_refusal(text: str, ctx: Context) -> RemoteError | None:
    """``InferenceClient`` raises ValueError before sending anything when it cannot build the request."""
    if "not supported" in text:
        if "Provider" in text:
            return RemoteError(f"This bot is set to use the image service provider {ctx.provider!r}, which it "
                               "does not know. The admins need to check remote.provider.")
        who = "The provider the image service picked" if ctx.provider == "auto" else f"The provider {ctx.provider!r}"
        return RemoteUnsupported(f"{who} cannot make this kind of image with {ctx.model}. /imagine may still work.")
    if "api_key" in text or "log in" in text:
        return RemoteError(NO_TOKEN)
    return None


def _from_status(response: Any, ctx: Context) -> RemoteError | Retry:
    status = int(response.status_code)
    said = server_message(response)
    asked = retry_after(response.headers)
    if status == 503:
        if "loading" in said.lower():
            return Retry(LOADING, asked if asked is not None else _estimated_time(response))
        return Retry("The image service is unavailable right now (HTTP 503). Please try again later.", asked)
    if status == 429:
        return Retry(RATE_LIMITED, asked)
    if status in (500, 502, 504):
        return Retry(f"The image service had a problem making this image (HTTP {status}). "
                     "Please try again later.", asked)
    if status == 401:
        return RemoteError(TOKEN_REFUSED)
    if status == 402:
        return RemoteError(OUT_OF_CREDITS)
    if status == 403:
        return RemoteError(f"This bot's access token may not use the model {ctx.model} on the image service. "
                           "The admins need to check its permissions.")
    if status == 404:
        return RemoteError(f"The image service does not offer the model {ctx.model}. "
                           "The admins need to check the configuration.")
    if status in (400, 413, 422):
        detail = f": {said}" if said else ""
        return RemoteError(f"The image service refused these settings{detail}. Try other options.")
    return RemoteError(f"The image service could not make this image (HTTP {status}). Please try again later.")


def server_message(response: Any) -> str:
    """The service's own explanation (``{"error": ...}`` or plain text), on one short line."""
    text: Any
    try:
        data = response.json()
    except ValueError:  # not JSON: the body is the message
        try:
            text = response.text
        except (ValueError, UnicodeDecodeError):
            text = ""
    else:
        text = (data.get("error") or data.get("message") or "") if isinstance(data, dict) else ""
        if isinstance(text, list):
            text = "; ".join(str(t) for t in text)
    text = " ".join(str(text).split()).replace("`", "'")
    return text if len(text) <= SERVER_MESSAGE_CHARS else text[: SERVER_MESSAGE_CHARS - 3] + "..."


def retry_after(headers: Any, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number, or an HTTP date (RFC 9110)."""
    value = (headers.get("Retry-After") or "").strip() if headers is not None else ""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _estimated_time(response: Any) -> float | None:
    """The ``estimated_time`` of the Inference API's "model is loading" answer."""
    try:
        value = response.json().get("estimated_time")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and value >= 0 else None

"""Retry timing decisions, reading the service's hints and the busy clock, without a server."""

from __future__ import annotations

import threading
from email.utils import formatdate

import pytest

from inference.remote.errors import RemoteError, Retry, is_transport_error, retry_after, server_message
from inference.remote.retry import RetryPolicy, Stopped, call_with_retries


def test_the_wait_doubles_is_capped_and_ends_with_the_retries() -> None:
    policy = RetryPolicy(retries=3, backoff_s=1.0, max_wait_s=3.0)
    first, second, third = (policy.wait_before(n, None) for n in (1, 2, 3))
    assert first is not None and 1.0 <= first <= 1.1
    assert second is not None and 2.0 <= second <= 2.2
    assert third == 3.0  # 4 s capped at max_wait_s
    assert policy.wait_before(4, None) is None


def test_the_services_hint_is_followed_unless_it_is_too_long() -> None:
    policy = RetryPolicy(retries=3, backoff_s=1.0, max_wait_s=30.0)
    assert policy.wait_before(1, 20.0) == 20.0
    assert policy.wait_before(1, 0.0) == 0.0
    assert policy.wait_before(1, 31.0) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), ("1.5", 1.5), ("-3", 0.0), ("", None), ("soon", None)],
)
def test_retry_after_seconds(value: str, expected: float | None) -> None:
    assert retry_after({"Retry-After": value}) == expected


def test_retry_after_as_an_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after({"Retry-After": formatdate(now + 42, usegmt=True)}, now=now) == pytest.approx(42, abs=1)
    assert retry_after({"Retry-After": formatdate(now - 42, usegmt=True)}, now=now) == 0.0


class FakeResponse:
    def __init__(self, body: object = None, text: str = "") -> None:
        self._body, self.text = body, text

    def json(self) -> object:
        if self._body is None:
            raise ValueError("not json")
        return self._body


def test_the_server_message_is_one_short_line() -> None:
    assert server_message(FakeResponse({"error": "Model  is\ncurrently `loading`"})) == "Model is currently 'loading'"
    assert server_message(FakeResponse({"error": ["one", "two"]})) == "one; two"
    assert server_message(FakeResponse(["not", "a", "dict"])) == ""
    assert server_message(FakeResponse(text="x" * 500)).endswith("...")
    assert len(server_message(FakeResponse(text="x" * 500))) == 200


def test_transport_errors_are_recognised_across_http_libraries() -> None:
    class TransportError(Exception):  # httpx / httpx2
        pass

    class ConnectError(TransportError):
        pass

    assert is_transport_error(ConnectError("refused"))
    assert is_transport_error(ConnectionResetError())
    assert not is_transport_error(ValueError("x"))


def test_call_with_retries_gives_up_with_the_members_message() -> None:
    calls = []

    def always_busy() -> None:
        calls.append(1)
        raise Retry("busy", 0.0)

    with pytest.raises(RemoteError, match="^busy$"):
        call_with_retries(always_busy, RetryPolicy(2, 0.0, 1.0), threading.Event(), "test")
    assert len(calls) == 3


def test_a_stopped_job_sends_nothing() -> None:
    stop = threading.Event()
    stop.set()
    with pytest.raises(Stopped):
        call_with_retries(lambda: pytest.fail("called"), RetryPolicy(2, 0.0, 1.0), stop, "test")


def test_the_busy_clock_counts_overlapping_requests_once() -> None:
    from inference.remote.busy import BusyClock

    clock = BusyClock()
    assert clock.stats().wall_s == 0.0
    clock.begin()
    clock.begin()
    clock.end()
    clock.end()
    stats = clock.stats()
    assert stats.batches == 2 and stats.busy_s == stats.wall_s and stats.fraction == 1.0


def test_the_clients_own_refusals_are_worded_for_members() -> None:
    from inference.remote.errors import Context, RemoteUnsupported, classify

    refusal = ValueError("Task 'image-to-image' not supported for provider 'zai-org'. Available tasks: [...]")
    named = classify(refusal, Context("flux", 60, "zai-org"))
    assert isinstance(named, RemoteUnsupported) and str(named).startswith("The provider 'zai-org' cannot make")
    picked = classify(refusal, Context("flux", 60, "auto"))
    assert isinstance(picked, RemoteUnsupported) and str(picked).startswith("The provider the image service picked")
    assert classify(ValueError("some other bug"), Context("flux", 60, "auto")) is None
    assert classify(KeyError("bug"), Context("flux", 60, "auto")) is None

"""The relay thread makes the GPU thread's calls in order and survives a call that fails."""

from __future__ import annotations

import logging
import threading

import pytest

from inference.relay import Relay


def test_calls_run_in_order_on_the_relay_thread() -> None:
    relay = Relay()
    seen: list[tuple[int, str]] = []
    try:
        for n in range(50):
            relay.call(lambda n=n: seen.append((n, threading.current_thread().name)))
    finally:
        relay.close()  # returns once every call handed over before it has run
    assert [n for n, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"easel-gpu-relay"}


def test_a_failing_call_is_logged_and_the_next_ones_still_run(caplog: pytest.LogCaptureFixture) -> None:
    relay = Relay()
    after: list[str] = []

    def broken(event: str) -> None:
        raise RuntimeError(f"listener broke on {event}")

    with caplog.at_level(logging.ERROR, logger="inference.relay"):
        try:
            relay.call(broken, "Finished(job1)")
            relay.call(after.append, "Finished(job2)")
        finally:
            relay.close()
    assert after == ["Finished(job2)"]
    record = next(r for r in caplog.records if r.name == "inference.relay")
    assert "could not hand over" in record.getMessage() and "Finished(job1)" in record.getMessage()
    assert record.exc_info is not None and "listener broke" in str(record.exc_info[1])

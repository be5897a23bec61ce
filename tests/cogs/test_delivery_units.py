"""Recognising our own posted result after a crash (so it is never posted twice, nor lost)."""

from __future__ import annotations

from types import SimpleNamespace

from cogs.delivery import is_result_of


def message(content: str, *files: str) -> SimpleNamespace:
    return SimpleNamespace(content=content, attachments=[SimpleNamespace(filename=f) for f in files])


def test_the_result_file_marks_a_posted_result() -> None:
    assert is_result_of(message("**cat** \u00b7 job `abc123`", "easel-abc123.png"), "abc123")
    assert is_result_of(message("...", "SPOILER_easel-abc123.webp"), "abc123")


def test_a_status_message_with_a_preview_is_not_the_result() -> None:
    assert not is_result_of(message("\U0001f3a8 Painting \u00b7 job `abc123`", "preview.png"), "abc123")
    assert not is_result_of(message("\u23f3 Queued \u00b7 job `abc123`"), "abc123")
    assert not is_result_of(message("**cat** \u00b7 job `other`", "easel-other.png"), "abc123")


def test_a_posted_failure_is_recognised_by_its_text() -> None:
    assert is_result_of(message("\u26a0\ufe0f The job failed \u00b7 job `abc123`"), "abc123")

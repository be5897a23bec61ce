"""A1111-style prompt weighting, read without torch: ``(word:1.3)``, ``(word)`` (x1.1), ``[word]``
(/1.1), nesting, ``\\(`` for a literal bracket, and ``BREAK`` (start a new 75-token chunk).

compel 2.5.1 (which encodes the result, inference/prompting.py) has its own syntax (``(word)1.3``,
``word++``) and none for A1111's, and its string parser reads ordinary text such as ``C++`` as
weights; so this module turns the member's text into ``(fragment, weight)`` lists that are handed to
compel as its own prompt objects, never as compel syntax. Unbalanced brackets are refused with a clear
message (:class:`PromptSyntaxError`) rather than guessed at, on every backend alike.
"""

from __future__ import annotations

import re

ATTENTION_UP = 1.1
_TOKENS = re.compile(r"\\[()\[\]\\]|\\|\(|\[|:\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*\)|\)|]|\bBREAK\b|[^\\()\[\]:B]+|B|:")

Segment = list[tuple[str, float]]


class PromptSyntaxError(ValueError):
    """Weighting syntax that cannot be read (unbalanced brackets); its text is for the member."""


def parse_weighted(text: str) -> list[Segment]:
    """The prompt as chunks (split at ``BREAK``) of ``(text, weight)`` fragments, equal weights merged."""
    segments: list[Segment] = [[]]
    stack: list[tuple[str, int]] = []  # (opening bracket, index in the current segment where it began)
    for match in _TOKENS.finditer(text):
        token = match.group(0)
        if token.startswith("\\") and len(token) == 2:
            _add(segments[-1], token[1])
        elif token in ("(", "["):
            stack.append((token, len(segments[-1])))
        elif match.group(1) is not None or token in (")", "]"):
            closing = "]" if token == "]" else ")"
            if not stack or stack[-1][0] != {")": "(", "]": "["}[closing]:
                raise PromptSyntaxError(_unbalanced(closing))
            _, start = stack.pop()
            factor = float(match.group(1)) if match.group(1) is not None else (
                ATTENTION_UP if closing == ")" else 1 / ATTENTION_UP)
            segments[-1][start:] = [(t, w * factor) for t, w in segments[-1][start:]]
        elif token == "BREAK":
            if stack:
                raise PromptSyntaxError("`BREAK` cannot stand inside brackets: close the `(` or `[` before it.")
            segments.append([])
        else:
            _add(segments[-1], token)
    if stack:
        raise PromptSyntaxError(f"The prompt has a `{stack[-1][0]}` that is never closed. Close it, or write "
                                f"`\\{stack[-1][0]}` for the bracket itself.")
    merged: list[Segment] = []
    for segment in segments:
        out: Segment = []
        for fragment, weight in segment:
            if out and out[-1][1] == weight:
                out[-1] = (out[-1][0] + fragment, weight)
            else:
                out.append((fragment, weight))
        if len(segments) > 1 and out:  # the spaces around BREAK belong to neither chunk
            out[0] = (out[0][0].lstrip(), out[0][1])
            out[-1] = (out[-1][0].rstrip(), out[-1][1])
            out = [(t, w) for t, w in out if t]
        merged.append(out)
    return merged


def needs_weighting(text: str) -> bool:
    """Whether ``text`` has weighting syntax or ``BREAK`` (or brackets that do not balance)."""
    if not text:
        return False
    try:
        return parse_weighted(text) != [[(text, 1.0)]]
    except PromptSyntaxError:
        return True


def syntax_error(text: str) -> str | None:
    """The member-facing reason ``text`` cannot be read, or None."""
    try:
        parse_weighted(text)
    except PromptSyntaxError as exc:
        return str(exc)
    return None


def plain_text(text: str) -> str:
    """The words of ``text`` without the syntax (what the pooled embedding of SDXL is made of)."""
    return " ".join("".join(t for t, _ in segment).strip() for segment in parse_weighted(text)).strip()


def _add(segment: Segment, fragment: str) -> None:
    segment.append((fragment, 1.0))


def _unbalanced(closing: str) -> str:
    return (f"The prompt has a `{closing}` without its opening bracket. Remove it, or write `\\{closing}` for "
            "the bracket itself.")

"""The WHERE clause of a history query, with prompt search that no member input can break.

A search is reduced to its words (``\\w+``); each word becomes a quoted FTS5 prefix term
(``"cat"*``), so FTS5 operators typed by a member (``AND``, ``NOT``, ``-``, ``*``, ``"``, ``NEAR(``,
``col:``) are only ever text. Without FTS5 each word is a ``LIKE '%word%'`` with ``%``, ``_`` and
``\\`` escaped. All words must match (AND).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_WORDS = 16  # bounds the query a member can make us run
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Filter:
    where: str
    params: list[Any] = field(default_factory=list)


def search_words(text: str) -> list[str]:
    return _WORD.findall(text)[:MAX_WORDS]


def fts_query(words: list[str]) -> str:
    return " ".join('"' + word.replace('"', '""') + '"*' for word in words)


def like_pattern(word: str) -> str:
    escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def history_filter(*, user_id: int | None, guild_id: int | None, kind: str | None, search: str | None,
                   fts: bool) -> Filter | None:
    """The filter for ``JobLog.history``; ``None`` when nothing can match (a search with no words).

    At least one of ``user_id``/``guild_id`` scopes the query: a member sees their own jobs, a
    guild's admins that guild's.
    """
    if user_id is None and guild_id is None:
        raise ValueError("history needs a user_id or a guild_id to scope it")
    clauses: list[str] = []
    params: list[Any] = []
    if user_id is not None:
        clauses.append("user_id = ?")
        params.append(user_id)
    if guild_id is not None:
        clauses.append("guild_id = ?")
        params.append(guild_id)
    if kind:
        clauses.append("kind = ?")
        params.append(kind)
    if search is not None and search.strip():
        words = search_words(search)
        if not words:
            return None
        if fts:
            clauses.append("seq IN (SELECT rowid FROM jobs_fts WHERE jobs_fts MATCH ?)")
            params.append(fts_query(words))
        else:
            for word in words:
                clauses.append("prompt LIKE ? ESCAPE '\\'")
                params.append(like_pattern(word))
    return Filter(" AND ".join(clauses), params)

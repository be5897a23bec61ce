"""The NSFW words of a prompt (``discord.nsfw_words``). Knows no Discord types and no torch.

The word flag of an image (``images.nsfw_word``, cogs/utils/gate.py) is a property of its prompt
and the configured words: the cogs ask when a request comes in, the studio when its results are
recorded (a job queued before the flag existed carries none) and when the job log is opened
(results recorded before it existed have none).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import lru_cache

MATCH_RULES = 1  # raise when _pattern matches differently: stored images are checked again at start


def word_list_digest(words: Iterable[str]) -> str:
    """What a word list flags, as a short text: the same for the same words in any order or case."""
    listed = sorted({w.lower() for w in words if w})
    return hashlib.sha256("\n".join([f"rules {MATCH_RULES}", *listed]).encode()).hexdigest()[:32]


@lru_cache(maxsize=64)
def _pattern(word: str) -> re.Pattern[str]:
    """The word alone, not inside a longer word ("ass" is not in "class"), in lowercase text."""
    return re.compile(rf"(?<!\w){re.escape(word.lower())}(?!\w)")


def nsfw_words_in(text: str, words: Iterable[str]) -> list[str]:
    """The configured ``words`` that ``text`` contains as words, ignoring case."""
    lowered = text.lower()
    return [w for w in words if w and _pattern(w).search(lowered)]


def has_nsfw_word(text: str | None, words: Iterable[str]) -> bool:
    """Whether ``text`` (a prompt; None or empty has none) contains one of ``words``."""
    if not text:
        return False
    lowered = text.lower()
    return any(w and _pattern(w).search(lowered) for w in words)

"""How many of CLIP's positions a prompt takes once its embedding words are written out. No torch.

diffusers adds a multi-vector textual inversion as ``<tok>``, ``<tok>_1``, ... and writes all of them
where a prompt says ``<tok>`` (``maybe_convert_prompt``): such a word takes as many positions as it
has vectors. The weighting path (inference/prompting.py) and the note on cut-off words
(inference/validation.py) count with this.
"""

from __future__ import annotations

import re
from typing import Any


def further_vectors(tokenizer: Any) -> dict[int, list[int]]:
    """``{token id: ids of its further vectors}`` (``<tok>`` -> ``<tok>_1``, ...) for every
    multi-vector embedding ``tokenizer`` holds."""
    added = getattr(tokenizer, "added_tokens_encoder", None) or {}
    out = {}
    for token, token_id in added.items():
        more = []
        while f"{token}_{len(more) + 1}" in added:
            more.append(added[f"{token}_{len(more) + 1}"])
        if more:
            out[token_id] = more
    return out


def token_widths(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    """``(token id, positions it takes)`` for each token of ``text`` (no start and end tokens)."""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    more = further_vectors(tokenizer)
    return [(i, 1 + len(more.get(i, ()))) for i in ids]


def token_count(tokenizer: Any, text: str) -> int:
    """How many positions ``text`` takes: a multi-vector embedding counts as its vectors."""
    return sum(width for _, width in token_widths(tokenizer, text))


def spell_out(tokenizer: Any, texts: list[str] | None) -> list[str] | None:
    """``texts`` with every multi-vector embedding word written as it was loaded (lowercase).

    CLIP's tokenizer lowercases what it reads, so ``EasyNegative`` finds the embedding's first
    vector whatever its case; but diffusers writes out the other vectors (``maybe_convert_prompt``)
    only where the text holds the word exactly as loaded. inference/embeddings.py loads every word
    lowercase, and this writes the words of a prompt that way before it reaches the pipeline (the
    job keeps the text as the member typed it)."""
    if texts is None:
        return None
    added = getattr(tokenizer, "added_tokens_encoder", None) or {}
    words = sorted((t for t in added if f"{t}_1" in added), key=len, reverse=True)
    if not words:
        return texts
    # A whole word only: "brea" must not turn the BREAK of a weighted prompt into "breaK".
    pattern = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(re.escape(w) for w in words) + r")(?![A-Za-z0-9])",
                         re.IGNORECASE)
    return [pattern.sub(lambda m: m.group(0).lower(), t) for t in texts]

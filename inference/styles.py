"""Style presets: admin-configured words wrapped around (or added to) a member's prompt.

A style's ``prompt`` holds ``{prompt}`` where the member's words go ("pixel art of {prompt}"), or
else is appended after a comma; its ``negative`` is appended to the member's negative prompt. The
job keeps the final texts (what the model reads, so a redo and the PNG's parameters reproduce the
image) and the style's name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from config import StyleConfig
from inference.jobs import JobError

PLACEHOLDER = "{prompt}"


def find_style(name: str, styles: Sequence[StyleConfig]) -> StyleConfig:
    """The style called ``name`` (case ignored), or a JobError listing the ones there are."""
    wanted = name.strip().lower()
    for style in styles:
        if style.name.lower() == wanted:
            return style
    if not styles:
        raise JobError("No styles are configured on this bot; leave out `style`.")
    raise JobError(f"Unknown style {name.strip()!r}. Choose one of: {', '.join(s.name for s in styles)}.")


def _tidy(text: str) -> str:
    """Whitespace collapsed, no space before a comma, no comma at either end (an empty ``{prompt}``)."""
    text = re.sub(r"\s+,", ",", " ".join(text.split()))
    text = re.sub(r",(\s*,)+", ",", text)
    return text.strip(" ,")


def apply_style(style: StyleConfig, prompt: str, negative: str) -> tuple[str, str]:
    """The prompt and negative prompt with ``style``'s words in them."""
    if PLACEHOLDER in style.prompt:
        styled = style.prompt.replace(PLACEHOLDER, prompt)
    else:
        styled = ", ".join(part for part in (prompt, style.prompt) if part.strip())
    negatives = ", ".join(part for part in (negative, style.negative) if part.strip())
    return _tidy(styled), _tidy(negatives)

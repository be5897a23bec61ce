"""Autocomplete of the ``prompt`` and ``negative`` options: the model's textual inversion words.

Discord does not hold a member to the suggestions of an autocompleted text option: what they type
is sent as typed. So the first suggestion is always the text as typed (picking it changes
nothing), then that text with each embedding word of the model (``[[model.embeddings]]``):
completing the word being typed when it is the start of one, else added after a comma. A
suggestion is at most 100 characters (Discord's limit for a choice): for a longer text, or a model
without embeddings, nothing is suggested and the member types on undisturbed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from inference.jobs import JobError

if TYPE_CHECKING:
    from bot import EaselBot

CHOICE_LIMIT = 100  # characters of a choice's name and value
MAX_CHOICES = 25
_LAST_WORD = re.compile(r"[^\s,()\[\]]*$")


def suggestions(current: str, words: Sequence[str]) -> list[str]:
    """The texts to offer while ``current`` is typed, for a model whose embedding words are ``words``."""
    if not words or len(current) > CHOICE_LIMIT:
        return []
    typed = current.strip()
    last = _LAST_WORD.search(current)
    fragment = last.group(0) if last else ""
    out = [current] if typed else []
    for word in words:
        if word.lower() in current.lower():
            continue  # already in the text
        if fragment and word.lower().startswith(fragment.lower()):
            text = current[: len(current) - len(fragment)] + word
        elif not typed:
            text = word
        else:
            text = typed + (" " if typed.endswith(",") else ", ") + word
        out.append(text)
    return [t for t in out if len(t) <= CHOICE_LIMIT][:MAX_CHOICES]


def _client(interaction: discord.Interaction) -> EaselBot:
    return interaction.client  # type: ignore[return-value]


def _words(interaction: discord.Interaction) -> list[str]:
    """The embedding words of the model picked in the same command (the default model's when none is)."""
    studio = _client(interaction).studio
    model = getattr(interaction.namespace, "model", None) or ""
    try:
        return studio.embedding_tokens(model)
    except JobError:  # a model name being typed that does not exist (yet)
        return studio.embedding_tokens()


async def complete_prompt(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=t, value=t) for t in suggestions(current, _words(interaction))]

"""Showing untrusted text (prompts, file names) safely, and the bot's standard phrases."""

from __future__ import annotations

import discord

NO_MENTIONS = discord.AllowedMentions.none()
MESSAGE_LIMIT = 2000


def quote(text: str, limit: int = 300) -> str:
    """A prompt as it may appear inside one of our messages: no markdown, no mentions, short."""
    text = " ".join((text or "").split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "\u2026"
    text = discord.utils.escape_markdown(text)
    return discord.utils.escape_mentions(text)


def prompt_heading(prompt: str) -> str:
    """A prompt in bold at the head of a result; an empty prompt (a /vary without one) says so
    instead of leaving four bare asterisks."""
    return f"**{quote(prompt)}**" if (prompt or "").strip() else "*(no prompt)*"


def fit_message(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Discord refuses messages over 2,000 characters: cut politely instead of failing."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def duration(seconds: float) -> str:
    if seconds < 1:
        return "under a second"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def queued_text(job_id: str, position: int, total: int, eta_s: float, notes: tuple[str, ...] = ()) -> str:
    head = f"\u23f3 Queued: position **{position}** of {total}, about {duration(eta_s)} \u00b7 job `{job_id}`"
    return fit_message("\n".join([head, *(f"\u2139\ufe0f {quote(n, 400)}" for n in notes)]))


# What the status line says while a job runs, by job kind (the rest paint).
DOING = {"describe": "\U0001f50d Describing", "upscale": "\U0001f5bc\ufe0f Upscaling"}
PAINTING = "\U0001f3a8 Painting"


def progress_text(job_id: str, step: int, total_steps: int, kind: str = "") -> str:
    total_steps = max(1, total_steps)
    filled = round(10 * min(step, total_steps) / total_steps)
    bar = "\u2588" * filled + "\u2591" * (10 - filled)
    return f"{DOING.get(kind, PAINTING)} `{bar}` {step}/{total_steps} \u00b7 job `{job_id}`"

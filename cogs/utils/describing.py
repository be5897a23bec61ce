"""/describe's answers: prompt suggestions for an image, with *Imagine 1-4* buttons.

A describe job's result is text (inference/describe/): its suggestions are stored with the job
in the job log (``params["result"]``, storage/jobs.py), so the answer can be posted again, and
its buttons keep working, after any number of restarts; a button's custom id carries only the
job id and the suggestion's number (cogs/utils/buttons.py).

The NSFW gate applies to the text as it would to an image made from it: a suggestion is flagged
when it has a ``discord.nsfw_words`` word, and every suggestion is as flagged as the image it
describes. Under the channel's policy now, a withheld suggestion is left out (with its button, and
the answer says how many were), a spoilered one is shown as a spoiler; *Imagine* on it goes
through launch(), which applies the gate to the prompt again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord

from cogs.utils import gate
from cogs.utils.buttons import EaselButton
from cogs.utils.gate import NO_FLAGS, Flags
from cogs.utils.inputs import PendingInput
from cogs.utils.launch import launch
from cogs.utils.options import NO_OPTIONS, chosen_model
from cogs.utils.origin import Origin
from cogs.utils.text import duration, fit_message, quote
from inference.jobs import DescribeJob, JobError
from inference.prompt_words import has_nsfw_word
from inference.validation import Draft, build_imagine

if TYPE_CHECKING:
    from bot import EaselBot
    from storage import JobRow

NO_SUGGESTION = "That suggestion is no longer stored here (the job may have been deleted or pruned)."


def suggestions_of(row: JobRow) -> list[str]:
    """The suggestions recorded with a describe job (empty before it finished)."""
    result = row.params.get("result")
    return [str(t) for t in result] if isinstance(result, list) else []


async def describe_file(bot: EaselBot, origin: Origin, path: str, *, inputs: tuple[PendingInput, ...] = (),
                        source: Flags = NO_FLAGS) -> str | None:
    """Suggest prompts for the image at ``path`` (a stored file, or one of ``inputs``). launch()
    refuses a source this channel withholds, and /describe without a model (studio.refusal)."""
    count, limit = bot.config.describe.suggestions, bot.config.limits.max_prompt_chars
    return await launch(bot, origin, lambda jid: Draft(DescribeJob(
        job_id=jid, owner=origin.user.id, init_image=path, count=count, max_chars=limit)),
        inputs=inputs, source=source)


async def imagine_suggestion(bot: EaselBot, origin: Origin, job_id: str, index: int) -> str | None:
    """*Imagine N*: /imagine with suggestion ``index`` of ``job_id`` for whoever clicked, on the
    model /imagine would use for them, with its defaults."""
    row = await bot.studio.database.jobs.get(job_id)
    texts = suggestions_of(row) if row is not None else []
    if index >= len(texts):
        raise JobError(NO_SUGGESTION)
    name = await chosen_model(bot, origin, None)

    def build(new_id: str) -> Draft:
        info, common = NO_OPTIONS.for_model(bot, name)
        return build_imagine(new_id, origin.user.id, info, prompt=texts[index], **common)

    return await launch(bot, origin, build)


async def render(bot: EaselBot, row: JobRow, channel: discord.abc.Messageable,
                 seconds: float | None) -> tuple[str, discord.ui.View]:
    """The answer to a finished describe job: numbered suggestions as the gate lets them be shown
    here, an *Imagine N* button for each shown one, and Delete."""
    texts = suggestions_of(row)
    source = Flags(bool(row.params.get("nsfw")), bool(row.params.get("nsfw_word")))
    words = bot.config.discord.nsfw_words
    lines, hidden = [f"\U0001f50e Prompt ideas for <@{row.user_id}>"], 0
    view = discord.ui.View(timeout=None)
    for i, text in enumerate(texts):
        how = await gate.treatment(bot, source | Flags(word=has_nsfw_word(text, words)), row.guild_id, channel)
        if how is gate.Treatment.WITHHELD:
            hidden += 1
            continue
        shown = quote(text, 400)
        lines.append(f"**{i + 1}.** " + (f"||{shown}||" if how is gate.Treatment.SPOILER else shown))
        view.add_item(EaselButton("i", row.job_id, i, label=f"Imagine {i + 1}", emoji="\U0001f3a8", row=0))
    if not texts:
        lines.append("The captioning model found nothing to say about this image.")
    if hidden:
        lines.append(f"\U0001f6ab {hidden} suggestion(s) not shown in this channel (NSFW).")
    took = f"{duration(seconds)} \u00b7 " if seconds is not None else ""
    lines.append(f"{took}job `{row.job_id}`")
    view.add_item(EaselButton("x", row.job_id, label="Delete", emoji="\u274c", style=discord.ButtonStyle.danger,
                              row=1))
    return fit_message("\n".join(lines)), view

"""What buttons, reactions and context menus do. Each action is one function taking an Origin,
so a 🔁 reaction and a Reroll button run the very same code."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING

import discord

from cogs.utils import gate
from cogs.utils.buttons import offers_for, single_view
from cogs.utils.describing import describe_file
from cogs.utils.gate import NO_FLAGS, Flags
from cogs.utils.inputs import PendingInput, decode, pending_of_message
from cogs.utils.launch import launch, too_fast
from cogs.utils.options import model_for_source
from cogs.utils.origin import InteractionOrigin, Origin
from cogs.utils.text import NO_MENTIONS, prompt_heading
from inference.imaging import ImageInputError, fit_for_upload
from inference.jobs import DiffusionJob, Job, JobError, JobKind, MorphJob, job_from_params
from inference.morph_options import build_morph
from inference.upscale import NOT_SET_UP as UPSCALE_NOT_SET_UP
from inference.upscale.options import build_upscale
from inference.validation import MAX_SEED, Draft, build_anime, build_vary

if TYPE_CHECKING:
    from bot import EaselBot
    from storage import ImageRow, JobRow

log = logging.getLogger(__name__)


async def job_row(bot: EaselBot, job_id: str) -> JobRow:
    row = await bot.studio.database.jobs.get(job_id)
    if row is None:
        raise JobError("I no longer have that job (it may have been deleted).")
    return row


def original_job(row: JobRow) -> Job:
    return job_from_params(row.job_id, row.user_id, row.params)


NO_LONGER_STORED = "That image is no longer stored here (it may have been deleted or pruned)."


async def result_image(bot: EaselBot, job_id: str, index: int) -> tuple[Path, dict[int, ImageRow]]:
    """Image ``index`` of a result and all the result's image rows (by index), from one read of
    the job log: the rows also give the result's NSFW flags (``Flags.of``) and seeds."""
    rows = {r.idx: r for r in await bot.studio.database.images.for_job(job_id)}
    row = rows.get(index)
    if row is None or not Path(row.path).exists():
        raise JobError(NO_LONGER_STORED)
    return Path(row.path), rows


# ---------------------------------------------------------------------------- new jobs


async def rerun(bot: EaselBot, origin: Origin, job_id: str, *, same_seed: bool) -> str | None:
    """Reroll (new seed) or redo (same seed) a job with the member as its owner. The new job is
    as NSFW-flagged as the one it repeats (its images and its prompt: cogs/utils/gate.py), and
    its input files are supplied by whoever supplied them to the original (so the /forget of
    that member takes them from the new job too)."""
    row = await job_row(bot, job_id)
    job = original_job(row)
    source = await gate.job_flags(bot, job_id)
    suppliers = await bot.studio.database.jobs.suppliers(job_id)

    def build(new_id: str) -> Draft:
        changes: dict[str, object] = {"job_id": new_id, "owner": origin.user.id}
        if isinstance(job, DiffusionJob) and not same_seed:
            changes["seed"] = random.randint(0, MAX_SEED)
        return Draft(dataclasses.replace(job, **changes))

    return await launch(bot, origin, build, source=source, suppliers=suppliers)


async def vary_file(bot: EaselBot, origin: Origin, path: str, size: tuple[int, int], *,
                    prompt: str = "", model: str = "", count: int = 1,
                    inputs: tuple[PendingInput, ...] = (), source: Flags = NO_FLAGS) -> str | None:
    """Vary the image at ``path``: a stored file, or one of ``inputs`` (stored once accepted).
    ``model``: the model that made it (when it is one of our results); the server's default model
    goes first (cogs/utils/options.py). ``source``: its NSFW flags, when it is one of our results."""
    name = await model_for_source(bot, origin, model)
    limits = bot.config.limits
    return await launch(bot, origin, lambda jid: build_vary(
        jid, origin.user.id, bot.studio.model_info(name), init_image=path, source_size=size, prompt=prompt or None,
        count=count, max_prompt_chars=limits.max_prompt_chars), inputs=inputs, source=source)


async def anime_file(bot: EaselBot, origin: Origin, path: str, style: str | None = None,
                     whole_image: bool = False, *, inputs: tuple[PendingInput, ...] = (),
                     source: Flags = NO_FLAGS) -> str | None:
    """AnimeGAN2 on the image at ``path``: a stored file, or one of ``inputs`` (stored once accepted).
    The anime model has no safety checker: its result is exactly as NSFW-flagged as ``source``
    (the flags of the result it paints, if it is ours)."""
    from inference.anime import STYLES

    return await launch(bot, origin, lambda jid: build_anime(
        jid, origin.user.id, init_image=path, style=style or bot.config.anime.default_style, styles=STYLES,
        whole_image=whole_image), inputs=inputs, source=source)


async def vary_result(bot: EaselBot, origin: Origin, job_id: str, index: int) -> str | None:
    row = await job_row(bot, job_id)
    job = original_job(row)
    path, images = await result_image(bot, job_id, index)
    image = await decode(await bot.studio.outputs.read(path), bot.config.limits)
    prompt = job.prompt if isinstance(job, DiffusionJob) else ""
    model = job.model if isinstance(job, DiffusionJob) else ""
    return await vary_file(bot, origin, str(path), image.size, prompt=prompt, model=model,
                           source=Flags.of(images.values()))


async def morph_result(bot: EaselBot, origin: Origin, job_id: str, index: int) -> str | None:
    """🎞️: a strength-sweep morph of one result image with that result's own prompt, seed, model,
    sampler and LoRAs (the default frames and strengths), as NSFW-flagged as the result."""
    job = original_job(await job_row(bot, job_id))
    if not isinstance(job, DiffusionJob) or isinstance(job, MorphJob):
        raise JobError("Only a still image made from a prompt can be morphed.")
    path, images = await result_image(bot, job_id, index)
    image = await decode(await bot.studio.outputs.read(path), bot.config.limits)
    seed = images[index].seed if index in images else job.seed
    info = bot.studio.model_info(job.model)
    return await launch(bot, origin, lambda jid: build_morph(
        jid, origin.user.id, info, init_image=str(path), source_size=image.size, prompt=job.prompt,
        negative=job.negative_prompt, seed=seed, scheduler=job.scheduler or None, spacing=job.spacing or None,
        eta=job.eta if job.eta >= 0 else None, loras=list(job.loras) or None,
        guidance=job.guidance, steps=job.steps, max_prompt_chars=bot.config.limits.max_prompt_chars),
        source=Flags.of(images.values()))


async def anime_result(bot: EaselBot, origin: Origin, job_id: str, index: int) -> str | None:
    path, images = await result_image(bot, job_id, index)
    return await anime_file(bot, origin, str(path), source=Flags.of(images.values()))


def upscale_refusal(bot: EaselBot) -> str | None:
    """Why no upscale can run here at all (none configured, or the remote backend), before any download."""
    if not bot.config.upscalers:
        return UPSCALE_NOT_SET_UP
    return bot.studio.unsupported(JobKind.UPSCALE)


async def upscale_file(bot: EaselBot, origin: Origin, path: str, size: tuple[int, int], *, factor: int | None = None,
                       mode: str | None = None, source_job: Job | None = None, seed: int | None = None,
                       inputs: tuple[PendingInput, ...] = (), source: Flags = NO_FLAGS,
                       prompt: str | None = None) -> str | None:
    """Upscale the image at ``path`` (inference/upscale/). ``source_job``: the job that made it (a
    creative upscale takes its prompt, seed and model); ``source``: its NSFW flags, which the result
    inherits (a source withheld here is refused by launch() before anything runs); ``prompt``: what
    the member says the picture shows (steers a creative upscale instead of the source's prompt)."""
    refusal = upscale_refusal(bot)
    if refusal:
        raise JobError(refusal)
    made_by = source_job if isinstance(source_job, DiffusionJob) else None
    info = bot.studio.model_info("") if mode == "creative" and made_by is None else None
    return await launch(bot, origin, lambda jid: build_upscale(
        jid, origin.user.id, bot.config.upscalers, init_image=path, source_size=size, factor=factor, mode=mode,
        source=made_by, seed=seed, model=info, prompt=prompt, max_prompt_chars=bot.config.limits.max_prompt_chars),
        inputs=inputs, source=source)


async def upscale_result(bot: EaselBot, origin: Origin, job_id: str, index: int, mode: str) -> str | None:
    """Upscale (subtle/creative) under a result or a picked cell: that image, with its own seed."""
    refusal = upscale_refusal(bot)
    if refusal:
        raise JobError(refusal)
    job = original_job(await job_row(bot, job_id))
    path, images = await result_image(bot, job_id, index)
    image = await decode(await bot.studio.outputs.read(path), bot.config.limits)
    seed = images[index].seed if index in images else None
    return await upscale_file(bot, origin, str(path), image.size, mode=mode, source_job=job, seed=seed,
                              source=Flags.of(images.values()))


async def from_message(bot: EaselBot, origin: Origin, message: discord.Message, what: str) -> str | None:
    """Vary or anime the image of any message (our results come from disk and name their own file)."""
    source, _job = await pending_of_message(bot.studio, message, bot.config.limits)
    return await on_image(bot, origin, source, what, await gate.message_flags(bot, message))


async def on_image(bot: EaselBot, origin: Origin, source: PendingInput, what: str, flags: Flags) -> str | None:
    """Anime, describe or vary a message's image (``source``, stored once accepted; ``flags``: its NSFW flags)."""
    if what == "anime":
        return await anime_file(bot, origin, source.path, inputs=(source,), source=flags)
    if what == "describe":
        return await describe_file(bot, origin, source.path, inputs=(source,), source=flags)
    return await vary_file(bot, origin, source.path, source.size, inputs=(source,), source=flags)


# ---------------------------------------------------------------------------- buttons


def can_manage(interaction: discord.Interaction) -> bool:
    perms = interaction.permissions
    return bool(perms.manage_messages or perms.manage_guild)


OUTPAINT_ACTIONS = ("z15", "z2", "pl", "pr", "pu", "pd")  # zoom out and pan: cogs/utils/outpaint.py
UNCHARGED = ("c", "x")  # Cancel and Delete start no work: a member over the rate limit can still stop their job


async def on_button(bot: EaselBot, interaction: discord.Interaction, action: str, job_id: str,
                    index: int | None) -> None:
    origin = InteractionOrigin(interaction, request_message_id=interaction.message.id if interaction.message else None)
    if action not in UNCHARGED and await too_fast(bot, origin):
        return
    try:
        # New jobs: launch() checks everything and only then acknowledges (refusals stay ephemeral).
        if action in ("r", "redo"):
            await rerun(bot, origin, job_id, same_seed=action == "redo")
        elif action == "v":
            await origin.in_time(vary_result(bot, origin, job_id, index or 0))
        elif action == "a":
            await anime_result(bot, origin, job_id, index or 0)
        elif action == "m":
            await origin.in_time(morph_result(bot, origin, job_id, index or 0))
        elif action == "i":
            from cogs.utils.describing import imagine_suggestion

            await imagine_suggestion(bot, origin, job_id, index or 0)
        elif action in ("us", "uc"):
            await origin.in_time(upscale_result(bot, origin, job_id, index or 0,
                                                "subtle" if action == "us" else "creative"))
        elif action == "u":
            await upscale(bot, interaction, job_id, index or 0)
        elif action in OUTPAINT_ACTIONS:
            from cogs.utils.outpaint import outpaint_result  # it builds on this module

            await origin.in_time(outpaint_result(bot, origin, job_id, index or 0, action))
        elif action == "x":
            await delete_result(bot, interaction, job_id)
        elif action == "c":
            await cancel(bot, interaction, job_id)
    except (JobError, ImageInputError) as exc:
        await origin.error(str(exc))


async def upscale(bot: EaselBot, interaction: discord.Interaction, job_id: str, index: int) -> None:
    """U1-U4: post one image of a grid alone, full size, with its own buttons, shown as the NSFW
    gate says for the grid it comes from (a pick of a spoilered grid is spoilered). Refusals come
    before the (public) defer, so they stay private; a failure after it (re-encoding, the post)
    becomes a JobError, which ``InteractionOrigin.error`` answers privately, deleting the public
    "thinking" message."""
    path, images = await result_image(bot, job_id, index)
    row = await job_row(bot, job_id)
    how = await gate.treatment(bot, Flags.of(images.values()), interaction.guild_id, interaction.channel)
    if how is gate.Treatment.WITHHELD:
        raise JobError("That image is not shown in this channel (NSFW).")
    try:
        data = await bot.studio.outputs.read(path)  # before the defer: pruned since the check is a private refusal
    except OSError as exc:
        raise JobError(NO_LONGER_STORED) from exc
    await interaction.response.defer(thinking=True)
    try:
        limit = getattr(interaction, "filesize_limit", 0) or 10 * 1024 * 1024
        data, filename = await asyncio.to_thread(fit_for_upload, data, limit, stem=f"easel-{job_id}-{index + 1}")
        prompt = row.params.get("prompt", "")
        seed = images[index].seed if index in images else 0
        await interaction.edit_original_response(
            content=f"{prompt_heading(prompt)} \u00b7 image {index + 1} \u00b7 seed `{seed}` \u00b7 job `{job_id}`",
            attachments=[gate.image_file(data, filename, how)],
            view=single_view(job_id, index, offers_for(bot, str(row.params.get("model", "")))),
            allowed_mentions=NO_MENTIONS)
    except (JobError, ImageInputError):
        raise
    except Exception as exc:
        log.exception("job %s: could not post image %s alone", job_id, index + 1)
        raise JobError("I could not post that image just now. Try again in a moment.") from exc


async def delete_result(bot: EaselBot, interaction: discord.Interaction, job_id: str) -> None:
    row = await job_row(bot, job_id)
    if interaction.user.id != row.user_id and not can_manage(interaction):
        raise JobError("Only the member who asked for this image (or a moderator) can delete it.")
    await interaction.response.defer()
    if interaction.message is not None:
        await interaction.message.delete()


async def cancel(bot: EaselBot, interaction: discord.Interaction, job_id: str) -> None:
    is_admin = bool(interaction.permissions.manage_guild)
    cancelled = await bot.studio.cancel(job_id, interaction.user.id, is_admin=is_admin)
    text = f"Cancelling job `{job_id}`." if cancelled else f"Job `{job_id}` has already finished."
    await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)

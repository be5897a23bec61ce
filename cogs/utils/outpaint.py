"""Zoom out 1.5x / 2x and the four Pan arrows under a single result or a picked cell.

Each one grows the canvas around the result (inference/imaging/outpaint.py) and inpaints the new
area with the result's own prompt, negative, seed, model, sampler and LoRAs
(inference/outpaint_options.py). The canvas and mask are named inputs, stored only once the job
is accepted (studio_admission.py); the new job inherits the result's NSFW flags, so a result this
channel withholds is refused by launch() like any other source.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from cogs.utils.actions import NO_LONGER_STORED, job_row, original_job, result_image
from cogs.utils.gate import Flags
from cogs.utils.inputs import decode, pending
from cogs.utils.launch import launch
from cogs.utils.origin import Origin
from inference.imaging.outpaint import CanvasPlan, plan_pan, plan_zoom, prepare_outpaint
from inference.jobs import DiffusionJob, JobError, JobKind, MorphJob
from inference.outpaint_options import NOT_A_STILL, REMOTE, build_outpaint
from inference.presets import KANDINSKY

if TYPE_CHECKING:
    from bot import EaselBot

# Button action → (what the result says, zoom factor or pan direction)
OUTPAINTS: dict[str, tuple[str, float | str]] = {
    "z15": ("Zoomed out 1.5x.", 1.5),
    "z2": ("Zoomed out 2x.", 2.0),
    "pl": ("Panned left.", "left"),
    "pr": ("Panned right.", "right"),
    "pu": ("Panned up.", "up"),
    "pd": ("Panned down.", "down"),
}


def plan_for(action: str, size: tuple[int, int], max_side: int) -> CanvasPlan:
    how = OUTPAINTS[action][1]
    return plan_zoom(size, how, max_side) if isinstance(how, float) else plan_pan(size, how, max_side)


def can_inpaint(bot: EaselBot, model: str) -> bool:
    """False for a Kandinsky 2.2 model configured without its inpainting decoder."""
    for cfg in bot.config.all_models:
        if cfg.display_name == model:
            return bot.studio.model_info(model).preset.family != KANDINSKY or bool(cfg.inpaint_source)
    return True


async def outpaint_result(bot: EaselBot, origin: Origin, job_id: str, index: int, action: str) -> str | None:
    """Zoom out or pan image ``index`` of result ``job_id`` (``action``: a key of :data:`OUTPAINTS`)."""
    if bot.studio.unsupported(JobKind.PAINT):
        raise JobError(REMOTE)
    job = original_job(await job_row(bot, job_id))
    if not isinstance(job, DiffusionJob) or isinstance(job, MorphJob):
        raise JobError(NOT_A_STILL)
    path, images = await result_image(bot, job_id, index)
    try:
        data = await bot.studio.outputs.read(path)
    except OSError as exc:  # pruned since result_image looked
        raise JobError(NO_LONGER_STORED) from exc
    image = await decode(data, bot.config.limits)
    info = bot.studio.model_info(job.model if job.model in bot.studio.model_names() else "")
    plan = plan_for(action, image.size, info.preset.max_size)
    canvas, mask = await asyncio.to_thread(prepare_outpaint, image, plan)
    canvas_input, mask_input = await pending(bot.studio, canvas), await pending(bot.studio, mask)
    note = " ".join(n for n in (OUTPAINTS[action][0], plan.note(info.preset.max_size)) if n)
    seed = images[index].seed if index in images else job.seed
    return await launch(bot, origin, lambda jid: build_outpaint(
        jid, origin.user.id, info, init_image=canvas_input.path, mask_image=mask_input.path, canvas_size=plan.canvas,
        prompt=job.prompt, negative=job.negative_prompt, seed=seed, steps=job.steps, guidance=job.guidance,
        scheduler=job.scheduler, spacing=job.spacing, eta=job.eta, loras=job.loras, note=note,
        can_inpaint=can_inpaint(bot, info.name), max_prompt_chars=bot.config.limits.max_prompt_chars),
        inputs=(canvas_input, mask_input), source=Flags.of(images.values()))

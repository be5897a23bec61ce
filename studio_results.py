"""Finished jobs into the job log: their PNGs (with Automatic1111-style parameters) stored by the
PNG writer, their image rows and finished status written in one trip, and the events the studio
then publishes (``JobDone``, or ``JobFailed`` for a job whose images could not be stored)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inference import jobs as J
from inference.executor import internal_error_message
from inference.imaging import format_parameters
from inference.imaging.animation import animation_format, encode_for_storage
from inference.samplers import call_eta, class_of, label_for
from storage import write_while_locked
from storage.files import StoredFile
from storage.images import NewImage
from storage.jobs import JobsMissing
from studio_events import JobDone, JobFailed, SavedImage, StudioEvent

if TYPE_CHECKING:
    from studio import Studio

log = logging.getLogger("studio")

_DROPPED = "job %s finished but is no longer in the job log; its images are dropped"


def parameters_text(job: J.Job, seed: int, width: int, height: int, sampler_label: str,
                    eta: float | None = None, fast_path: str = "") -> str:
    """The Automatic1111-style ``parameters`` text embedded in each PNG. The prompt lines are what
    the model read (a style preset's words included); ``Style`` names the preset, ``Eta`` the
    DDIM/TCD noise factor the sampler used, ``Fast path`` the speed-ups that changed the pixels."""
    p = job.to_params()
    if job.kind is J.JobKind.ANIME:
        return format_parameters(prompt="AnimeGAN2 face2paint", negative_prompt="", steps=1, sampler="AnimeGAN2",
                                 guidance=0.0, seed=0, width=width, height=height, model=p["style"],
                                 extra={"easel job": job.job_id})
    extra: dict[str, Any] = {"easel job": job.job_id, "easel kind": str(job.kind)}
    if job.kind is J.JobKind.MORPH:
        extra["Morph frames"] = p["frames"]
        if p["to_prompt"]:
            extra["Morph to prompt"] = p["to_prompt"]
        else:
            extra["Morph strengths"] = f"{p['strength_from']:g}-{p['strength_to']:g}"
    if job.kind is J.JobKind.UPSCALE:
        extra.update({"Upscaler": p["upscaler"], "Upscale factor": p["factor"], "Upscale mode": p["mode"]})
        if p["mode"] != "creative":
            p.pop("strength")
    if "strength" in p:
        extra["Denoising strength"] = p["strength"]
    if p.get("loras"):
        extra["Lora"] = ", ".join(f"{n}:{w:g}" for n, w in p["loras"])
    if eta is not None:
        extra["Eta"] = eta
    if p.get("style"):
        extra["Style"] = p["style"]
    if p.get("style_image"):  # /imagine's style_ref (IP-Adapter): its strength
        extra["Style reference"] = p["style_strength"]
    if p.get("tile"):
        extra["Tiling"] = True  # as Automatic1111 writes it
    if p.get("control_mode"):  # ControlNet jobs only: a plain job's text stays as it was
        extra.update({"ControlNet": p["control_mode"], "Control strength": p["control_strength"]})
    if fast_path:  # device.quantize / device.fast_draft: not the pixels a plain run would make
        extra["Fast path"] = fast_path
    return format_parameters(prompt=p["prompt"], negative_prompt=p["negative_prompt"], steps=p["steps"],
                             sampler=sampler_label, guidance=p["guidance"], seed=seed, width=width, height=height,
                             model=p["model"], extra=extra)


async def save_results(studio: Studio, results: list[J.JobResult]) -> list[StudioEvent]:
    """Encode and store the images of finished jobs, record them, and return the events to publish:
    ``JobDone`` per job, or ``JobFailed`` for a job whose images could not be encoded or saved."""
    finished: list[tuple[J.Job, J.JobResult, list[str]]] = []  # with each image's parameters text
    for result in results:
        job = await studio.job(result.job_id)
        if job is None:  # forgotten while it ran: nothing to record it against
            log.warning(_DROPPED, result.job_id)
            continue
        sampler, eta = sampler_used(studio.engine.executor, job)
        finished.append((job, result, [parameters_text(job, seed, im.width, im.height, sampler, eta, result.fast_path)
                                       for im, seed in zip(result.images, result.seeds, strict=False)]))

    # A text result (/describe) stores no image: its texts go into the job log with the job.
    text_results = {job.job_id: result.texts for job, result, _ in finished if job.kind is J.JobKind.DESCRIBE}
    stills = [i for i, (job, _, _) in enumerate(finished) if job.kind is not J.JobKind.MORPH and job.job_id not in text_results]
    written = await studio.png_writer.write(
        [(finished[i][0].job_id, list(zip(finished[i][1].images, finished[i][2], strict=True))) for i in stills])
    stored_files: list[list[StoredFile] | None] = [[] if job.job_id in text_results else None for job, _, _ in finished]
    for i, files in zip(stills, written, strict=True):
        stored_files[i] = files
    extras = await store_extras(studio, [(job.job_id, result) for (job, result, _), files in
                                         zip(finished, stored_files, strict=True) if files is not None])
    for i, (job, result, texts) in enumerate(finished):
        if job.kind is J.JobKind.MORPH:  # one animated file, recorded as the job's one image
            finished[i], stored_files[i] = await store_animation(studio, job, result, texts[0])
    records: list[NewImage] = []
    events: list[StudioEvent] = []
    for (job, result, job_texts), files in zip(finished, stored_files, strict=True):
        if files is None:
            message = internal_error_message()
            await write_while_locked(partial(studio.database.jobs.set_status, job.job_id, "failed", error=message),
                                     f"the failure of job {job.job_id}")
            events.append(JobFailed(job.job_id, message))
            continue
        saved = []
        for index, (image, seed, stored) in enumerate(zip(result.images, result.seeds, files, strict=False)):
            # The checker's verdict, or the flags the job inherited from its source (cogs/utils/gate.py).
            nsfw = job.nsfw or (bool(result.nsfw[index]) if index < len(result.nsfw) else False)
            records.append(NewImage(job.job_id, index, seed, stored.path, image.width, image.height,
                                    stored.sha256, stored.size, nsfw, job.nsfw_word))
            saved.append(SavedImage(index, seed, stored.path, image.width, image.height, nsfw))
        events.append(JobDone(job.job_id, job, tuple(saved), tuple(job_texts), result.seconds, result.note,
                              extras=extras.get(job.job_id, ())))
    claim = studio.claim_for_posting
    what = f"the result(s) of job(s) {', '.join(e.job_id for e in events)}"
    try:  # images, then the jobs as finished: one trip to SQLite's thread
        rows = await write_while_locked(partial(
            studio.database.record_results, records, [e.job_id for e in events if isinstance(e, JobDone)],
            claim=claim, **_texts_of(text_results, events), **_extras_of(extras, events)), what)
    except JobsMissing as err:  # a job left the log while it ran (its member was forgotten): drop it alone
        gone = set(err.job_ids)
        for job_id in sorted(gone):
            log.warning(_DROPPED, job_id)
        records = [r for r in records if r.job_id not in gone]
        events = [e for e in events if e.job_id not in gone]
        rows = await write_while_locked(partial(
            studio.database.record_results, records, [e.job_id for e in events if isinstance(e, JobDone)],
            claim=claim, **_texts_of(text_results, events), **_extras_of(extras, events)), what)
    recorded: list[StudioEvent] = []
    for event in events:
        if isinstance(event, JobDone):
            row = rows.get(event.job_id)
            if row is None:  # gone from the log since its images were recorded
                log.warning(_DROPPED, event.job_id)
                continue
            if claim:
                event = dataclasses.replace(event, row=row, image_rows=tuple(
                    r.as_row() for r in records if r.job_id == event.job_id))
        recorded.append(event)
    return recorded


def _texts_of(text_results: dict[str, tuple[str, ...]], events: list[StudioEvent]) -> dict[str, Any]:
    """``record_results``' ``texts`` keyword for the text results still to record (none: no keyword)."""
    ids = {e.job_id for e in events}
    texts = {job_id: lines for job_id, lines in text_results.items() if job_id in ids}
    return {"texts": texts} if texts else {}


def _extras_of(extras: dict[str, tuple[tuple[str, Path], ...]], events: list[StudioEvent]) -> dict[str, Any]:
    """``record_results``' ``extras`` keyword for the jobs still to record (none: no keyword)."""
    ids = {e.job_id for e in events if isinstance(e, JobDone)}
    chosen = {job_id: pictures for job_id, pictures in extras.items() if job_id in ids}
    return {"extras": chosen} if chosen else {}


async def store_extras(studio: Studio, results: list[tuple[str, J.JobResult]]
                       ) -> dict[str, tuple[tuple[str, Path], ...]]:
    """The pictures shown with results (``JobResult.extras``: a tile's 2x2 preview, a ControlNet
    map) stored as PNGs by the PNG writer: ``(label, path)`` by job. A job whose extras could not be
    stored is posted without them (the writer logs why): they are not its result."""
    wanted = [(job_id, result.extras) for job_id, result in results if result.extras]
    if not wanted:
        return {}
    written = await studio.png_writer.write(
        [(f"{job_id} (pictures shown with it)", [(image, None) for _, image in pictures]) for job_id, pictures in wanted])
    return {job_id: tuple((label, stored.path) for (label, _), stored in zip(pictures, files, strict=True))
            for (job_id, pictures), files in zip(wanted, written, strict=True) if files is not None}


async def store_animation(studio: Studio, job: J.Job, result: J.JobResult, text: str
                          ) -> tuple[tuple[J.Job, J.JobResult, list[str]], list[StoredFile] | None]:
    """A morph's frames as one animated WebP (GIF where WebP cannot be written) in the outputs
    folder, and its result as one image: the first frame's size, the job's seed, flagged when any
    frame was (the safety checker's verdicts; the job's inherited flags are added by the caller)."""
    one = dataclasses.replace(result, images=result.images[:1], seeds=result.seeds[:1],
                              nsfw=(any(result.nsfw),))
    try:
        data = await asyncio.to_thread(encode_for_storage, result.images, parameters=text)
        stored = await studio.outputs.save_bytes(data, f".{animation_format(data)}")
    except Exception:
        log.exception("could not save the animation of job %s", job.job_id)
        return (job, one, [text]), None
    return (job, one, [text]), [stored]


def sampler_used(executor: Any, job: J.Job) -> tuple[str, float | None]:
    """The sampler named in a PNG's parameters (the job's choice, or the loaded model's default,
    with the timestep spacing asked for) and the eta its steps took (None: no eta)."""
    if not isinstance(job, J.DiffusionJob):
        return "", None
    loaded = executor.loaded(job.model)
    scheduler = getattr(loaded, "default_scheduler", None)
    default_class = type(scheduler).__name__ if scheduler is not None else ""
    label = label_for(job.scheduler, default_class, job.spacing) or "Default"
    if scheduler is None:  # a remote model: the provider's sampler takes no eta from us
        return label, None
    return label, call_eta(job.scheduler, job.eta, class_of(job.scheduler, default_class))

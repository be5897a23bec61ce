"""What travels through Redis: job entries to workers, result entries back. JSON and PNG bytes only.

Never pickle: an entry read from Redis is data, not code. Everything read is checked here (the JSON's
shape, the job's field types, that images are PNGs of a sane size) and a bad entry raises
:class:`WireError`, which the reader logs and acknowledges instead of crashing on it.

A batch entry: ``meta`` (JSON: each job's id, owner and :meth:`Job.to_params`) and one
``img:<i>:<name>`` field per input image of its i-th :class:`PreparedJob`, as PNG (and ``hops`` once a
worker that could not run it handed it back). A result entry: ``meta``
(JSON: job id, status, message, seeds, seconds, note, NSFW flags, texts, extra labels, worker) and
``png:<i>`` / ``extra:<i>`` fields.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from PIL import Image

from inference.imaging.decode import DEFAULT_MAX_PIXELS
from inference.jobs import (
    JOB_TYPES,
    Cancelled,
    DiffusionJob,
    Failed,
    Finished,
    Job,
    JobResult,
    job_from_params,
)
from inference.prepare import PreparedJob

Fields = Mapping[bytes | str, bytes | str]
Outcome = Finished | Failed | Cancelled

WIRE_VERSION = "1"
INPUT_IMAGES = ("init_image", "mask_image", "control_image", "style_image")
MAX_ID_CHARS = 200
# Pixels a side of any image read from the wire: twice easel's largest output (an upscale is capped at
# 4096 px a side, inference/upscale/options.py MAX_OUTPUT_SIDE; presets cap diffusion at 1536), and what
# a 4x upscale of a 2048 px image would give, so a legitimate image always passes while a decompression
# bomb is refused from its PNG header, before ``load()`` decodes a pixel.
MAX_SIDE = 8192
# Total pixels of all images of one entry: a quarter of sixteen 8192 px squares (~268 Mpx, ~800 MB
# RGB). Far above a real entry (64 morph frames of 1536 px are ~151 Mpx) and bounded all the same.
MAX_ENTRY_PIXELS = 16 * MAX_SIDE * MAX_SIDE // 4
# An input image (an upload's init, mask, control or style image) may have any shape the bot takes:
# bounded by its pixels (the bot's upload limit, inference/imaging/decode.py) and a side far above
# any real one (a 40 Mpx panorama of 65536 x 610), not by the outputs' 8192 px.
MAX_INPUT_PIXELS = DEFAULT_MAX_PIXELS
MAX_INPUT_SIDE = 65536
MAX_PREVIEW_SIDE = 1024  # progress previews are small latent decodes
HOPS = "hops"  # how often workers that could not run a batch handed it back (inference/cluster/handback.py)
MAX_HOPS = 100
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Ranges a worker re-checks on a job rebuilt from the wire: nothing past them may tie up its GPU.
MIN_JOB_SIDE, MAX_JOB_SIDE = 8, 4096
MAX_JOB_STEPS = 500
MAX_JOB_COUNT = 64  # images of a batch or frames of a morph
MAX_ITEMS = 256  # images, seeds or texts in one result
MAX_META_CHARS = 2**20  # the JSON part of an entry (images travel as separate fields)


class WireError(ValueError):
    """An entry that is not what easel writes (corrupt, foreign, or too large)."""


class TooLarge(WireError):
    """An entry above ``cluster.max_entry_mb``: ``str()`` is written for the member."""


def png_bytes(image: Image.Image) -> bytes:
    """An image as a PNG (fast compression: it crosses a network once, the job log stores its own)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class _Pixels:
    """The pixel budget of one entry: each image read from it is counted before it is decoded."""

    def __init__(self) -> None:
        self.left = MAX_ENTRY_PIXELS

    def take(self, width: int, height: int, what: str) -> None:
        self.left -= width * height
        if self.left < 0:
            raise WireError(f"{what}: the entry's images exceed {MAX_ENTRY_PIXELS} pixels in all")


def open_png(data: Any, what: str, max_side: int = MAX_SIDE, budget: _Pixels | None = None,
             max_pixels: int = 0) -> Image.Image:
    """A PNG from the wire, decoded only once its header's size is within ``max_side``, ``max_pixels``
    (0: no limit but the sides) and ``budget``."""
    if not isinstance(data, bytes) or not data.startswith(PNG_SIGNATURE):
        raise WireError(f"{what}: not a PNG")
    try:
        with Image.open(io.BytesIO(data)) as im:  # lazy: only the header is read here
            if im.format != "PNG":
                raise WireError(f"{what}: not a PNG")
            width, height = im.size
            if not 0 < width <= max_side or not 0 < height <= max_side:
                raise WireError(f"{what}: {width}x{height} is too large (at most {max_side} px a side)")
            if max_pixels and width * height > max_pixels:
                raise WireError(f"{what}: {width}x{height} is too large (at most {max_pixels} pixels)")
            if budget is not None:
                budget.take(width, height, what)
            im.load()
            return im.copy()
    except WireError:
        raise
    except Exception as exc:  # Pillow raises many kinds on a corrupt file
        raise WireError(f"{what}: unreadable PNG ({type(exc).__name__})") from None


def _image(data: Any, what: str, budget: _Pixels) -> Image.Image:
    return open_png(data, what, MAX_SIDE, budget)


def _input_image(data: Any, what: str, budget: _Pixels) -> Image.Image:
    return open_png(data, what, MAX_INPUT_SIDE, budget, MAX_INPUT_PIXELS)


def entry_hops(fields: Fields) -> int:
    """How often a batch entry was handed back (0 if never); :class:`WireError` if not a small count."""
    value = _field(fields, HOPS)
    if value is None:
        return 0
    text = value.decode("ascii", errors="replace") if isinstance(value, bytes) else str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 3 or int(text) > MAX_HOPS:
        raise WireError(f"{HOPS}: not a count")
    return int(text)


def _no_constant(name: str) -> Any:
    raise WireError(f"meta: {name} is not a number easel writes")


def _text(fields: Fields, name: str) -> str:
    value = fields.get(name.encode(), fields.get(name))
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError(f"{name}: not UTF-8") from None
    if not isinstance(value, str):
        raise WireError(f"{name}: missing")
    return value


def _meta(fields: Fields) -> dict[str, Any]:
    if _text(fields, "v") != WIRE_VERSION:
        raise WireError("unknown wire version")
    text = _text(fields, "meta")
    if len(text) > MAX_META_CHARS:
        raise WireError("meta: too long")
    try:
        meta = json.loads(text, parse_constant=_no_constant)
    except WireError:
        raise
    except (ValueError, RecursionError, MemoryError):  # deep nesting must not kill a reader
        raise WireError("meta: not JSON") from None
    if not isinstance(meta, dict):
        raise WireError("meta: not an object")
    return meta


def _field(fields: Fields, name: str) -> Any:
    return fields.get(name.encode(), fields.get(name))


def _job_id(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS:
        raise WireError("job_id: missing or too long")
    return value


def _check_size(fields: dict[str, bytes | str], cap_bytes: int, what: str) -> dict[str, bytes | str]:
    size = sum(len(v) for v in fields.values())
    if size > cap_bytes:
        raise TooLarge(f"This {what} is too large to send between the bot and its GPU workers "
                       f"({size / 2**20:.1f} MB, the limit is {cap_bytes / 2**20:.1f} MB).")
    return fields


# --------------------------------------------------------------------------- jobs


def encode_batch(batch: list[PreparedJob], cap_bytes: int) -> dict[str, bytes | str]:
    """A stream entry for one prepared batch. Raises :class:`TooLarge` above ``cap_bytes``, or when its
    input images are more than a worker reads (:func:`decode_batch` would refuse the entry unanswered)."""
    _check_inputs(batch)
    jobs = [{"job_id": p.job.job_id, "owner": p.job.owner, "params": p.job.to_params()} for p in batch]
    fields: dict[str, bytes | str] = {"v": WIRE_VERSION, "meta": json.dumps({"jobs": jobs})}
    for i, prepared in enumerate(batch):
        for name in INPUT_IMAGES:
            image = getattr(prepared, name)
            if image is not None:
                fields[f"img:{i}:{name}"] = png_bytes(image)
    return _check_size(fields, cap_bytes, "request")


def _check_inputs(batch: list[PreparedJob]) -> None:
    """The bounds :func:`decode_batch` checks, from the images' sizes, before any PNG is made."""
    total = 0
    for prepared in batch:
        for name in INPUT_IMAGES:
            image = getattr(prepared, name)
            if image is None:
                continue
            width, height = image.size
            total += width * height
            if max(width, height) > MAX_INPUT_SIDE or width * height > MAX_INPUT_PIXELS or total > MAX_ENTRY_PIXELS:
                raise TooLarge(f"The pictures of this request are too large to send between the bot and its GPU "
                               f"workers (at most {MAX_INPUT_PIXELS / 1e6:g} megapixels a picture, "
                               f"{MAX_ENTRY_PIXELS / 1e6:.0f} in all). Try smaller or fewer pictures.")


def _is(value: Any, tp: Any) -> bool:
    if tp is type(None):
        return value is None
    if tp in (int, float):
        return isinstance(value, int | float if tp is float else int) and not isinstance(value, bool)
    return isinstance(value, tp) if isinstance(tp, type) else False


def _check_types(job: Job) -> None:
    """Field types as declared: a foreign entry must not hand a string where the pipeline wants an int."""
    hints = typing.get_type_hints(type(job))
    for f in dataclasses.fields(job):
        value, tp = getattr(job, f.name), hints[f.name]
        if typing.get_origin(tp) is tuple:
            ok = isinstance(value, tuple)
        else:
            ok = any(_is(value, t) for t in (typing.get_args(tp) if isinstance(tp, types.UnionType) else (tp,)))
        if not ok:
            raise WireError(f"{f.name}: {type(value).__name__} is not {tp}")


def check_ranges(job: Job) -> None:
    """Values no easel bot sends: every float finite, sizes, steps and counts within what a GPU can serve."""
    for f in dataclasses.fields(job):
        value = getattr(job, f.name)
        floats = [w for _, w in value] if f.name == "loras" else [value] if isinstance(value, float) else []
        if not all(math.isfinite(v) for v in floats):
            raise WireError(f"{f.name}: not a finite number")
    if isinstance(job, DiffusionJob):
        for name in ("width", "height"):
            side = getattr(job, name)
            if not MIN_JOB_SIDE <= side <= MAX_JOB_SIDE or side % 8:
                raise WireError(f"{name}: {side} is not a multiple of 8 in {MIN_JOB_SIDE}..{MAX_JOB_SIDE}")
    for name, top in (("steps", MAX_JOB_STEPS), ("count", MAX_JOB_COUNT), ("frames", MAX_JOB_COUNT)):
        value = getattr(job, name, None)
        if value is not None and not 1 <= value <= top:
            raise WireError(f"{name}: {value} is not in 1..{top}")


def _job(entry: Any) -> Job:
    if not isinstance(entry, dict):
        raise WireError("job: not an object")
    job_id, owner, params = _job_id(entry.get("job_id")), entry.get("owner"), entry.get("params")
    if not isinstance(owner, int) or isinstance(owner, bool):
        raise WireError("owner: not an integer")
    if not isinstance(params, dict) or params.get("kind") not in {str(k) for k in JOB_TYPES}:
        raise WireError("params: missing or of an unknown kind")
    try:
        job = job_from_params(job_id, owner, params)
    except (TypeError, ValueError) as exc:
        raise WireError(f"params: {exc}") from None
    _check_types(job)
    check_ranges(job)
    return job


def job_ids(fields: Fields) -> list[str]:
    """The job ids an entry names, when its ``meta`` can be read at all (else ``[]``): an entry refused
    for its images or a job's values is answered with a failure for each, not left unanswered."""
    try:
        jobs = _meta(fields).get("jobs")
        if not isinstance(jobs, list) or not 0 < len(jobs) <= MAX_ITEMS:
            return []
        return [_job_id(entry.get("job_id") if isinstance(entry, dict) else None) for entry in jobs]
    except WireError:
        return []


def decode_batch(fields: Fields) -> list[PreparedJob]:
    """The prepared jobs of a batch entry; :class:`WireError` if it is not a valid one."""
    jobs = _meta(fields).get("jobs")
    if not isinstance(jobs, list) or not 0 < len(jobs) <= MAX_ITEMS:
        raise WireError("jobs: not a list of jobs")
    batch, budget = [], _Pixels()
    for i, entry in enumerate(jobs):
        images = {name: _input_image(_field(fields, f"img:{i}:{name}"), name, budget) for name in INPUT_IMAGES
                  if _field(fields, f"img:{i}:{name}") is not None}
        batch.append(PreparedJob(_job(entry), **images))
    return batch


# --------------------------------------------------------------------------- results


def encode_result(outcome: Outcome, worker: str, cap_bytes: int) -> dict[str, bytes | str]:
    """A stream entry for a job's outcome. A result above ``cap_bytes`` becomes a failure saying so."""
    meta: dict[str, Any] = {"job_id": outcome.job_id, "worker": worker}
    fields: dict[str, bytes | str] = {"v": WIRE_VERSION}
    if isinstance(outcome, Failed):
        meta.update(status="failed", message=outcome.message)
    elif isinstance(outcome, Cancelled):
        meta.update(status="cancelled")
    else:
        r = outcome.result
        meta.update(status="finished", seeds=list(r.seeds), seconds=r.seconds, note=r.note, nsfw=list(r.nsfw),
                    texts=list(r.texts), extras=[label for label, _ in r.extras], images=len(r.images),
                    fast_path=r.fast_path)
        for i, image in enumerate(r.images):
            fields[f"png:{i}"] = png_bytes(image)
        for i, (_, image) in enumerate(r.extras):
            fields[f"extra:{i}"] = png_bytes(image)
    fields["meta"] = json.dumps(meta)
    try:
        return _check_size(fields, cap_bytes, "result")
    except TooLarge as exc:
        return encode_result(Failed(outcome.job_id, str(exc)), worker, cap_bytes)


def _list(meta: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> list[Any]:
    value = meta.get(name, [])
    if not isinstance(value, list) or len(value) > MAX_ITEMS or not all(isinstance(v, kind) for v in value):
        raise WireError(f"{name}: not a list of {kind}")
    return value


def result_job_id(fields: Fields) -> str | None:
    """The job id of a result entry that may be unreadable otherwise (its pictures), ``None`` if none."""
    try:
        return _job_id(_meta(fields).get("job_id"))
    except WireError:
        return None


def decode_result(fields: Fields) -> tuple[Outcome, str]:
    """``(outcome, worker name)`` of a result entry; :class:`WireError` if it is not a valid one."""
    meta = _meta(fields)
    job_id, worker, status = _job_id(meta.get("job_id")), meta.get("worker", ""), meta.get("status")
    if not isinstance(worker, str):
        raise WireError("worker: not text")
    if status == "failed":
        message = meta.get("message")
        if not isinstance(message, str):
            raise WireError("message: not text")
        return Failed(job_id, message), worker
    if status == "cancelled":
        return Cancelled(job_id), worker
    if status != "finished":
        raise WireError("status: unknown")
    count, seconds, note = meta.get("images"), meta.get("seconds"), meta.get("note", "")
    if not isinstance(count, int) or not 0 <= count <= MAX_ITEMS:
        raise WireError("images: not a count")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not isinstance(note, str):
        raise WireError("seconds or note: wrong type")
    fast_path = meta.get("fast_path", "")  # a worker's device.quantize / fast_draft, written into each PNG
    if not isinstance(fast_path, str) or len(fast_path) > 200:
        raise WireError("fast_path: not a short text")
    seeds, nsfw = _list(meta, "seeds", int), _list(meta, "nsfw", bool)
    texts, labels = _list(meta, "texts", str), _list(meta, "extras", str)
    budget = _Pixels()
    images = tuple(_image(_field(fields, f"png:{i}"), f"png:{i}", budget) for i in range(count))
    extras = tuple((label, _image(_field(fields, f"extra:{i}"), f"extra:{i}", budget))
                   for i, label in enumerate(labels))
    result = JobResult(job_id, images, tuple(seeds), float(seconds), note, tuple(nsfw), tuple(texts), extras,
                       fast_path)
    return Finished(job_id, result), worker

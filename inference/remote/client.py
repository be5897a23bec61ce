"""One image per call through ``huggingface_hub.InferenceClient``, with retries and clear errors.

The Inference API makes one image per request, so a job asking for four images is four requests,
each with its own seed (``job.seeds``, as on the local backend). Text-to-image and image-to-image
map onto the client's ``text_to_image`` and ``image_to_image``; the client has no inpainting task,
so /paint is refused with a message saying so. Whether a provider can do image-to-image is known
to huggingface_hub before anything is sent, and is asked through :meth:`RemoteClient.unsupported`.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Mapping
from typing import Any

from huggingface_hub import ImageToImageTargetSize, InferenceClient
from PIL import Image

from config import RemoteConfig, read_secret
from inference.jobs import DiffusionJob, ImageToImageJob, Job, JobKind, TextToImageJob
from inference.prepare import PreparedJob
from inference.prompt_syntax import needs_weighting
from inference.remote.errors import NOT_AN_IMAGE, Context, RemoteUnsupported, Retry, classify
from inference.remote.retry import RetryPolicy, call_with_retries
from inference.samplers import SAMPLERS

log = logging.getLogger(__name__)

TASKS = {JobKind.IMAGINE: "text-to-image", JobKind.VARY: "image-to-image"}
PAINT_UNSUPPORTED = ("Painting into part of an image (/paint) is not available on this bot: it makes its images "
                     "through the Hugging Face Inference API, which cannot inpaint. /imagine and /vary still work.")
NO_OPTION = "is not available on this bot: it makes its images through the Hugging Face Inference API, which does not take it."


def read_token(remote: RemoteConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The access token from the variable named by ``remote.token_env``: from the process environment
    or a ``.env`` file, like DISCORD_TOKEN; only from ``environ`` when one is given. None if unset."""
    if environ is None:
        return read_secret(remote.token_env) or None
    return read_secret(remote.token_env, environ, dotenv=None) or None


def provider_tasks() -> dict[str, frozenset[str]] | None:
    """Each provider huggingface_hub knows and the tasks it can route there.

    This reads the library's routing table, which is not public API: None when it moved, and the
    answer then comes from the first request instead (the client raises before sending anything).
    """
    try:
        from huggingface_hub.inference._providers import PROVIDERS
    except ImportError:  # pragma: no cover - depends on the installed huggingface_hub
        return None
    return {str(name): frozenset(tasks) for name, tasks in PROVIDERS.items()}


class RemoteClient:
    def __init__(self, remote: RemoteConfig, token: str | None, *, api: Any = None) -> None:
        self.remote = remote
        self.has_token = token is not None
        self.policy = RetryPolicy.from_config(remote)
        self._api = api or InferenceClient(provider=remote.provider, token=token, timeout=remote.timeout_s,
                                           base_url=remote.base_url or None)

    def unsupported(self, kind: JobKind) -> str | None:
        """Why this service cannot run ``kind`` at all, for the member; None if it can (or may)."""
        if kind is JobKind.PAINT:
            return PAINT_UNSUPPORTED
        task = TASKS.get(kind)
        if task is None or self.remote.base_url or self.remote.provider == "auto":
            return None  # an endpoint or the automatic choice can only be asked by trying
        known = provider_tasks()
        tasks = known.get(self.remote.provider) if known is not None else None
        if tasks is None or task in tasks:
            return None
        what = "Varying an image (/vary)" if kind is JobKind.VARY else "This command"
        return (f"{what} is not available on this bot: its image service provider ({self.remote.provider}) "
                f"cannot do {task}. /imagine still works.")

    def unsupported_options(self, job: Job) -> str | None:
        """Why the service cannot honour one of ``job``'s options, for the member; None if it can.
        The Inference API takes a sampler (by class name) for text-to-image only, and no timestep
        spacing or eta at all: refused rather than silently dropped."""
        if not isinstance(job, DiffusionJob):
            return None
        if needs_weighting(job.prompt) or needs_weighting(job.negative_prompt):  # it would read them as words
            return (f"Prompt weighting (`(word:1.3)`, `((word))`, `[word]`, `BREAK`) {NO_OPTION} Write the prompt "
                    "without it.")
        if getattr(job, "style_image", None) is not None:
            return f"A style reference (`style_ref`) {NO_OPTION} Leave it out."
        if getattr(job, "tile", False):
            return f"Seamless tiling (`tile`) {NO_OPTION} Leave it out."
        if getattr(job, "control_image", None) is not None:  # a Redo of a job made on the local backend
            return f"A control picture (`control`, ControlNet) {NO_OPTION} Leave it out."
        if job.spacing:
            return f"Timestep spacing (`spacing`) {NO_OPTION} Leave it out."
        if job.eta >= 0:
            return f"`eta` {NO_OPTION} Leave it out."
        if job.scheduler and SAMPLERS[job.scheduler].options:
            return (f"The {job.scheduler} sampler is not available on this bot: the Hugging Face Inference API "
                    "it makes its images with takes a sampler without its settings. Pick another `scheduler`.")
        if job.scheduler and not isinstance(job, TextToImageJob):
            return ("Choosing a sampler (`scheduler`) works only with /imagine on this bot: it makes its images "
                    "through the Hugging Face Inference API, which takes no sampler for this command. Leave it out.")
        return None

    def generate(self, prepared: PreparedJob, seed: int, model_id: str | None, model_name: str,
                 stop: threading.Event) -> Image.Image:
        """One RGB image for ``prepared`` made with ``seed``; raises RemoteError (member-facing) or
        Stopped. ``model_id`` is the hub id to ask for (None: the endpoint's only model)."""
        job = prepared.job
        reason = self.unsupported(job.kind) or self.unsupported_options(job)
        if reason is not None:
            raise RemoteUnsupported(reason)
        ctx = Context(model=model_name, timeout_s=self.remote.timeout_s, provider=self.remote.provider)
        what = f"job {job.job_id} seed {seed}"
        return call_with_retries(lambda: self._once(prepared, seed, model_id, ctx), self.policy, stop, what)

    def _once(self, prepared: PreparedJob, seed: int, model_id: str | None, ctx: Context) -> Image.Image:
        try:
            image = self._request(prepared, seed, model_id)
        except Exception as exc:
            mapped = classify(exc, ctx)
            if mapped is None:
                raise
            log.warning("remote request for job %s failed: %s: %s", prepared.job.job_id, type(exc).__name__,
                        " ".join(str(exc).split()))
            raise mapped from exc
        try:
            image.load()  # the client decodes lazily: a truncated body fails here
            return image.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            log.warning("remote answer for job %s is not a whole image: %s", prepared.job.job_id, exc)
            raise Retry(NOT_AN_IMAGE) from exc

    def _request(self, prepared: PreparedJob, seed: int, model_id: str | None) -> Image.Image:
        job = prepared.job
        assert isinstance(job, DiffusionJob)
        common: dict[str, Any] = {
            "negative_prompt": job.negative_prompt or None,
            "num_inference_steps": job.steps,
            "guidance_scale": job.guidance,
            "model": model_id,
        }
        if isinstance(job, TextToImageJob):
            scheduler = SAMPLERS[job.scheduler].class_name if job.scheduler else None
            return self._api.text_to_image(job.prompt, width=job.width, height=job.height, seed=seed,
                                           scheduler=scheduler, **common)
        if isinstance(job, ImageToImageJob):
            assert prepared.init_image is not None
            return self._api.image_to_image(_png(prepared.init_image), prompt=job.prompt or None,
                                            target_size=ImageToImageTargetSize(width=job.width, height=job.height),
                                            strength=job.strength, seed=seed, **common)
        # Inpainting: generate() refuses it before this point; no job kind is ever sent half-mapped.
        raise RemoteUnsupported(PAINT_UNSUPPORTED)


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()

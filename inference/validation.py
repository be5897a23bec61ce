"""Turning a member's options into a valid job, or one clear :class:`JobError`.

Limits come from the model's preset (sizes, steps) and the configuration (prompt length). The
tokenizer check tells the member what CLIP's 77-token window cuts off instead of silently
dropping it.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from config import LoraRecipe, ModelConfig
from inference.jobs import (
    AnimeJob,
    ImageToImageJob,
    InpaintJob,
    JobError,
    TextToImageJob,
)
from inference.kandinsky_samplers import kandinsky_sampler_error
from inference.presets import ASPECTS, KANDINSKY, ModelPreset
from inference.samplers import SAMPLERS

MAX_COUNT = 4
MAX_SEED = 2**32 - 1
MAX_GUIDANCE = 20.0
CLIP_WINDOW = 75  # 77 positions minus the start and end tokens
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff\u00ad]")


@dataclass(frozen=True)
class ModelInfo:
    """What validation needs to know of a loaded model (built on the inference thread).

    ``loras`` are the ones members may pick; ``recipes`` the defaults some of them bring;
    ``defaults`` the recipe of the model's fused LoRAs (its steps and guidance are already in
    ``preset``); ``fused`` the names of the LoRAs that are always on."""

    name: str
    preset: ModelPreset
    tokenizer: Any = None
    loras: tuple[str, ...] = ()
    recipes: Mapping[str, LoraRecipe] = field(default_factory=dict, hash=False)
    defaults: LoraRecipe = field(default_factory=LoraRecipe)
    fused: tuple[str, ...] = ()


def describe_model(cfg: ModelConfig, preset: ModelPreset, tokenizer: Any = None) -> ModelInfo:
    """A model's :class:`ModelInfo` from its configuration: LoRAs members may pick, their recipes,
    and the fused LoRAs' recipe as the model's defaults."""
    picked = [lora for lora in cfg.loras if not lora.fuse]
    return ModelInfo(cfg.display_name, preset, tokenizer, tuple(lora.name for lora in picked),
                     {lora.name: lora.recipe for lora in picked if lora.recipe != LoraRecipe()},
                     cfg.fused_recipe, tuple(lora.name for lora in cfg.loras if lora.fuse))


@dataclass(frozen=True)
class Draft:
    """A validated job plus notes to show the member (what was cut, what was adjusted)."""

    job: Any
    notes: tuple[str, ...] = ()


def clean_text(text: str | None, *, limit: int, what: str = "prompt", required: bool = True) -> str:
    """Strip invisible and control characters, collapse whitespace, enforce the length limit."""
    text = unicodedata.normalize("NFC", text or "")
    text = _INVISIBLE.sub("", text)
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = " ".join(text.split())
    if required and not text:
        raise JobError(f"The {what} is empty. Describe what you would like to see.")
    if len(text) > limit:
        raise JobError(f"The {what} is {len(text):,} characters long; the limit here is {limit:,}. Please shorten it.")
    return text


def token_note(tokenizer: Any, text: str, what: str = "prompt") -> str:
    """A note naming the words CLIP will not read, or "" when everything fits."""
    if tokenizer is None or not text:
        return ""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    if len(ids) <= CLIP_WINDOW:
        return ""
    kept = tokenizer.decode(ids[:CLIP_WINDOW])
    words = text.split()
    kept_words = len(kept.split())
    cut = " ".join(words[kept_words:])
    if len(cut) > 80:
        cut = cut[:77] + "..."
    return f"Your {what} is {len(ids)} tokens; the model reads only the first {CLIP_WINDOW}, so this part was cut: \u201c{cut}\u201d"


def resolve_size(preset: ModelPreset, *, aspect: str | None, width: int | None, height: int | None) -> tuple[int, int]:
    if width is None and height is None:
        if aspect is None:
            return preset.size, preset.size
        if aspect not in ASPECTS:
            raise JobError(f"Unknown aspect {aspect!r}. Choose one of: {', '.join(ASPECTS)}.")
        return preset.aspect_size(aspect)
    for name, value in (("width", width), ("height", height)):
        if value is None:
            continue
        if value % 8:
            lower, upper = value - value % 8, value - value % 8 + 8
            raise JobError(f"The {name} must be a multiple of 8 (try {lower} or {upper}).")
        if not preset.min_size <= value <= preset.max_size:
            raise JobError(f"The {name} must be between {preset.min_size} and {preset.max_size} pixels for this model.")
    side = width if width is not None else height  # one side given: a square
    assert side is not None
    return (side if width is None else width), (side if height is None else height)


def _range(value: float | int | None, default: float | int, lo: float, hi: float, message: str) -> Any:
    if value is None:
        return default
    if not lo <= value <= hi:
        raise JobError(message)
    return value


def _seed(seed: int | None) -> int:
    if seed is None:
        return random.randint(0, MAX_SEED)
    if not 0 <= seed <= MAX_SEED:
        raise JobError(f"The seed must be between 0 and {MAX_SEED:,}.")
    return seed


def _scheduler(name: str | None) -> str:
    if not name:
        return ""
    if name not in SAMPLERS:
        raise JobError(f"Unknown sampler {name!r}. Choose one of: {', '.join(SAMPLERS)}.")
    return name


def _loras(info: ModelInfo, loras: list[tuple[str, float]] | None) -> tuple[tuple[str, float], ...]:
    out = []
    for name, weight in loras or ():
        if name in info.fused:
            raise JobError(f"The LoRA {name!r} is always on for model {info.name}: leave it out of `lora`.")
        if name not in info.loras:
            known = ", ".join(info.loras) or "none are configured"
            raise JobError(f"Unknown LoRA {name!r} for model {info.name} ({known}).")
        if not 0.0 <= weight <= 2.0:
            raise JobError("A LoRA weight must be between 0 and 2.")
        out.append((name, float(weight)))
    return tuple(sorted(out))


def _recipe(info: ModelInfo, loras: list[tuple[str, float]] | None) -> LoraRecipe:
    """The defaults a request gets: the recipes of the LoRAs it picks (in the member's order, the
    first to set a value wins), over the model's fused LoRAs' recipe."""
    recipe = info.defaults
    for name, _weight in reversed(loras or ()):
        if name in info.recipes:
            recipe = info.recipes[name].over(recipe)
    return recipe


def recipe_timing(recipe: LoraRecipe) -> dict[str, Any]:
    """The job fields for a recipe's timestep spacing and eta, where it sets them."""
    out: dict[str, Any] = {}
    if recipe.spacing:
        out["spacing"] = recipe.spacing
    if recipe.eta >= 0:
        out["eta"] = recipe.eta
    return out


def _common(info: ModelInfo, *, prompt: str | None, negative: str | None, steps: int | None, guidance: float | None,
            seed: int | None, count: int | None, scheduler: str | None, loras: list[tuple[str, float]] | None,
            max_prompt_chars: int, prompt_required: bool = True) -> tuple[dict[str, Any], list[str]]:
    p = info.preset
    text = clean_text(prompt, limit=max_prompt_chars, required=prompt_required)
    neg = clean_text(negative, limit=max_prompt_chars, what="negative prompt", required=False)
    picked = _loras(info, loras)
    recipe = _recipe(info, loras)
    params = {
        "prompt": text,
        "negative_prompt": neg,
        "steps": _range(steps, recipe.steps or p.steps, 1, p.max_steps,
                        f"Steps must be between 1 and {p.max_steps} for this model."),
        "guidance": float(_range(guidance, recipe.guidance if recipe.guidance >= 0 else p.guidance, 0.0, MAX_GUIDANCE,
                                 f"Guidance must be between 0 and {MAX_GUIDANCE:g}.")),
        "seed": _seed(seed),
        "count": _range(count, 1, 1, MAX_COUNT, f"You can ask for 1 to {MAX_COUNT} images at once."),
        "model": info.name,
        "scheduler": _scheduler(scheduler) or recipe.scheduler,
        "loras": picked,
    }
    if not scheduler or scheduler == recipe.scheduler or not recipe.scheduler:
        # spacing and eta belong to the recipe's sampler: a sampler the member picks goes without them
        params.update(recipe_timing(recipe))
    if info.preset.family == KANDINSKY and (refusal := kandinsky_sampler_error(params["scheduler"])):
        raise JobError(refusal)
    notes = [n for n in (token_note(info.tokenizer, text), token_note(info.tokenizer, neg, "negative prompt")) if n]
    return params, notes


def build_imagine(job_id: str, owner: int, info: ModelInfo, *, prompt: str | None, negative: str | None = None,
                  count: int | None = None, aspect: str | None = None, width: int | None = None,
                  height: int | None = None, steps: int | None = None, guidance: float | None = None,
                  seed: int | None = None, scheduler: str | None = None,
                  loras: list[tuple[str, float]] | None = None, max_prompt_chars: int = 1000) -> Draft:
    params, notes = _common(info, prompt=prompt, negative=negative, steps=steps, guidance=guidance, seed=seed,
                            count=count, scheduler=scheduler, loras=loras, max_prompt_chars=max_prompt_chars)
    w, h = resolve_size(info.preset, aspect=aspect, width=width, height=height)
    return Draft(TextToImageJob(job_id=job_id, owner=owner, width=w, height=h, **params), tuple(notes))


def fit_source_size(preset: ModelPreset, source_size: tuple[int, int]) -> tuple[int, int]:
    """The generation size for a source image: its aspect kept, about the preset's area, multiples of 8."""
    sw, sh = source_size
    scale = (preset.size * preset.size / max(1, sw * sh)) ** 0.5
    w, h = (max(preset.min_size, min(preset.max_size, int(round(v * scale / 8)) * 8)) for v in (sw, sh))
    return w, h


def build_vary(job_id: str, owner: int, info: ModelInfo, *, init_image: str, source_size: tuple[int, int],
               prompt: str | None = None, strength: float | None = None, seed: int | None = None,
               count: int | None = None, steps: int | None = None, guidance: float | None = None,
               negative: str | None = None, scheduler: str | None = None,
               loras: list[tuple[str, float]] | None = None, max_prompt_chars: int = 1000) -> Draft:
    params, notes = _common(info, prompt=prompt, negative=negative, steps=steps, guidance=guidance, seed=seed,
                            count=count, scheduler=scheduler, loras=loras, max_prompt_chars=max_prompt_chars,
                            prompt_required=False)
    s = float(_range(strength, info.preset.default_strength, 0.05, 1.0, "Strength must be between 0.05 and 1."))
    if params["steps"] * s < 1:
        params["steps"] = max(params["steps"], int(1 / s + 0.999))
    w, h = fit_source_size(info.preset, source_size)
    return Draft(ImageToImageJob(job_id=job_id, owner=owner, width=w, height=h, init_image=init_image,
                                 strength=s, **params), tuple(notes))


def build_paint(job_id: str, owner: int, info: ModelInfo, *, init_image: str, mask_image: str,
                source_size: tuple[int, int], prompt: str | None, strength: float | None = None,
                seed: int | None = None, count: int | None = None, steps: int | None = None,
                guidance: float | None = None, negative: str | None = None, max_prompt_chars: int = 1000) -> Draft:
    params, notes = _common(info, prompt=prompt, negative=negative, steps=steps, guidance=guidance, seed=seed,
                            count=count, scheduler=None, loras=None, max_prompt_chars=max_prompt_chars)
    s = float(_range(strength, 1.0, 0.05, 1.0, "Strength must be between 0.05 and 1."))
    if params["steps"] * s < 1:
        params["steps"] = max(params["steps"], int(1 / s + 0.999))
    w, h = fit_source_size(info.preset, source_size)
    return Draft(InpaintJob(job_id=job_id, owner=owner, width=w, height=h, init_image=init_image,
                            mask_image=mask_image, strength=s, **params), tuple(notes))


def build_anime(job_id: str, owner: int, *, init_image: str, style: str, styles: tuple[str, ...],
                whole_image: bool = False) -> Draft:
    if style not in styles:
        raise JobError(f"Unknown anime style {style!r}. Choose one of: {', '.join(styles)}.")
    return Draft(AnimeJob(job_id=job_id, owner=owner, init_image=init_image, style=style, whole_image=whole_image))

"""Turning a member's options into a valid job, or one clear :class:`JobError`.

Limits come from the model's preset (sizes, steps) and the configuration (prompt length). The
tokenizer check tells the member what CLIP's 77-token window cuts off instead of silently
dropping it.
"""

from __future__ import annotations

import dataclasses
import random
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

from config import LoraRecipe, ModelConfig, StyleConfig
from inference.control.options import control_params
from inference.embedding_tokens import token_widths
from inference.jobs import (
    AnimeJob,
    ImageToImageJob,
    InpaintJob,
    JobError,
    TextToImageJob,
)
from inference.kandinsky_samplers import INPAINT_STRENGTH, NO_INPAINT, TILE_KANDINSKY, kandinsky_sampler_error
from inference.presets import ASPECTS, KANDINSKY, ModelPreset
from inference.prompt_syntax import syntax_error
from inference.samplers import SAMPLERS, SPACINGS, class_of, ignores_spacing, step_takes_eta
from inference.style_options import style_ref_params
from inference.styles import apply_style, find_style

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
    scheduler_class: str = ""  # the model's own scheduler class ("" = not known here)
    inpaint_model: bool = False  # a dedicated inpainting model is configured (model.inpaint_source)
    style_ref: bool = False  # an IP-Adapter is configured (model.ip_adapter): /imagine takes style_ref
    style_strength: float = 0.6  # its default strength
    controls: Mapping[str, float] = field(default_factory=dict, hash=False)  # ControlNet mode -> default strength


def describe_model(cfg: ModelConfig, preset: ModelPreset, tokenizer: Any = None, scheduler_class: str = "") -> ModelInfo:
    """A model's :class:`ModelInfo` from its configuration: LoRAs members may pick, their recipes,
    and the fused LoRAs' recipe as the model's defaults. ``scheduler_class``: its loaded scheduler's
    class; else the one ``model.scheduler`` names, if any."""
    picked = [lora for lora in cfg.loras if not lora.fuse]
    if not scheduler_class and cfg.scheduler in SAMPLERS:
        scheduler_class = SAMPLERS[cfg.scheduler].class_name
    return ModelInfo(cfg.display_name, preset, tokenizer, tuple(lora.name for lora in picked),
                     {lora.name: lora.recipe for lora in picked if lora.recipe != LoraRecipe()},
                     cfg.fused_recipe, tuple(lora.name for lora in cfg.loras if lora.fuse), scheduler_class,
                     bool(cfg.inpaint_source), style_ref=bool(cfg.ip_adapter.source),
                     style_strength=cfg.ip_adapter.strength, controls={c.mode: c.strength for c in cfg.controlnets})


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
    widths = token_widths(tokenizer, text)  # an embedding of several vectors takes as many positions
    total = sum(width for _, width in widths)
    if total <= CLIP_WINDOW:
        return ""
    kept_ids, used = [], 0
    for token_id, width in widths:
        used += width
        if used > CLIP_WINDOW:
            break
        kept_ids.append(token_id)
    kept = tokenizer.decode(kept_ids)
    words = text.split()
    kept_words = len(kept.split())
    cut = " ".join(words[kept_words:])
    if len(cut) > 80:
        cut = cut[:77] + "..."
    return f"Your {what} is {total} tokens; the model reads only the first {CLIP_WINDOW}, so this part was cut: \u201c{cut}\u201d"


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


def _sampler_words(scheduler: str) -> str:
    return f"the {scheduler} sampler" if scheduler else "this model's own sampler"


def _spacing(info: ModelInfo, spacing: str | None, scheduler: str) -> str:
    """A timestep spacing the chosen sampler honours ("" = its config's own)."""
    if not spacing:
        return ""
    spacing = spacing.strip().lower()
    if spacing not in SPACINGS:
        raise JobError(f"Unknown spacing {spacing!r}. Choose one of: {', '.join(SPACINGS)}.")
    if ignores_spacing(class_of(scheduler, info.scheduler_class)):
        raise JobError(f"{_sampler_words(scheduler).capitalize()} picks its own timesteps, so `spacing` does "
                       "not apply; leave it out.")
    return spacing


def _eta(info: ModelInfo, eta: float | None, scheduler: str) -> float:
    """The DDIM/TCD noise factor; -1.0 = unset (the sampler's own default)."""
    if eta is None:
        return -1.0
    if not 0.0 <= eta <= 1.0:
        raise JobError("Eta must be between 0 and 1.")
    scheduler_class = class_of(scheduler, info.scheduler_class)
    if scheduler_class and not step_takes_eta(scheduler_class):
        users = ", ".join(n for n, s in SAMPLERS.items() if step_takes_eta(s.class_name))
        raise JobError(f"`eta` does nothing with {_sampler_words(scheduler)}; it is used by the {users} samplers "
                       "(pick one with `scheduler`).")
    return float(eta)


def _style(style: str | None, styles: Sequence[StyleConfig], prompt: str, negative: str) -> tuple[str, str, str]:
    """(prompt, negative, style name) with the chosen style preset applied."""
    if not style or not style.strip():
        return prompt, negative, ""
    preset = find_style(style, styles)
    prompt, negative = apply_style(preset, prompt, negative)
    return prompt, negative, preset.name


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
    first to set a value wins), over the model's fused LoRAs' recipe. The fused steps and guidance
    are left out: they are in ``info.preset`` already, where ``model.steps``/``guidance`` win over them."""
    recipe = dataclasses.replace(info.defaults, steps=0, guidance=-1.0)
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


class CommonOptions(TypedDict, total=False):
    """The options /imagine, /vary and /paint share (each None = the model's default)."""

    negative: str | None
    steps: int | None
    guidance: float | None
    seed: int | None
    count: int | None
    scheduler: str | None
    spacing: str | None
    eta: float | None
    loras: list[tuple[str, float]] | None
    style: str | None
    styles: Sequence[StyleConfig]
    max_prompt_chars: int


def _common(info: ModelInfo, *, prompt: str | None, negative: str | None = None, steps: int | None = None,
            guidance: float | None = None, seed: int | None = None, count: int | None = None,
            scheduler: str | None = None, spacing: str | None = None, eta: float | None = None,
            loras: list[tuple[str, float]] | None = None, style: str | None = None,
            styles: Sequence[StyleConfig] = (), max_prompt_chars: int = 1000,
            prompt_required: bool = True, weighted: bool = True) -> tuple[dict[str, Any], list[str]]:
    """The parameters every diffusion command shares, and notes for the member. ``weighted``: the
    prompts are read with weighting syntax and in full (SD/SDXL, inference/prompting.py); else
    (Kandinsky, morphs) as plain text that CLIP cuts at 77 tokens, which the notes say."""
    p = info.preset
    text = clean_text(prompt, limit=max_prompt_chars, required=prompt_required)
    neg = clean_text(negative, limit=max_prompt_chars, what="negative prompt", required=False)
    text, neg, style_name = _style(style, styles, text, neg)
    picked = _loras(info, loras)
    recipe = _recipe(info, loras)
    sampler = _scheduler(scheduler) or recipe.scheduler
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
        "scheduler": sampler,
        "loras": picked,
        "style": style_name,
    }
    if not scheduler or scheduler == recipe.scheduler or not recipe.scheduler:
        # spacing and eta belong to the recipe's sampler: a sampler the member picks goes without them
        params.update(recipe_timing(recipe))
    # What the member sets wins over the recipe, checked against the sampler that will run.
    if spacing:
        params["spacing"] = _spacing(info, spacing, sampler)
    if eta is not None:
        params["eta"] = _eta(info, eta, sampler)
    if info.preset.family == KANDINSKY:
        if refusal := kandinsky_sampler_error(params["scheduler"]):
            raise JobError(refusal)
        if eta is not None:  # its decoder pipeline has no eta argument: it would be dropped unseen
            raise JobError("Kandinsky 2.2 models take no eta: leave it out.")
    if weighted and p.family != KANDINSKY:
        for what, value in (("prompt", text), ("negative prompt", neg)):
            if reason := syntax_error(value):
                raise JobError(reason.replace("The prompt", f"The {what}", 1))
        return params, []
    notes = [n for n in (token_note(info.tokenizer, text), token_note(info.tokenizer, neg, "negative prompt")) if n]
    return params, notes


def build_imagine(job_id: str, owner: int, info: ModelInfo, *, prompt: str | None, aspect: str | None = None,
                  width: int | None = None, height: int | None = None, tile: bool = False,
                  style_image: str | None = None, style_strength: float | None = None, control_image: str | None = None,
                  control_mode: str | None = None, control_strength: float | None = None,
                  **options: Unpack[CommonOptions]) -> Draft:
    if tile and info.preset.family == KANDINSKY:
        raise JobError(TILE_KANDINSKY)
    params, notes = _common(info, prompt=prompt, **options)
    params.update(style_ref_params(info, style_image, style_strength))
    params.update(control_params(info.name, info.preset.family, info.controls, image=control_image, mode=control_mode,
                                 strength=control_strength))
    w, h = resolve_size(info.preset, aspect=aspect, width=width, height=height)
    return Draft(TextToImageJob(job_id=job_id, owner=owner, width=w, height=h, tile=tile, **params), tuple(notes))


def fit_source_size(preset: ModelPreset, source_size: tuple[int, int]) -> tuple[int, int]:
    """The generation size for a source image: its aspect kept, about the preset's area, multiples of 8."""
    sw, sh = source_size
    scale = (preset.size * preset.size / max(1, sw * sh)) ** 0.5
    w, h = (max(preset.min_size, min(preset.max_size, int(round(v * scale / 8)) * 8)) for v in (sw, sh))
    return w, h


def _strength(value: float | None, default: float, steps: int) -> tuple[float, int]:
    """The strength and enough steps that at least one of them runs (diffusers runs steps * strength)."""
    s = float(_range(value, default, 0.05, 1.0, "Strength must be between 0.05 and 1."))
    if steps * s < 1:
        steps = max(steps, int(1 / s + 0.999))
    return s, steps


def build_vary(job_id: str, owner: int, info: ModelInfo, *, init_image: str, source_size: tuple[int, int],
               prompt: str | None = None, strength: float | None = None,
               **options: Unpack[CommonOptions]) -> Draft:
    params, notes = _common(info, prompt=prompt, prompt_required=False, **options)
    s, params["steps"] = _strength(strength, info.preset.default_strength, params["steps"])
    w, h = fit_source_size(info.preset, source_size)
    return Draft(ImageToImageJob(job_id=job_id, owner=owner, width=w, height=h, init_image=init_image,
                                 strength=s, **params), tuple(notes))


def build_paint(job_id: str, owner: int, info: ModelInfo, *, init_image: str, mask_image: str,
                source_size: tuple[int, int], prompt: str | None, strength: float | None = None,
                **options: Unpack[CommonOptions]) -> Draft:
    if info.preset.family == KANDINSKY:  # refused here, privately, rather than failing after the queue
        if not info.inpaint_model:
            raise JobError(NO_INPAINT)
        if strength is not None and strength < 1.0:
            raise JobError(INPAINT_STRENGTH)
    params, notes = _common(info, prompt=prompt, **options)
    s, params["steps"] = _strength(strength, 1.0, params["steps"])
    w, h = fit_source_size(info.preset, source_size)
    return Draft(InpaintJob(job_id=job_id, owner=owner, width=w, height=h, init_image=init_image,
                            mask_image=mask_image, strength=s, **params), tuple(notes))


def build_anime(job_id: str, owner: int, *, init_image: str, style: str, styles: tuple[str, ...],
                whole_image: bool = False) -> Draft:
    if style not in styles:
        raise JobError(f"Unknown anime style {style!r}. Choose one of: {', '.join(styles)}.")
    return Draft(AnimeJob(job_id=job_id, owner=owner, init_image=init_image, style=style, whole_image=whole_image))

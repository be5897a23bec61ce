"""The captioning model (transformers: BLIP or Florence-2) and the prompt suggestions it writes.

One image gives several distinct captions, one per prompt of the family. BLIP: an unconditional
caption, then captions continuing its conditional prefixes ("a photography of", "a painting of",
...), so each suggestion leans towards another medium. Florence-2: its caption tasks, most detailed
first. Beam-search alternatives of the first prompt fill in where cleaning left too few. Each is
cleaned (spaces, stray punctuation, duplicates) and capped at the prompt length members may use.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from inference.describe.source import DescribeUnavailable

log = logging.getLogger(__name__)

PREFIXES: tuple[str | None, ...] = (None, "a photography of", "a painting of", "an illustration of")
FLORENCE_TASKS: tuple[str | None, ...] = ("<MORE_DETAILED_CAPTION>", "<DETAILED_CAPTION>", "<CAPTION>")
MAX_NEW_TOKENS = 40
BEAMS = 3
UNSUPPORTED = ("/describe is unavailable: its configured model is not a BLIP or Florence-2 captioning model. An "
               "admin can fix it (describe.source).")


def clean(texts: Iterable[str], *, limit: int, max_chars: int) -> list[str]:
    """Trimmed, single-spaced, without a trailing stop or leading junk, distinct (ignoring case),
    at most ``max_chars`` long (cut at a word), at most ``limit`` of them; empty ones dropped."""
    out: list[str] = []
    seen: set[str] = set()
    for text in texts:
        text = re.sub(r"\s+", " ", text.replace("\ufffd", "")).strip(" \t.,;:-")
        if len(text) > max_chars:
            cut = text[:max_chars]
            text = (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(" ,;:-")
        key = text.lower()
        if not text or key in seen:
            continue
        seen.add(key)
        out.append(text)
        if len(out) == limit:
            break
    return out


@dataclass
class Captioner:
    model: Any
    processor: Any
    device: torch.device
    source: str
    prompts: tuple[str | None, ...] = PREFIXES

    def captions(self, image: Image.Image, prefix: str | None, *, beams: int = 1) -> list[str]:
        inputs = self.processor(images=image.convert("RGB"), text=prefix, return_tensors="pt").to(self.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, num_beams=max(beams, 1),
                                      num_return_sequences=max(beams, 1))
        return [str(t) for t in self.processor.batch_decode(out, skip_special_tokens=True)]

    def suggest(self, image: Image.Image, count: int, *, max_chars: int) -> list[str]:
        """Up to ``count`` distinct prompt suggestions (at least one unless the model writes nothing)."""
        raw: list[str] = []
        for prefix in self.prompts[:count]:
            raw += self.captions(image, prefix)
        found = clean(raw, limit=count, max_chars=max_chars)
        if len(found) < count:  # duplicates or empty captions: beam-search alternatives fill in
            found = clean([*found, *self.captions(image, self.prompts[0], beams=max(BEAMS, count))], limit=count,
                          max_chars=max_chars)
        return found


def load_captioner(folder: Path, device: torch.device, *, source: str = "") -> Captioner:
    """Load a BLIP or Florence-2 captioning model and its processor from ``folder`` (never downloads)."""
    import json

    import transformers

    name = source or str(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DescribeUnavailable(UNSUPPORTED, f"describe.source {name}: unreadable config.json ({exc})") from None
    family = config.get("model_type")
    if family == "blip":
        classes, prompts = ("BlipForConditionalGeneration", "BlipProcessor"), PREFIXES
    elif family == "florence2" and not config.get("auto_map"):
        classes, prompts = ("Florence2ForConditionalGeneration", "AutoProcessor"), FLORENCE_TASKS
    elif family == "florence2":  # microsoft/Florence-2-*: the remote-code layout, which easel never runs
        raise DescribeUnavailable(UNSUPPORTED, f"describe.source {name}: a Florence-2 checkpoint in the remote-code "
                                               "layout; use transformers' native one (florence-community/Florence-2-base "
                                               "or -large)")
    else:
        raise DescribeUnavailable(UNSUPPORTED, f"describe.source {name}: model_type {family!r} is not supported "
                                               "(BLIP or Florence-2 only)")
    try:
        processor = getattr(transformers, classes[1]).from_pretrained(folder)
        model = getattr(transformers, classes[0]).from_pretrained(folder)
    except (OSError, ValueError, TypeError) as exc:
        raise DescribeUnavailable(UNSUPPORTED, f"describe.source {name}: cannot be loaded "
                                               f"({type(exc).__name__}: {exc})") from None
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    log.info("captioning model %s (%s) loaded on %s", name, family, device)
    return Captioner(model, processor, device, name, prompts)

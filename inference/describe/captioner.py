"""The captioning model (BLIP family, transformers) and the prompt suggestions it writes.

One image gives several distinct captions: an unconditional one, then captions that continue
BLIP's conditional prefixes ("a photography of", "a painting of", ...), so each suggestion leans
towards another medium; beam-search alternatives fill in where cleaning left too few. Each is
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
MAX_NEW_TOKENS = 40
BEAMS = 3
UNSUPPORTED = ("/describe is unavailable: its configured model is not a BLIP captioning model. An admin can fix it "
               "(describe.source).")


def clean(texts: Iterable[str], *, limit: int, max_chars: int) -> list[str]:
    """Trimmed, single-spaced, without a trailing stop or leading junk, distinct (ignoring case),
    at most ``max_chars`` long (cut at a word), at most ``limit`` of them; empty ones dropped."""
    out: list[str] = []
    seen: set[str] = set()
    for text in texts:
        text = re.sub(r"\s+", " ", text).strip(" \t.,;:-")
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

    def captions(self, image: Image.Image, prefix: str | None, *, beams: int = 1) -> list[str]:
        inputs = self.processor(images=image.convert("RGB"), text=prefix, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, num_beams=max(beams, 1),
                                      num_return_sequences=max(beams, 1))
        return [str(t) for t in self.processor.batch_decode(out, skip_special_tokens=True)]

    def suggest(self, image: Image.Image, count: int, *, max_chars: int) -> list[str]:
        """Up to ``count`` distinct prompt suggestions (at least one unless the model writes nothing)."""
        raw: list[str] = []
        for prefix in PREFIXES[:count]:
            raw += self.captions(image, prefix)
        found = clean(raw, limit=count, max_chars=max_chars)
        if len(found) < count:  # duplicates or empty captions: beam-search alternatives fill in
            found = clean([*found, *self.captions(image, None, beams=max(BEAMS, count))], limit=count,
                          max_chars=max_chars)
        return found


def load_captioner(folder: Path, device: torch.device, *, source: str = "") -> Captioner:
    """Load a BLIP captioning model and its processor from ``folder`` (never downloads)."""
    import json

    from transformers import BlipForConditionalGeneration, BlipProcessor

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DescribeUnavailable(UNSUPPORTED, f"describe.source {source or folder}: unreadable config.json "
                                               f"({exc})") from None
    architectures = config.get("architectures") or []
    if config.get("model_type") != "blip" and "BlipForConditionalGeneration" not in architectures:
        raise DescribeUnavailable(UNSUPPORTED, f"describe.source {source or folder}: model_type "
                                               f"{config.get('model_type')!r} is not supported (BLIP only)")
    try:
        processor = BlipProcessor.from_pretrained(folder)
        model = BlipForConditionalGeneration.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise DescribeUnavailable(UNSUPPORTED, f"describe.source {source or folder}: cannot be loaded "
                                               f"({type(exc).__name__}: {exc})") from None
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    log.info("captioning model %s loaded on %s", source or folder, device)
    return Captioner(model, processor, device, source or str(folder))

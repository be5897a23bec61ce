"""A model's textual inversion embeddings (``[[model.embeddings]]``): EasyNegative and the like.

Each embedding is read with diffusers' own reader (``load_textual_inversion_state_dicts``: a
``.safetensors``/``.pt``/``.bin`` file, a file of a folder, a file of a hub repo) and added with
``load_textual_inversion`` under the word members type. An SD 1.x/2.x embedding holds the vectors
for the one CLIP encoder (diffusers' single-tensor layout, A1111's ``string_to_param`` or
``emb_params``); an SDXL one holds ``clip_l`` and ``clip_g``, each loaded into its own
tokenizer and text encoder. Loaded once into the base pipeline: image-to-image and inpainting
pipelines derived with ``from_pipe`` share its tokenizers and text encoders. Every failure is a
:class:`ModelLoadError` of one line. Runs on the inference thread, from
:func:`inference.loader.load_model`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from config import EmbeddingConfig, ModelConfig
from inference.adapter_files import hub_failure, one_file
from inference.embedding_tokens import token_count
from inference.loader import ModelLoadError, first_line, local_path

log = logging.getLogger(__name__)

SUFFIXES = (".safetensors", ".pt", ".bin")
SDXL_KEYS = frozenset({"clip_l", "clip_g"})


def load_embeddings(pipe: Any, model: ModelConfig, base_dir: Path) -> None:
    """Add every embedding of ``model`` to ``pipe``'s tokenizer(s) and text encoder(s), each under
    the word members type for it."""
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    for emb in model.embeddings:
        state = _read(emb, base_dir)
        if isinstance(state, dict) and SDXL_KEYS <= set(state):
            if not sdxl:
                raise ModelLoadError(f"embedding {emb.name!r}: {emb.source} is an SDXL embedding (clip_l and clip_g) "
                                     "and this is an SD 1.x/2.x model: made for another model family?")
            _add(pipe, emb, state["clip_l"], pipe.text_encoder, pipe.tokenizer)
            _add(pipe, emb, state["clip_g"], pipe.text_encoder_2, pipe.tokenizer_2)
        elif sdxl:
            raise ModelLoadError(f"embedding {emb.name!r}: {emb.source} is an SD 1.x/2.x embedding and this is an "
                                 "SDXL model, which needs one with clip_l and clip_g vectors: made for another "
                                 "model family?")
        else:
            _add(pipe, emb, state, pipe.text_encoder, pipe.tokenizer)
        log.info("model %s: embedding %s loaded as %r (%d vector(s))", model.display_name, emb.name, emb.word,
                 token_count(pipe.tokenizer, emb.word))


def _add(pipe: Any, emb: EmbeddingConfig, weights: Any, encoder: Any, tokenizer: Any) -> None:
    try:
        # Lowercase: CLIP reads prompts lowercased (inference/embedding_tokens.spell_out).
        pipe.load_textual_inversion(weights, token=emb.word.lower(), text_encoder=encoder, tokenizer=tokenizer)
    except ValueError as exc:
        text = str(exc)
        if "incorrect shape" in text:
            width = encoder.get_input_embeddings().weight.shape[-1]
            reason = (f"its vectors do not fit this model's text encoder ({width} wide): made for another model "
                      "family?")
        elif "already in tokenizer vocabulary" in text:
            reason = f"{emb.word!r} is already a word of this model's tokenizer; set token to another word"
        elif "state dictionary is incorrect" in text:
            reason = "the file holds no textual inversion (is it a LoRA or a model instead?)"
        else:
            reason = first_line(exc)
        raise ModelLoadError(f"embedding {emb.name!r} could not be loaded from {emb.source}: {reason}") from None


def _read(emb: EmbeddingConfig, base_dir: Path) -> Any:
    """The embedding's state dict (or bare tensor) as diffusers reads it."""
    from diffusers.loaders.textual_inversion import load_textual_inversion_state_dicts

    path = local_path(emb.source, base_dir)
    if path is None and emb.source.endswith(SUFFIXES):
        path = base_dir / emb.source  # "embeddings/x.pt" is a file name, not an org/name hub id
    kwargs: dict[str, Any] = {}
    if path is not None:
        source = str(_embedding_file(emb, path))
    else:
        source = emb.source
        if emb.weight_name:
            kwargs["weight_name"] = emb.weight_name
    try:
        (state,) = load_textual_inversion_state_dicts([source], **kwargs)
    except OSError as exc:
        if path is None:
            raise _hub_failure(emb, exc) from None
        raise ModelLoadError(f"embedding {emb.name!r}: {source} could not be read: {first_line(exc)}") from None
    except (ValueError, RuntimeError, KeyError, EOFError) as exc:  # a damaged or foreign file (pickle, safetensors)
        raise ModelLoadError(f"embedding {emb.name!r}: {source} is not an embedding file diffusers can read: "
                             f"{first_line(exc)}") from None
    return state


def _embedding_file(emb: EmbeddingConfig, path: Path) -> Path:
    """The one embedding file ``source`` (and ``weight_name``) point at, or one clear line why not."""
    return one_file(f"embedding {emb.name!r}", "embedding", path, emb.weight_name, SUFFIXES,
                    "no .safetensors, .pt or .bin file")


def _hub_failure(emb: EmbeddingConfig, exc: OSError) -> ModelLoadError:
    return hub_failure(f"embedding {emb.name!r}", emb.source, emb.weight_name, "./embeddings", exc)

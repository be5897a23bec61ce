"""Prompt embeddings through compel for weighted, ``BREAK``-split and long prompts (SD 1.x/2.x, SDXL).

Only a batch with such a prompt comes here (:func:`needs_embeddings`); any other goes to diffusers
as text, exactly as before. compel encodes every 75-token chunk with its own start and end tokens
(``truncate_long_prompts=False``) and pads all prompts and negatives of the call to one length with
the encoding of "", as diffusers needs equal lengths. The settings are those of compel's own
``CompelForSD`` / ``CompelForSDXL``; the text is given to compel as prompt objects built by
inference/prompt_syntax.py (A1111 syntax), never parsed by compel's own syntax.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch
from compel import Compel, DiffusersTextualInversionManager, ReturnedEmbeddingsType
from compel.prompt_parser import Conjunction, FlattenedPrompt, Fragment

from inference.embedding_tokens import further_vectors, token_count
from inference.jobs import JobError
from inference.prompt_syntax import PromptSyntaxError, needs_weighting, parse_weighted, plain_text

CLIP_WINDOW = 75  # 77 positions minus the start and end tokens


def needs_embeddings(tokenizer: Any, texts: Sequence[str]) -> bool:
    """Whether any of ``texts`` has weighting syntax, ``BREAK``, or more tokens than CLIP's window
    (a textual inversion of several vectors counting as its vectors)."""
    return any(needs_weighting(t) or token_count(tokenizer, t) > CLIP_WINDOW for t in texts if t)


def inversion_manager(pipe: Any, tokenizer: Any) -> DiffusersTextualInversionManager | None:
    """compel's manager that writes out each multi-vector textual inversion of ``tokenizer`` (with
    diffusers' ``maybe_convert_prompt``, as the text path does); None while it holds none, so compel
    encodes the token ids as they are. compel's manager always asks ``pipe.tokenizer``: SDXL's
    second encoder gets a view of the pipeline whose tokenizer is its own."""
    if not further_vectors(tokenizer):
        return None
    return DiffusersTextualInversionManager(SimpleNamespace(tokenizer=tokenizer,
                                                            maybe_convert_prompt=pipe.maybe_convert_prompt))


def prompt_embeddings(pipe: Any, prompts: Sequence[str], negatives: Sequence[str] | None,
                      *, sdxl: bool) -> dict[str, torch.Tensor]:
    """Pipeline keyword arguments (``prompt_embeds``, ``negative_prompt_embeds``, for SDXL also the
    pooled ones) for ``prompts`` and ``negatives`` (None: no negative prompt at all, which SDXL with
    ``force_zeros_for_empty_prompt`` draws as zeros; diffusers makes those itself)."""
    if negatives is None and not (sdxl and pipe.config.get("force_zeros_for_empty_prompt", False)):
        negatives = [""] * len(prompts)
    texts = list(prompts) + list(negatives or [])
    try:
        parsed = [parse_weighted(t) for t in texts]
    except PromptSyntaxError as exc:  # validation refuses these first; a job from the log may not have been
        raise JobError(str(exc)) from exc
    n = len(prompts)
    device = str(pipe._execution_device)  # where diffusers runs the encoders (with CPU offload too)
    if not sdxl:
        embeds = _encode(Compel(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder,
                                textual_inversion_manager=inversion_manager(pipe, pipe.tokenizer),
                                truncate_long_prompts=False, device=device), parsed)
        out = {"prompt_embeds": embeds[:n]}
        if negatives is not None:
            out["negative_prompt_embeds"] = embeds[n:]
        return out
    kind = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
    first = Compel(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, returned_embeddings_type=kind,
                   textual_inversion_manager=inversion_manager(pipe, pipe.tokenizer),
                   truncate_long_prompts=False, device=device)
    second = Compel(tokenizer=pipe.tokenizer_2, text_encoder=pipe.text_encoder_2, returned_embeddings_type=kind,
                    textual_inversion_manager=inversion_manager(pipe, pipe.tokenizer_2),
                    truncate_long_prompts=False, requires_pooled=True, device=device)
    left, right = _encode(first, parsed), _encode(second, parsed)
    if left.shape[1] != right.shape[1]:  # the two tokenizers split a text differently: pad the shorter
        longer = max(left.shape[1], right.shape[1])
        left, right = (_pad(c, e, longer) for c, e in ((first, left), (second, right)))
    embeds = torch.cat([left, right], dim=-1)
    # The pooled embedding is CLIP's summary of the (first 77 tokens of the) words, syntax left out.
    pooled = second.conditioning_provider.get_pooled_embeddings([plain_text(t) for t in texts],
                                                                device=second.device)
    out = {"prompt_embeds": embeds[:n], "pooled_prompt_embeds": pooled[:n]}
    if negatives is not None:
        out.update(negative_prompt_embeds=embeds[n:], negative_pooled_prompt_embeds=pooled[n:])
    return out


def _encode(compel: Compel, parsed: Sequence[list[list[tuple[str, float]]]]) -> torch.Tensor:
    """One conditioning per text (its BREAK chunks concatenated), padded to one length."""
    conditionings = []
    for segments in parsed:
        if not any(segments):
            conditionings.append(compel.build_conditioning_tensor(""))
            continue
        conjunction = Conjunction([FlattenedPrompt([Fragment(t, w) for t, w in seg]) for seg in segments if seg])
        conditionings.append(compel.build_conditioning_tensor_for_conjunction(conjunction)[0])
    return torch.cat(compel.pad_conditioning_tensors_to_same_length(conditionings))


def _pad(compel: Compel, embeds: torch.Tensor, length: int) -> torch.Tensor:
    empty = compel.conditioning_provider.empty_z
    while embeds.shape[1] < length:
        embeds = torch.cat([embeds, empty.expand(embeds.shape[0], -1, -1)], dim=1)
    return embeds

"""The call-overhead trims: same pixels, same device, same warnings; only the bot's instances change."""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pytest
import torch

from config import Config
from inference.call_overhead import is_trimmed, trim_call_overhead
from inference.executor import GpuExecutor
from inference.jobs import JobKind
from inference.loader import load_model


def _pipes(config: Config) -> dict[JobKind, object]:
    return load_model(config.model, config.device, config.base_dir).pipes


def _image(pipe: object, seed: int = 7) -> np.ndarray:
    with torch.inference_mode():
        out = pipe(prompt=["a red fox", "an owl"], num_inference_steps=2, guidance_scale=1.5,  # type: ignore[operator]
                   width=64, height=64, generator=[torch.Generator().manual_seed(seed + i) for i in range(2)])
    return np.stack([np.asarray(image) for image in out.images])


def test_a_trimmed_pipeline_paints_the_same_pixels(tiny_config: Config) -> None:
    plain = _pipes(tiny_config)[JobKind.IMAGINE]
    trimmed = _pipes(tiny_config)[JobKind.IMAGINE]
    trim_call_overhead(trimmed)
    assert is_trimmed(trimmed) and not is_trimmed(plain)
    assert np.array_equal(_image(plain), _image(trimmed))


def test_trimming_keeps_the_class_name_device_and_from_pipe(tiny_config: Config) -> None:
    from diffusers import AutoPipelineForImage2Image, StableDiffusionPipeline

    pipe = _pipes(tiny_config)[JobKind.IMAGINE]
    device = pipe._execution_device  # type: ignore[attr-defined]
    trim_call_overhead(pipe)
    trim_call_overhead(pipe)  # idempotent: no subclass of a subclass
    assert isinstance(pipe, StableDiffusionPipeline)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert type(pipe).__mro__[1] is StableDiffusionPipeline
    assert pipe._execution_device == device  # type: ignore[attr-defined]
    derived = AutoPipelineForImage2Image.from_pipe(pipe)  # looked up by class name
    assert type(derived).__name__ == "StableDiffusionImg2ImgPipeline"


def test_processors_answer_their_signature_at_once_and_stay_per_instance(tiny_config: Config) -> None:
    from diffusers.models.attention_processor import AttnProcessor2_0

    trimmed = _pipes(tiny_config)[JobKind.IMAGINE]
    plain = _pipes(tiny_config)[JobKind.IMAGINE]
    trim_call_overhead(trimmed)
    processors = list(trimmed.unet.attn_processors.values()) + list(trimmed.vae.attn_processors.values())  # type: ignore[attr-defined]
    assert processors and all(is_trimmed(p) and isinstance(p, AttnProcessor2_0) for p in processors)
    bound = processors[0].__call__
    assert "__signature__" in vars(type(bound))  # inspect returns it before looking any further
    assert inspect.signature(bound) == inspect.signature(AttnProcessor2_0().__call__)
    assert bound.args == (processors[0],)  # bound on each access: a copied processor binds to itself
    assert not any(is_trimmed(p) for p in plain.unet.attn_processors.values())  # type: ignore[attr-defined]
    assert "__signature__" not in vars(AttnProcessor2_0.__call__)  # diffusers' own class is untouched


def test_unknown_attention_arguments_are_still_warned_about_and_dropped(
        tiny_config: Config, caplog: pytest.LogCaptureFixture) -> None:
    pipe = _pipes(tiny_config)[JobKind.IMAGINE]
    trim_call_overhead(pipe)
    attention = next(m for m in pipe.unet.modules() if type(m).__name__ == "Attention")  # type: ignore[attr-defined]
    hidden = torch.randn(1, 16, attention.query_dim)
    library = logging.getLogger("diffusers")  # does not propagate; tests run it at ERROR
    library.addHandler(caplog.handler)
    level = library.level
    library.setLevel(logging.WARNING)
    try:
        with torch.inference_mode():
            expected = attention(hidden)
            got = attention(hidden, bogus_scale=2.0)
    finally:
        library.removeHandler(caplog.handler)
        library.setLevel(level)
    assert torch.equal(expected, got)
    assert "bogus_scale" in caplog.text


def test_the_executor_trims_every_pipeline_it_loads(tiny_config: Config) -> None:
    executor = GpuExecutor(tiny_config)
    try:
        loaded = executor.submit(executor.model).result(timeout=120)
    finally:
        executor.shutdown()
    assert all(is_trimmed(pipe) for pipe in loaded.pipes.values())
    assert all(is_trimmed(p) for p in loaded.pipes[JobKind.VARY].unet.attn_processors.values())


def test_prompts_are_not_tokenized_for_textual_inversion_while_none_of_several_vectors_is_loaded(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = _pipes(tiny_config)[JobKind.IMAGINE]
    trim_call_overhead(pipe)
    tokenizer = pipe.tokenizer  # type: ignore[attr-defined]
    tokenized: list[str] = []
    tokenize = tokenizer.tokenize
    monkeypatch.setattr(tokenizer, "tokenize", lambda text, **kw: tokenized.append(text) or tokenize(text, **kw))
    prompts = ["a red fox", "<|endoftext|> an owl"]
    converted = pipe.maybe_convert_prompt(prompts, tokenizer)  # type: ignore[attr-defined]
    assert converted == prompts and converted is not prompts  # a new list, like diffusers'
    assert pipe.maybe_convert_prompt("a red fox", tokenizer) == "a red fox"  # type: ignore[attr-defined]
    assert tokenized == []


def test_a_multi_vector_textual_inversion_is_still_expanded(tiny_config: Config) -> None:
    plain = _pipes(tiny_config)[JobKind.IMAGINE]
    trimmed = _pipes(tiny_config)[JobKind.IMAGINE]
    trim_call_overhead(trimmed)
    for pipe in (plain, trimmed):
        pipe.tokenizer.add_tokens(["<cat-toy>", "<cat-toy>_1", "<cat-toy>_2"])  # type: ignore[attr-defined]
    prompt = ["a <cat-toy> on a hill", "an owl"]
    expected = plain.maybe_convert_prompt(prompt, plain.tokenizer)  # type: ignore[attr-defined]
    assert expected[0] == "a <cat-toy> <cat-toy>_1 <cat-toy>_2 on a hill"
    assert trimmed.maybe_convert_prompt(prompt, trimmed.tokenizer) == expected  # type: ignore[attr-defined]


def test_a_compiled_unet_keeps_diffusers_processors(tiny_config: Config) -> None:
    """Dynamo splits its graph around a trimmed processor; a compiled graph has nothing to trim."""
    pipe = _pipes(tiny_config)[JobKind.IMAGINE]
    pipe.unet = torch.compile(pipe.unet)  # type: ignore[attr-defined]  (compiles lazily: nothing runs here)
    trim_call_overhead(pipe)
    assert is_trimmed(pipe)
    assert not any(is_trimmed(p) for p in pipe.unet.attn_processors.values())  # type: ignore[attr-defined]
    assert all(is_trimmed(p) for p in pipe.vae.attn_processors.values())  # type: ignore[attr-defined]

"""Textual inversion embeddings ([[model.embeddings]]) on the tiny SD and SDXL models: loaded with
diffusers' loader, used in prompts and negatives as diffusers itself uses them (pixel parity with a
pipeline given the same file with ``load_textual_inversion``), written out to all their vectors on
the compel path too, and every loading failure one clear line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from config import DeviceConfig, EmbeddingConfig, ModelConfig
from inference.embedding_tokens import spell_out, token_count
from inference.generate import ready_pipe, run_diffusion_batch
from inference.jobs import JobKind, TextToImageJob
from inference.loader import LoadedModel, ModelLoadError, load_model
from inference.prepare import prepare
from inference.prompting import needs_embeddings, prompt_embeddings
from inference.validation import token_note
from tests.fixtures.tiny_embeddings import text_width, write_embedding, write_sdxl_embedding


def job(prompt: str, negative: str = "", model: str = "tiny") -> TextToImageJob:
    return TextToImageJob(job_id="j", owner=1, prompt=prompt, negative_prompt=negative, width=64, height=64,
                          steps=2, guidance=5.0, seed=3, model=model)


def load(path: Path, *embeddings: EmbeddingConfig, name: str = "tiny", **extra: Any) -> LoadedModel:
    return load_model(ModelConfig(source=str(path), name=name, embeddings=embeddings, **extra), DeviceConfig(device="cpu"))


def ours(model: LoadedModel, the_job: TextToImageJob) -> np.ndarray:
    out = run_diffusion_batch(model, [prepare(the_job)], lambda *_: True)
    assert out is not None
    return np.asarray(out[0].images[0], dtype=np.int16)


def raw(pipe: Any, the_job: TextToImageJob, **prompt_kwargs: Any) -> np.ndarray:
    with torch.inference_mode():
        image = pipe(num_inference_steps=the_job.steps, guidance_scale=the_job.guidance, width=64, height=64,
                     generator=[torch.Generator("cpu").manual_seed(the_job.seed)], **prompt_kwargs).images[0]
    return np.asarray(image, dtype=np.int16)


@pytest.fixture
def easy_negative(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """An EasyNegative-like file: two vectors in A1111's ``emb_params`` layout."""
    return write_embedding(tmp_path / "EasyNegative.safetensors", text_width(tiny_model_dir), vectors=2)


# --------------------------------------------------------------------------- SD 1.x/2.x


def test_an_embedding_in_the_negative_draws_what_diffusers_draws_with_it(tiny_model_dir: Path,
                                                                          easy_negative: Path) -> None:
    from diffusers import StableDiffusionPipeline

    model = load(tiny_model_dir, EmbeddingConfig("EasyNegative", str(easy_negative)))
    reference = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None,
                                                        requires_safety_checker=False)
    reference.set_progress_bar_config(disable=True)
    reference.load_textual_inversion(str(easy_negative), token="easynegative")
    the_job = job("a red fox", negative="EasyNegative")  # typed as Civitai writes it
    expected = raw(reference, the_job, prompt=["a red fox"], negative_prompt=["easynegative"])
    assert np.abs(ours(model, the_job) - expected).max() <= 1


def test_an_embedding_in_the_prompt_changes_the_picture(tiny_model_dir: Path, tmp_path: Path) -> None:
    width = text_width(tiny_model_dir)
    embedding = write_embedding(tmp_path / "fox.pt", width, layout="a1111-pt", seed=4)
    with_it = load(tiny_model_dir, EmbeddingConfig("foxy", str(embedding)))
    without = load(tiny_model_dir)
    the_job = job("a foxy house")
    assert np.abs(ours(with_it, the_job) - ours(without, the_job)).max() > 8


def test_every_vector_of_a_multi_vector_embedding_is_written_out_whatever_its_case(tiny_model_dir: Path,
                                                                                      easy_negative: Path) -> None:
    model = load(tiny_model_dir, EmbeddingConfig("EasyNegative", str(easy_negative)))
    pipe = model.pipes[JobKind.IMAGINE]
    (spelled,) = spell_out(pipe.tokenizer, ["ugly, EASYnegative"])
    assert pipe.maybe_convert_prompt(spelled, pipe.tokenizer) == "ugly, easynegative easynegative_1"
    assert token_count(pipe.tokenizer, "EasyNegative") == 2
    fake = type("Tokenizer", (), {"added_tokens_encoder": {"brea": 1, "brea_1": 2}})()
    assert spell_out(fake, ["a BREAK Brea b"]) == ["a BREAK brea b"]  # whole words only
    # image-to-image and inpainting share the tokenizer and text encoder of the base pipeline
    assert all(p.tokenizer is pipe.tokenizer and p.text_encoder is pipe.text_encoder for p in model.pipes.values())


def test_a_dedicated_inpainting_model_gets_the_embeddings_too(tiny_model_dir: Path, easy_negative: Path) -> None:
    model = load(tiny_model_dir, EmbeddingConfig("EasyNegative", str(easy_negative)),
                 inpaint_source=str(tiny_model_dir))
    base, paint = model.pipes[JobKind.IMAGINE], model.pipes[JobKind.PAINT]
    assert paint.tokenizer is not base.tokenizer  # its own weights, loaded from inpaint_source
    ids = base.tokenizer.added_tokens_encoder
    assert {t: ids[t] for t in ("easynegative", "easynegative_1")} == {
        t: paint.tokenizer.added_tokens_encoder[t] for t in ("easynegative", "easynegative_1")}
    rows = [ids["easynegative"], ids["easynegative_1"]]
    assert torch.equal(paint.text_encoder.get_input_embeddings().weight[rows],
                       base.text_encoder.get_input_embeddings().weight[rows])


def test_a_prompt_morph_reads_every_vector_of_an_embedding_too(tiny_model_dir: Path, easy_negative: Path) -> None:
    from inference.morph import encode

    model = load(tiny_model_dir, EmbeddingConfig("EasyNegative", str(easy_negative)))
    pipe = model.pipes[JobKind.IMAGINE]
    with torch.inference_mode():
        expected, _ = pipe.encode_prompt("a easynegative", "cpu", 1, False)  # diffusers writes it out
    assert torch.allclose(encode(pipe, model, "a EasyNegative", "", 1.0)[0], expected)


def test_a_diffusers_layout_embedding_from_a_folder_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    write_embedding(tmp_path / "cat-toy" / "learned_embeds.safetensors", text_width(tiny_model_dir),
                    layout="diffusers", token="<cat-toy>")
    model = load(tiny_model_dir, EmbeddingConfig("cat-toy", str(tmp_path / "cat-toy"), token="<cat-toy>"))
    assert "<cat-toy>" in model.pipes[JobKind.IMAGINE].tokenizer.added_tokens_encoder


def test_a_weighted_prompt_with_an_embedding_goes_through_compel_with_all_its_vectors(tiny_model_dir: Path,
                                                                                        easy_negative: Path) -> None:
    model = load(tiny_model_dir, EmbeddingConfig("EasyNegative", str(easy_negative)))
    pipe = model.pipes[JobKind.IMAGINE]
    with torch.inference_mode():
        ours_embeds = prompt_embeddings(pipe, ["EasyNegative fox"], None, sdxl=False)["prompt_embeds"]
        text_embeds, _ = pipe.encode_prompt("easynegative fox", "cpu", 1, False)  # diffusers writes it out
    assert torch.allclose(ours_embeds, text_embeds, atol=1e-5)
    the_job = job("a (red:1.2) fox", negative="(EasyNegative:1.1), blurry")
    assert needs_embeddings(pipe.tokenizer, [the_job.prompt])
    assert ours(model, the_job).shape == (64, 64, 3)


def test_a_multi_vector_embedding_counts_as_its_vectors_toward_the_77_tokens(tiny_model_dir: Path,
                                                                               tmp_path: Path) -> None:
    wide = write_embedding(tmp_path / "wide.safetensors", text_width(tiny_model_dir), vectors=40)
    model = load(tiny_model_dir, EmbeddingConfig("wide", str(wide)))
    tokenizer = model.pipes[JobKind.IMAGINE].tokenizer
    text = "wide " + " ".join(["fox"] * 40)  # 41 words, 80 positions
    assert needs_embeddings(tokenizer, [text])
    assert "is 80 tokens" in token_note(tokenizer, text)
    assert not needs_embeddings(tokenizer, [" ".join(["fox"] * 41)])


# --------------------------------------------------------------------------- SDXL


def test_an_sdxl_embedding_fills_both_encoders_and_draws_what_diffusers_draws(tiny_sdxl_dir: Path,
                                                                              tmp_path: Path) -> None:
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import load_file

    file = write_sdxl_embedding(tmp_path / "negxl.safetensors", tiny_sdxl_dir, vectors=2)
    model = load(tiny_sdxl_dir, EmbeddingConfig("negxl", str(file)), name="xl")
    reference = StableDiffusionXLPipeline.from_pretrained(tiny_sdxl_dir)
    reference.set_progress_bar_config(disable=True)
    state = load_file(str(file))
    reference.load_textual_inversion(state["clip_l"], token="negxl", text_encoder=reference.text_encoder,
                                     tokenizer=reference.tokenizer)
    reference.load_textual_inversion(state["clip_g"], token="negxl", text_encoder=reference.text_encoder_2,
                                     tokenizer=reference.tokenizer_2)
    the_job = job("a red fox", negative="negxl", model="xl")
    expected = raw(reference, the_job, prompt=["a red fox"], negative_prompt=["negxl"])
    assert np.abs(ours(model, the_job) - expected).max() <= 1
    for encoder in (model.pipes[JobKind.IMAGINE].text_encoder, model.pipes[JobKind.IMAGINE].text_encoder_2):
        assert encoder.get_input_embeddings().weight.shape[0] == reference.text_encoder.get_input_embeddings().weight.shape[0]


def test_a_weighted_sdxl_prompt_with_an_embedding_writes_it_out_in_both_encoders(tiny_sdxl_dir: Path,
                                                                                 tmp_path: Path) -> None:
    file = write_sdxl_embedding(tmp_path / "negxl.safetensors", tiny_sdxl_dir, vectors=2)
    model = load(tiny_sdxl_dir, EmbeddingConfig("negxl", str(file), token="NegXL"), name="xl")
    pipe = ready_pipe(model, JobKind.IMAGINE, job("x", model="xl"))
    with torch.inference_mode():
        embedded = prompt_embeddings(pipe, ["NegXL fox"], None, sdxl=True)
        text = pipe.encode_prompt("negxl fox", device="cpu", do_classifier_free_guidance=False)  # diffusers writes it out
    assert torch.allclose(embedded["prompt_embeds"], text[0], atol=1e-5)
    assert torch.allclose(embedded["pooled_prompt_embeds"], text[2], atol=1e-5)
    assert ours(model, job("a (red:1.3) fox", negative="NegXL", model="xl")).shape == (64, 64, 3)


# --------------------------------------------------------------------------- failures, one line each


def _refusal(path: Path, *embeddings: EmbeddingConfig, **extra: Any) -> str:
    with pytest.raises(ModelLoadError) as caught:
        load(path, *embeddings, **extra)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_an_embedding_of_another_width_is_refused_as_made_for_another_family(tiny_model_dir: Path,
                                                                               tmp_path: Path) -> None:
    file = write_embedding(tmp_path / "wide.safetensors", text_width(tiny_model_dir) + 16)
    message = _refusal(tiny_model_dir, EmbeddingConfig("wide", str(file)))
    assert "embedding 'wide'" in message and "made for another model family?" in message


def test_an_sdxl_embedding_on_an_sd_model_and_the_reverse_are_refused(tiny_model_dir: Path, tiny_sdxl_dir: Path,
                                                                      tmp_path: Path) -> None:
    xl_file = write_sdxl_embedding(tmp_path / "xl.safetensors", tiny_sdxl_dir)
    sd_file = write_embedding(tmp_path / "sd.safetensors", text_width(tiny_sdxl_dir))
    assert "is an SDXL embedding" in _refusal(tiny_model_dir, EmbeddingConfig("xl", str(xl_file)))
    message = _refusal(tiny_sdxl_dir, EmbeddingConfig("sd", str(sd_file)), name="xl")
    assert "is an SD 1.x/2.x embedding" in message and "made for another model family?" in message


def test_a_missing_file_a_folder_of_several_and_a_foreign_file_are_refused(tiny_model_dir: Path,
                                                                           tmp_path: Path) -> None:
    gone = tmp_path / "gone.safetensors"
    assert f"{gone} does not exist" in _refusal(tiny_model_dir, EmbeddingConfig("gone", str(gone)))
    folder = tmp_path / "many"
    for name in ("a.safetensors", "b.pt"):
        write_embedding(folder / name, text_width(tiny_model_dir), layout="a1111" if name.endswith("safetensors")
                        else "a1111-pt")
    assert "set weight_name" in _refusal(tiny_model_dir, EmbeddingConfig("many", str(folder)))
    assert "weight_name 'c.pt' is not in" in _refusal(tiny_model_dir, EmbeddingConfig("many", str(folder),
                                                                                      weight_name="c.pt"))
    from safetensors.torch import save_file

    lora_like = tmp_path / "lora.safetensors"
    save_file({"a.lora_down.weight": torch.zeros(2, 2), "a.lora_up.weight": torch.zeros(2, 2)}, str(lora_like))
    assert "holds no textual inversion" in _refusal(tiny_model_dir, EmbeddingConfig("lora", str(lora_like)))


def test_a_token_that_is_already_a_word_of_the_tokenizer_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    file = write_embedding(tmp_path / "x.safetensors", text_width(tiny_model_dir))
    message = _refusal(tiny_model_dir, EmbeddingConfig("fo", str(file)))
    assert "is already a word of this model's tokenizer" in message


def test_a_hub_embedding_offline_says_how_to_get_it(tiny_model_dir: Path) -> None:
    message = _refusal(tiny_model_dir, EmbeddingConfig("toy", "sd-concepts-library/cat-toy"))
    assert "HF_HUB_OFFLINE" in message and "hf download sd-concepts-library/cat-toy" in message


def test_embeddings_on_a_kandinsky_model_are_refused_before_anything_loads(tmp_path: Path) -> None:
    file = write_embedding(tmp_path / "x.safetensors", 32)
    message = _refusal(Path("kandinsky-community/kandinsky-2-2-decoder"), EmbeddingConfig("x", str(file)),
                       family="kandinsky22")
    assert "Kandinsky 2.2 takes none" in message

"""A member's options become a valid job or one clear message."""

from __future__ import annotations

import pytest

from inference.jobs import JobError
from inference.presets import PRESETS
from inference.validation import (
    ModelInfo,
    build_anime,
    build_imagine,
    build_vary,
    clean_text,
    resolve_size,
    token_note,
)
from tests.fixtures.tiny_models import WORDS

SD15 = ModelInfo("sd15", PRESETS["sd15"], None, ("pixel",))


def imagine(**kw: object):
    kw.setdefault("prompt", "a red fox")
    return build_imagine("j1", 1, SD15, **kw)  # type: ignore[arg-type]


def test_defaults_come_from_the_model_preset() -> None:
    job = imagine(seed=5).job
    assert (job.width, job.height, job.steps, job.guidance, job.count, job.seed) == (512, 512, 25, 7.0, 1, 5)


def test_a_missing_seed_is_drawn_at_random_and_recorded() -> None:
    seeds = {imagine().job.seed for _ in range(5)}
    assert len(seeds) > 1 and all(0 <= s < 2**32 for s in seeds)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prompt": "   "}, "prompt is empty"),
        ({"prompt": "x" * 1001}, "1,001 characters"),
        ({"width": 500}, "multiple of 8 (try 496 or 504)"),
        ({"width": 4096}, "between 256 and 1024"),
        ({"steps": 0}, "Steps must be between 1 and 100"),
        ({"guidance": 50.0}, "Guidance must be between 0 and 20"),
        ({"count": 5}, "1 to 4 images"),
        ({"seed": -1}, "seed must be between 0"),
        ({"aspect": "circle"}, "Unknown aspect"),
        ({"scheduler": "magic"}, "Unknown sampler"),
        ({"loras": [("nope", 1.0)]}, "Unknown LoRA 'nope'"),
        ({"loras": [("pixel", 3.0)]}, "LoRA weight"),
        ({"negative": "y" * 2000}, "negative prompt is 2,000 characters"),
    ],
)
def test_out_of_range_options_get_a_clear_message(options: dict[str, object], message: str) -> None:
    with pytest.raises(JobError) as info:
        imagine(**options)
    assert message in str(info.value)


def test_aspect_presets_set_the_size() -> None:
    job = imagine(aspect="portrait").job
    assert job.height > job.width and job.width % 8 == 0 and job.height % 8 == 0


def test_invisible_and_control_characters_are_removed() -> None:
    assert clean_text("a\u200bcat\u202e\x07 on\n\na  mat", limit=100) == "acat on a mat"
    with pytest.raises(JobError):
        clean_text("\u200b\u200d\ufeff", limit=10)


def test_the_77_token_window_names_what_was_cut(tiny_model_dir) -> None:
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(tiny_model_dir / "tokenizer"))
    short = " ".join(WORDS[:10])
    assert token_note(tok, short) == ""
    long = " ".join(WORDS * 3)
    note = token_note(tok, long)
    assert "the model reads only the first 75" in note
    cut = note.split("\u201c")[1].rstrip("\u201d").removesuffix("...")
    assert cut and cut in long and not long.startswith(cut)


def test_variation_size_follows_the_source_aspect() -> None:
    job = build_vary("v", 1, SD15, init_image="/x.png", source_size=(1600, 900), strength=0.5).job
    assert job.width > job.height and job.width % 8 == 0 and job.strength == 0.5
    with pytest.raises(JobError, match="Strength"):
        build_vary("v", 1, SD15, init_image="/x.png", source_size=(10, 10), strength=1.5)


def test_anime_styles_are_checked() -> None:
    assert build_anime("a", 1, init_image="/x.png", style="paprika", styles=("paprika",)).job.style == "paprika"
    with pytest.raises(JobError, match="Unknown anime style"):
        build_anime("a", 1, init_image="/x.png", style="pixar", styles=("paprika",))


def test_a_lone_height_is_checked_under_its_own_name_and_makes_a_square() -> None:
    with pytest.raises(JobError, match="The height must be a multiple of 8"):
        resolve_size(SD15.preset, aspect=None, width=None, height=100)
    assert resolve_size(SD15.preset, aspect=None, width=None, height=512) == (512, 512)
    assert resolve_size(SD15.preset, aspect=None, width=640, height=None) == (640, 640)


def test_a_seamless_tile_is_refused_on_kandinsky_and_kept_on_stable_diffusion() -> None:
    kandinsky = ModelInfo("k22", PRESETS["kandinsky22"])
    with pytest.raises(JobError, match=r"Seamless tiles \(`tile`\) work with Stable Diffusion models only"):
        build_imagine("j", 1, kandinsky, prompt="a brick wall", tile=True)
    assert build_imagine("j", 1, kandinsky, prompt="a brick wall").job.tile is False
    assert build_imagine("j", 1, SD15, prompt="a brick wall", tile=True).job.tile is True

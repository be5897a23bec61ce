"""A1111 weighting syntax is read into (text, weight) chunks; brackets that do not balance are refused
with a clear private message on SD/SDXL, and Kandinsky and morphs take the text as written."""

from __future__ import annotations

import pytest

from inference.jobs import JobError
from inference.presets import PRESETS
from inference.prompt_syntax import needs_weighting, parse_weighted, plain_text
from inference.validation import ModelInfo, build_imagine

SD15 = ModelInfo("sd15", PRESETS["sd15"])
KANDINSKY = ModelInfo("k", PRESETS["kandinsky22"])


@pytest.mark.parametrize(
    ("text", "chunks"),
    [
        ("a (red:1.5) fox", [[("a ", 1.0), ("red", 1.5), (" fox", 1.0)]]),
        ("((word))", [[("word", pytest.approx(1.21))]]),
        ("[word]", [[("word", pytest.approx(1 / 1.1))]]),
        ("(a [b]:1.3) c", [[("a ", 1.3), ("b", pytest.approx(1.3 / 1.1)), (" c", 1.0)]]),
        ("a fox BREAK a hat", [[("a fox", 1.0)], [("a hat", 1.0)]]),
        (r"a \(tabby\) C++ cat: 2", [[("a (tabby) C++ cat: 2", 1.0)]]),
        ("a (b:c) d", [[("a ", 1.0), ("b:c", pytest.approx(1.1)), (" d", 1.0)]]),
    ],
)
def test_the_a1111_syntax_is_read_into_weighted_chunks(text: str, chunks: list) -> None:
    assert parse_weighted(text) == chunks


def test_only_text_with_syntax_needs_weighting() -> None:
    assert not needs_weighting("a red fox, C++ and a well-lit room: 2 cats")
    assert not needs_weighting("ABREAKB") and not needs_weighting("")
    assert all(needs_weighting(t) for t in ("a (red:1.5) fox", "[x]", "a BREAK b", "a (b", r"a \(b\)"))
    assert plain_text("a (red:1.5) fox BREAK [hat]") == "a red fox hat"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prompt": "a (red fox"}, r"The prompt has a `\(` that is never closed"),
        ({"prompt": "a red) fox"}, r"The prompt has a `\)` without its opening bracket"),
        ({"prompt": "a [red fox"}, r"The prompt has a `\[` that is never closed"),
        ({"prompt": "a fox", "negative": "blurry]"}, r"The negative prompt has a `\]` without its opening"),
        ({"prompt": "(a BREAK b)"}, "`BREAK` cannot stand inside brackets"),
    ],
)
def test_unbalanced_brackets_are_refused_with_a_clear_message(options: dict, message: str) -> None:
    with pytest.raises(JobError, match=message):
        build_imagine("j", 1, SD15, **options)


def test_an_escaped_bracket_is_accepted() -> None:
    assert build_imagine("j", 1, SD15, prompt=r"a \(tabby\) cat").job.prompt == r"a \(tabby\) cat"


def test_kandinsky_takes_brackets_as_plain_text() -> None:
    assert build_imagine("j", 1, KANDINSKY, prompt="a (red fox").job.prompt == "a (red fox"


def test_a_morph_takes_brackets_as_plain_text_and_keeps_the_cut_note(tiny_model_dir) -> None:
    from transformers import CLIPTokenizer

    from inference.morph_options import build_morph
    from tests.fixtures.tiny_models import WORDS

    info = ModelInfo("sd15", PRESETS["sd15"], CLIPTokenizer.from_pretrained(str(tiny_model_dir / "tokenizer")))
    long = " ".join(list(WORDS) * 3)
    draft = build_morph("m", 1, info, prompt="a (red fox " + long, to_prompt="an owl", frames=4)
    assert draft.job.prompt.startswith("a (red fox")
    assert any("reads only the first 75" in note for note in draft.notes)
    assert build_imagine("j", 1, info, prompt="a red fox " + long).notes == ()

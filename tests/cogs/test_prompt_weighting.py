"""/imagine with weighting syntax, BREAK and a long prompt: the result is posted, its PNG parameters keep
the text as written, no note says words were cut, and unbalanced brackets get a private message."""

from __future__ import annotations

from inference.imaging import parse_parameters
from tests.cogs.helpers import final, image_of, make_world, refusal
from tests.fixtures.tiny_models import WORDS

WEIGHTED = "a (red:1.5) fox, ((detailed)) BREAK [blurry] forest"


async def test_a_weighted_prompt_is_posted_and_its_png_keeps_the_text_as_written(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt=WEIGHTED, negative="(ugly:1.2)", seed=5, steps=2)
    message = await final(result)
    assert message.attachments, message.content
    params = parse_parameters((await image_of(message)).info["parameters"])
    assert params["prompt"] == WEIGHTED and params["negative_prompt"] == "(ugly:1.2)"
    assert not result.ephemeral


async def test_a_long_prompt_gets_no_note_that_words_were_cut(simcord_env) -> None:
    w = make_world(simcord_env)
    long = " ".join(list(WORDS) * 3)
    result = await w.alice.slash(w.channel, "imagine", prompt=long, seed=5, steps=2)
    message = await final(result)
    assert message.attachments, message.content
    sent = [e.json["content"] or "" for e in simcord_env.http_requests if isinstance(e.json, dict) and "content" in e.json]
    assert any("Queued" in text for text in sent)  # the status line the note would have joined
    assert not any("reads only the first" in text for text in sent)


async def test_unbalanced_brackets_are_refused_privately(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a (red fox")
    assert "has a `(` that is never closed" in refusal(result)

"""/morph and the 🎞️ button through the bot: animated results, their flags, and friendly refusals."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
from PIL import Image

from cogs.utils.gate import Flags
from tests.cogs.helpers import button_ids, final, make_world, png, refusal
from tests.cogs.test_nsfw_gate import flags_of, imagine, policy, spoilered


async def animation_of(message: Any) -> Image.Image:
    [attachment] = message.attachments
    return Image.open(io.BytesIO(await attachment.read()))


def button(message: Any, prefix: str) -> str:
    return next(i for i in button_ids(message) if i.startswith(prefix))


async def test_morph_of_an_upload_posts_an_animated_webp_with_the_frames_asked_for(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "morph", image=("src.png", png((64, 64))), prompt="a fox", frames=3,
                                 seed=9, **{"from": 0.2, "to": 0.8})
    message = await final(result)
    animation = await animation_of(message)
    assert message.attachments[0].filename.endswith(".webp") and animation.format == "WEBP"
    assert animation.n_frames == 3 and animation.size == (64, 64)
    assert "seed `9`" in message.content and "3 frames" in message.content and "strength 0.2\u21920.8" in message.content
    ids = button_ids(message)
    assert any(i.startswith("easel:r:") for i in ids)  # reroll and delete; no vary/anime/morph of an animation
    assert not any(i.startswith(("easel:v:", "easel:m:", "easel:a:")) for i in ids)


async def test_a_prompt_morph_moves_from_one_prompt_to_the_other(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "morph", prompt="a red fox", to_prompt="a blue owl", frames=4, seed=2)
    message = await final(result)
    animation = await animation_of(message)
    assert animation.n_frames == 4 and "prompt morph" in message.content and "blue owl" in message.content


async def test_the_morph_button_sweeps_a_result_with_its_own_prompt_and_seed(simcord_env) -> None:
    w = make_world(simcord_env)
    source = await final(await w.alice.slash(w.channel, "imagine", prompt="a castle at night", seed=77, steps=2))
    morphed = await final(await w.bob.click(source, custom_id=button(source, "easel:m:")))
    animation = await animation_of(morphed)
    assert animation.n_frames == 8  # the default
    assert "seed `77`" in morphed.content and "castle at night" in morphed.content
    assert f"<@{w.bob.id}>" in morphed.content  # the new job belongs to whoever clicked


@pytest.mark.parametrize(("options", "expected"), [
    ({"image": ("src.png", png()), "frames": 1}, "2 to 16 frames"),
    ({"image": ("src.png", png()), "frames": 17}, "2 to 16 frames"),
    ({"image": ("src.png", png()), "from": 0.7, "to": 0.7}, "must be below"),
    ({"image": ("src.png", png()), "from": 0.9, "to": 0.3}, "must be below"),
    ({"image": ("src.png", png()), "to": 1.5}, "from 0.05 to 1"),
    ({"prompt": "a fox"}, "needs an `image`"),
    ({"image": ("src.png", png()), "to_prompt": "an owl"}, "not both"),
])
async def test_bad_morph_options_get_a_private_explanation(simcord_env, simcord_bot, options, expected) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "morph", **options)
    assert expected in refusal(result)
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 0


async def test_a_morph_inherits_the_flags_of_the_result_it_animates(simcord_env, simcord_bot) -> None:
    from tests.cogs.test_nsfw_gate import WORD

    w = make_world(simcord_env)
    await policy(simcord_bot, w, "spoiler")
    source = await imagine(w, WORD)
    assert spoilered(source)
    morphed = await final(await w.bob.click(source, custom_id=button(source, "easel:m:")))
    assert spoilered(morphed) and (await flags_of(simcord_bot, morphed)).word


async def test_one_frame_flagged_by_the_checker_flags_the_whole_animation(simcord_env, simcord_bot,
                                                                          monkeypatch) -> None:
    from inference import kind_runners

    real = kind_runners.run_morph

    def second_frame_flagged(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        return dataclasses.replace(result, nsfw=tuple(i == 1 for i in range(len(result.images))))

    monkeypatch.setattr(kind_runners, "run_morph", second_frame_flagged)
    w = make_world(simcord_env)
    await policy(simcord_bot, w, "off")  # "off" never turns off the safety checker
    result = await w.alice.slash(w.channel, "morph", image=("src.png", png((64, 64))), frames=3)
    message = await final(result)
    assert spoilered(message) and await flags_of(simcord_bot, message) == Flags(checker=True)

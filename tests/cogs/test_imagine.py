"""/imagine as a member uses it: queued, progress, a result with parameters and buttons; and
every refusal as a short ephemeral message."""

from __future__ import annotations

from inference.imaging import parse_parameters
from tests.cogs.helpers import assert_no_pings, button_ids, final, gpu_busy, image_of, make_world, refusal


async def test_imagine_posts_a_png_with_its_parameters_and_buttons(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=42, steps=3)
    message = await final(result)
    assert "a red fox" in message.content and "seed `42`" in message.content
    image = await image_of(message)
    assert image.size == (64, 64)
    params = parse_parameters(image.info["parameters"])
    assert params["prompt"] == "a red fox" and params["Seed"] == "42" and params["Steps"] == "3"
    ids = button_ids(message)
    assert any(i.startswith("easel:v:") for i in ids) and any(i.startswith("easel:r:") for i in ids)
    assert not result.ephemeral


async def test_a_grid_gets_upscale_and_variation_buttons_per_image(simcord_env) -> None:
    w = make_world(simcord_env)
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="two cats", count=2, seed=1))
    image = await image_of(message)
    assert image.size == (128, 64)  # two 64 px cells side by side
    ids = button_ids(message)
    assert sum(i.startswith("easel:u:") for i in ids) == 2 and sum(i.startswith("easel:v:") for i in ids) == 2
    assert "seed `1, 2`" in message.content


async def test_mentions_in_prompts_are_shown_but_never_ping(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt=f"@everyone look {w.bob.mention} <@&123>")
    message = (await final(result)).message
    assert "@everyone" not in message.content.replace("@\u200beveryone", "")
    assert not message.mention_everyone and not message.role_mentions
    assert [m.id for m in message.mentions] == [w.alice.id]  # "for @alice", shown without a ping
    assert_no_pings(simcord_env)


async def test_an_overlong_prompt_is_refused_politely(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="x" * 1500)
    assert "1,500 characters" in refusal(result)


async def test_an_unknown_lora_and_a_bad_size_are_explained(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="cat", lora="nope")
    assert "Unknown LoRA" in refusal(result)
    result = await w.alice.slash(w.channel, "imagine", prompt="cat", width=1000, height=64)
    assert "between 64 and 128" in refusal(result)


async def test_the_per_member_cap_refuses_with_a_clear_message(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    with gpu_busy(simcord_bot):
        for _ in range(simcord_bot.config.queue.per_user):
            await w.alice.slash(w.channel, "imagine", prompt="busy")
        result = await w.alice.slash(w.channel, "imagine", prompt="one too many")
        assert "already have" in refusal(result)
        other = await w.bob.slash(w.channel, "imagine", prompt="my first")
        assert not other.ephemeral and "Queued" in other.response.content


async def test_autocomplete_offers_configured_models_and_samplers(simcord_env) -> None:
    w = make_world(simcord_env)
    models = await w.alice.autocomplete(w.channel, "imagine", "model", "ti", prompt="x")
    assert [c["value"] for c in models] == ["tiny"]
    samplers = await w.alice.autocomplete(w.channel, "imagine", "scheduler", "euler", prompt="x")
    assert "euler" in [c["value"] for c in samplers]

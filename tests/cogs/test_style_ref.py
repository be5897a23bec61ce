"""/imagine style_ref:<picture> as a member uses it, on the tiny model with a tiny IP-Adapter: the
upload is kept as the job's input, the result's PNG parameters name the reference's strength, and
every way to get it wrong is one private message."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from config import Config, IpAdapterConfig
from inference.imaging import parse_parameters
from tests.cogs.helpers import assert_no_pings, final, image_of, make_world, png, refusal
from tests.fixtures.tiny_ip_adapter import SUBFOLDER, WEIGHT_NAME


@pytest.fixture
def bot_config(bot_config: Config, tiny_ip_adapter: Path) -> Config:
    """The tiny model with an IP-Adapter, and the same weights as a second model ("plain") without one."""
    ip = IpAdapterConfig(source=str(tiny_ip_adapter), subfolder=SUBFOLDER, weight_name=WEIGHT_NAME, strength=0.7)
    return dataclasses.replace(bot_config, model=dataclasses.replace(bot_config.model, ip_adapter=ip),
                               models=(dataclasses.replace(bot_config.model, name="plain"),))


async def test_imagine_follows_an_uploaded_style_reference(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=3,
                                 style_ref=("look.png", png((80, 96), (30, 160, 90))))
    styled = await image_of(await final(result))
    params = parse_parameters(styled.info["parameters"])
    assert params["Style reference"] == "0.7"  # the configured default strength
    job = await simcord_bot.studio.job(params["easel job"])
    assert job.style_image and Path(job.style_image).is_file()  # kept, so Redo and restarts can use it
    plain = await image_of(await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=3)))
    assert "Style reference" not in plain.info["parameters"]
    assert plain.tobytes() != styled.tobytes()
    assert_no_pings(simcord_env)


async def test_the_members_strength_is_used(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a red fox", style_ref=("look.png", png()),
                                 style_ref_strength=0.25)
    params = parse_parameters((await image_of(await final(result))).info["parameters"])
    assert params["Style reference"] == "0.25"


async def test_a_strength_without_a_reference_is_a_private_refusal(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a red fox", style_ref_strength=0.5)
    assert "needs a `style_ref` picture" in refusal(result)


async def test_an_unusable_reference_upload_gets_a_clear_message(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a red fox", style_ref=("notes.png", b"plain text"))
    assert "not an image" in refusal(result)


async def test_a_model_without_an_ip_adapter_refuses_a_style_reference_privately(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "imagine", prompt="a red fox", model="plain",
                                 style_ref=("look.png", png()))
    assert "no style reference configured; ask an admin" in refusal(result)

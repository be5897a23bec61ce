"""/anime before its weights are in place: members get a short private refusal (no server path, no
job, no download), /easel anime fetches the missing weights off the inference thread, and the
style then works without a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from inference.anime import STYLES
from inference.anime.weights import NOT_SET_UP
from tests.cogs.conftest import eventually
from tests.cogs.helpers import final, make_world, png, refusal
from tests.fixtures.loopback import FileServer


@pytest.fixture
def weights_online(simcord_bot: Any, file_server: FileServer, anime_weights: Path) -> FileServer:
    """Every style downloadable from loopback (the default style also has a local file, as configured)."""
    for style in STYLES:
        file_server.files[f"/{style}.pt"] = anime_weights.read_bytes()
    simcord_bot.studio.anime_weights.urls = {s: (file_server.url(f"/{s}.pt"),) for s in STYLES}
    return file_server


async def test_a_style_without_weights_is_refused_privately_before_anything_runs(
        simcord_env, simcord_bot, weights_online: FileServer, tmp_path: Path) -> None:
    w = make_world(simcord_env)
    result = await w.alice.slash(w.channel, "anime", image=("me.png", png()), style="paprika")
    assert refusal(result) == ("The anime style paprika is not set up on this server yet; an admin can fix it. "
                               "Ready: face_paint_512_v2.")
    assert str(tmp_path) not in refusal(result)
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.alice.id)).total == 0
    assert weights_online.hits == {}  # a request never downloads


async def test_with_no_weights_at_all_every_anime_door_gives_the_short_message(simcord_env, simcord_bot,
                                                                            weights_online: FileServer) -> None:
    simcord_bot.studio.anime_weights.overrides = {}  # the configured file is gone too
    w = make_world(simcord_env)
    assert refusal(await w.alice.slash(w.channel, "anime", image=("me.png", png()))) == NOT_SET_UP
    picture = await w.alice.send(w.channel, "", attachments=[("cat.png", png((64, 64)))])
    assert refusal(await w.bob.context_menu(w.channel, "Anime", picture)) == NOT_SET_UP
    assert weights_online.hits == {}


async def test_easel_anime_fetches_the_missing_weights_and_the_style_then_works(
        simcord_env, simcord_bot, weights_online: FileServer) -> None:
    w = make_world(simcord_env)
    answer = await w.admin.slash(w.channel, "easel anime")
    assert answer.ephemeral
    text = answer.response.content
    assert "Ready: face_paint_512_v2" in text and "Missing: face_paint_512_v1, celeba_distill, paprika" in text
    assert "Downloading them now" in text and "/tmp" not in text
    store = simcord_bot.studio.anime_weights
    await eventually(lambda: store.refusal("paprika") is None and not store.fetching)
    assert weights_online.hits == {f"/{s}.pt": 1 for s in ("face_paint_512_v1", "celeba_distill", "paprika")}

    message = await final(await w.alice.slash(w.channel, "anime", image=("me.png", png((64, 64))), style="paprika"))
    assert "AnimeGAN2" in message.content and message.attachments  # no restart needed

    again = await w.admin.slash(w.channel, "easel anime")
    assert "Ready: face_paint_512_v2, face_paint_512_v1, celeba_distill, paprika" in again.response.content
    assert "Missing" not in again.response.content


async def test_easel_anime_with_downloads_off_says_so(simcord_env, simcord_bot, weights_online: FileServer) -> None:
    simcord_bot.studio.anime_weights.download = False
    w = make_world(simcord_env)
    text = (await w.admin.slash(w.channel, "easel anime")).response.content
    assert "Downloads are off (`anime.download = false`)" in text and "python bot.py --check" in text
    assert weights_online.hits == {}


async def test_easel_anime_is_for_admins(simcord_env) -> None:
    w = make_world(simcord_env)
    assert "easel anime" not in w.bob.available_commands(w.channel)
    assert "easel anime" in w.admin.available_commands(w.channel)

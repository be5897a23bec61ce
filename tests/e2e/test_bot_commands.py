"""easel's slash commands end to end: the real bot.py process, its real discord.py, the fake Discord.

Login and command sync, /imagine pixel for pixel against a direct diffusers call, /vary and /paint with
attachments downloaded from the fake's file server, /anime, and the commands that answer at once.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from inference.imaging import read_parameters
from inference.imaging.pngmeta import parse_parameters
from tests.e2e.client import Member, pings
from tests.e2e.conftest import Easel
from tests.e2e.easel_helpers import (
    decode,
    encode,
    job_id_of,
    png,
    refusal_of,
    result_attachment,
    result_of,
)
from tests.e2e.fake_discord import EPHEMERAL, FakeDiscord
from tests.e2e.fake_gateway import IDENTIFY

pytestmark = pytest.mark.asyncio(loop_scope="module")

STRING, INTEGER, BOOLEAN, CHANNEL, NUMBER, ATTACHMENT = 3, 4, 5, 7, 10, 11
ROLE = 8
SUBCOMMAND, MESSAGE_MENU = 1, 3
MANAGE_GUILD = 1 << 5

# Every slash command and its options as (type, required); menus are message context menus.
# The diffusion options /imagine, /vary and /paint share (cogs/utils/options.py).
SHARED: dict[str, tuple[int, bool]] = {
    "negative": (STRING, False), "steps": (INTEGER, False), "guidance": (NUMBER, False), "model": (STRING, False),
    "scheduler": (STRING, False), "spacing": (STRING, False), "eta": (NUMBER, False), "lora": (STRING, False),
    "style": (STRING, False)}
SCHEMA: dict[str, dict[str, tuple[int, bool]]] = {
    "imagine": {"prompt": (STRING, True), "count": (INTEGER, False), "aspect": (STRING, False),
                "width": (INTEGER, False), "height": (INTEGER, False), "seed": (INTEGER, False), "tile": (BOOLEAN, False),
                "style_ref": (ATTACHMENT, False), "style_ref_strength": (NUMBER, False),
                **SHARED,
                "control": (ATTACHMENT, False), "control_mode": (STRING, False), "control_strength": (NUMBER, False)},
    "vary": {"image": (ATTACHMENT, True), "prompt": (STRING, False), "strength": (NUMBER, False),
             "seed": (INTEGER, False), "count": (INTEGER, False), **SHARED},
    "paint": {"image": (ATTACHMENT, True), "prompt": (STRING, True), "mask": (ATTACHMENT, False),
              "region": (STRING, False), "box": (STRING, False), "strength": (NUMBER, False),
              "seed": (INTEGER, False), **SHARED},
    "anime": {"image": (ATTACHMENT, True), "style": (STRING, False), "whole_image": (BOOLEAN, False)},
    "morph": {"image": (ATTACHMENT, False), "prompt": (STRING, False), "to_prompt": (STRING, False),
              "frames": (INTEGER, False), "from": (NUMBER, False), "to": (NUMBER, False), "seed": (INTEGER, False),
              "model": (STRING, False)},
    "describe": {"image": (ATTACHMENT, True)},
    "upscale": {"image": (ATTACHMENT, True), "factor": (INTEGER, False), "mode": (STRING, False),
                "prompt": (STRING, False)},
    "history": {"search": (STRING, False), "kind": (STRING, False), "server": (BOOLEAN, False)},
    "forget": {},
    "queue": {},
}
EASEL_SUBCOMMANDS = {
    "settings": {"enable_channel": (CHANNEL, False), "disable_channel": (CHANNEL, False), "nsfw": (STRING, False),
                 "per_user_cap": (INTEGER, False), "default_model": (STRING, False), "channel": (CHANNEL, False),
                 "allowed_commands": (STRING, False), "reset": (BOOLEAN, False)},
    "status": {},
    "anime": {},
    "stats": {},
    "limits": {"daily": (INTEGER, False), "role": (ROLE, False), "role_daily": (INTEGER, False),
               "role_weight": (INTEGER, False), "clear_role": (ROLE, False)},
}
PREFS_SUBCOMMANDS = {
    "show": {},
    "set": {"aspect": (STRING, False), "model": (STRING, False), "negative": (STRING, False),
            "sampler": (STRING, False), "private": (BOOLEAN, False), "dm_when_done": (INTEGER, False)},
    "clear": {"option": (STRING, False)},
}
MENUS = {"Vary image", "Anime", "Describe", "Paint...", "Use as control..."}  # Discord allows five


@pytest.fixture(scope="module")
def server(easel_bot: Easel) -> FakeDiscord:
    return easel_bot.server


@pytest.fixture(scope="module")
def alice(server: FakeDiscord) -> Member:
    return Member(server, "alice")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def direct_pipeline(tiny_model_dir: Path) -> Any:
    """The tiny model loaded straight from diffusers, as a reference for the bot's pixels."""
    from diffusers import StableDiffusionPipeline

    def load() -> Any:
        pipe = StableDiffusionPipeline.from_pretrained(tiny_model_dir, safety_checker=None,
                                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return await asyncio.to_thread(load)


def direct_images(pipe: Any, *, prompt: str, negative: str, seeds: list[int], width: int, height: int, steps: int,
                  guidance: float) -> list[Image.Image]:
    """What diffusers makes for these options: one CPU generator per image, seeded with its seed."""
    import torch

    kwargs: dict[str, Any] = {"prompt": [prompt] * len(seeds), "num_inference_steps": steps,
                              "guidance_scale": guidance, "width": width, "height": height,
                              "generator": [torch.Generator("cpu").manual_seed(s) for s in seeds]}
    if negative:
        kwargs["negative_prompt"] = [negative] * len(seeds)
    with torch.inference_mode():
        return pipe(**kwargs).images


def max_difference(a: Image.Image, b: Image.Image) -> int:
    assert a.size == b.size, (a.size, b.size)
    return int(np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16)).max())


def options_of(command: dict) -> dict[str, tuple[int, bool]]:
    return {o["name"]: (o["type"], bool(o.get("required"))) for o in command.get("options") or []}


async def test_login_syncs_every_command_with_its_options(server: FakeDiscord, easel_bot: Easel) -> None:
    assert len(server.gateway.ops(IDENTIFY)) == 1 and server.gateway.ops(IDENTIFY)[0]["token"] == server.token
    synced = server.commands[None]  # dev_guild = 0: global commands
    slash = {c["name"]: c for c in synced if c["type"] == 1}
    assert set(slash) == set(SCHEMA) | {"easel", "prefs"}
    for name, options in SCHEMA.items():
        assert options_of(slash[name]) == options, name
    imagine = {o["name"]: o for o in slash["imagine"]["options"]}
    assert (imagine["count"]["min_value"], imagine["count"]["max_value"]) == (1, 4)
    assert {c["value"] for c in imagine["aspect"]["choices"]} == {"square", "portrait", "landscape", "tall", "wide"}
    for name in ("imagine", "vary", "paint"):
        shared = {o["name"]: o for o in slash[name]["options"]}
        assert all(shared[o].get("autocomplete") for o in ("model", "scheduler", "lora", "style")), name
        assert [c["value"] for c in shared["spacing"]["choices"]] == ["trailing", "leading", "linspace"], name
    anime = {o["name"]: o for o in slash["anime"]["options"]}
    assert "face_paint_512_v2" in {c["value"] for c in anime["style"]["choices"]}

    easel = slash["easel"]
    assert int(easel["default_member_permissions"]) == MANAGE_GUILD
    subcommands = {o["name"]: o for o in easel["options"]}
    assert {n: o["type"] for n, o in subcommands.items()} == {n: SUBCOMMAND for n in EASEL_SUBCOMMANDS}
    for name, options in EASEL_SUBCOMMANDS.items():
        assert options_of(subcommands[name]) == options, f"easel {name}"

    prefs = {o["name"]: o for o in slash["prefs"]["options"]}
    assert {n: o["type"] for n, o in prefs.items()} == {n: SUBCOMMAND for n in PREFS_SUBCOMMANDS}
    for name, options in PREFS_SUBCOMMANDS.items():
        assert options_of(prefs[name]) == options, f"prefs {name}"

    menus = {c["name"] for c in synced if c["type"] == MESSAGE_MENU}
    assert menus == MENUS
    assert len(synced) == len(SCHEMA) + 2 + len(MENUS)  # and the /easel and /prefs groups


async def test_imagine_pixels_equal_a_direct_diffusers_call(server: FakeDiscord, alice: Member,
                                                             direct_pipeline: Any) -> None:
    options = {"prompt": "a red fox in a green forest", "negative": "blurry dark", "width": 96, "height": 64,
               "steps": 5, "guidance": 6.5, "seed": 1234}
    record = await alice.slash("imagine", **options)
    message = await result_of(server, record)
    assert record.response_type == 5 and not message["flags"] & EPHEMERAL  # deferred, then public
    job = job_id_of(message)
    attachment = result_attachment(message)
    assert attachment["filename"] == f"easel-{job}.png"
    posted = decode(attachment["data"])
    expected = await asyncio.to_thread(direct_images, direct_pipeline, prompt=options["prompt"],
                                       negative=options["negative"], seeds=[1234], width=96, height=64, steps=5,
                                       guidance=6.5)
    assert posted.size == (96, 64)
    assert max_difference(posted, expected[0]) <= 1

    params = parse_parameters(read_parameters(attachment["data"]))
    assert params["prompt"] == options["prompt"] and params["negative_prompt"] == options["negative"]
    assert (params["Seed"], params["Steps"], params["CFG scale"], params["Size"]) == ("1234", "5", "6.5", "96x64")
    assert params["easel job"] == job
    assert "seed `1234`" in message["content"] and "5 steps" in message["content"]
    assert pings(server, message) == []


async def test_imagine_grid_cells_are_the_seeds_in_turn(server: FakeDiscord, alice: Member,
                                                        direct_pipeline: Any) -> None:
    record = await alice.slash("imagine", prompt="a castle at night", count=2, seed=77, steps=3, width=64, height=64)
    message = await result_of(server, record)
    grid = decode(result_attachment(message)["data"])
    expected = await asyncio.to_thread(direct_images, direct_pipeline, prompt="a castle at night", negative="",
                                       seeds=[77, 78], width=64, height=64, steps=3, guidance=0.0)
    assert grid.size == (128, 64)
    for index, image in enumerate(expected):
        assert max_difference(grid.crop((64 * index, 0, 64 * (index + 1), 64)), image) <= 1
    assert "seed `77, 78`" in message["content"]


async def test_imagine_tile_posts_the_tile_and_its_2x2_preview(server: FakeDiscord, alice: Member) -> None:
    record = await alice.slash("imagine", prompt="mossy cobblestones", tile=True, seed=5, steps=2, width=64, height=64)
    message = await result_of(server, record)
    tile = result_attachment(message)
    assert [a["filename"] for a in message["attachments"]] == [tile["filename"], "tile-preview.png"]
    preview = decode(message["attachments"][1]["data"])
    assert preview.size == (128, 128)
    assert max_difference(preview.crop((64, 64, 128, 128)), decode(tile["data"])) == 0
    assert parse_parameters(read_parameters(tile["data"]))["Tiling"] == "True"


async def test_vary_downloads_the_attachment_from_the_file_server(server: FakeDiscord, alice: Member) -> None:
    upload = server.attachment("holiday.png", png((96, 80)))
    record = await alice.slash("vary", image=upload, prompt="a watercolor painting", strength=0.5, seed=9)
    message = await result_of(server, record)
    assert ("GET", f"/attachments/{upload['id']}/holiday.png", "", 200) in server.requests
    params = parse_parameters(read_parameters(result_attachment(message)["data"]))
    assert (params["easel kind"], params["Denoising strength"], params["Seed"]) == ("vary", "0.5", "9")
    assert params["prompt"] == "a watercolor painting"
    assert "Vary" in {c.get("label") for row in message["components"] for c in row["components"]}


async def test_vary_with_a_sampler_spacing_and_style_posts_a_result(server: FakeDiscord, alice: Member) -> None:
    upload = server.attachment("garden.png", png((64, 64), colour=(40, 160, 90)))
    record = await alice.slash("vary", image=upload, prompt="a garden", strength=0.6, seed=5, steps=4,
                               scheduler="ddim", spacing="trailing", style="watercolor")
    message = await result_of(server, record)
    params = parse_parameters(read_parameters(result_attachment(message)["data"]))
    assert (params["Sampler"], params["Style"], params["Seed"]) == ("DDIM trailing", "watercolor", "5")
    assert params["prompt"] == "a garden, watercolor painting, soft washes, paper texture"
    assert params["negative_prompt"] == "photo, 3d render"


async def test_morph_posts_an_animated_webp_of_the_upload(server: FakeDiscord, alice: Member) -> None:
    upload = server.attachment("cat.png", png((64, 64)))
    record = await alice.slash("morph", image=upload, prompt="a cat", frames=3, seed=5, **{"from": 0.3, "to": 0.9})
    message = await result_of(server, record)
    attachment = result_attachment(message)
    assert attachment["filename"] == f"easel-{job_id_of(message)}.webp"
    with Image.open(io.BytesIO(attachment["data"])) as animation:
        assert (animation.format, animation.n_frames, animation.size) == ("WEBP", 3, (64, 64))
    assert "seed `5`" in message["content"] and "strength 0.3\u21920.9" in message["content"]
    params = parse_parameters(read_parameters(attachment["data"]))  # also in the WebP's EXIF
    assert (params["easel kind"], params["Seed"], params["Morph frames"]) == ("morph", "5", "3")


async def test_paint_with_a_mask_upload_repaints_only_the_white_part(server: FakeDiscord, alice: Member) -> None:
    source = png((64, 64), colour=(20, 90, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (0, 0, 32, 64))
    upload_mask = server.attachment("mask.png", encode(mask))
    upload = server.attachment("photo.png", source)
    record = await alice.slash("paint", image=upload, prompt="a red flower", mask=upload_mask, seed=3)
    message = await result_of(server, record)
    for attachment in (upload, upload_mask):
        assert ("GET", f"/attachments/{attachment['id']}/{attachment['filename']}", "", 200) in server.requests
    painted = np.asarray(decode(result_attachment(message)["data"]).convert("RGB"), np.int16)
    original = np.asarray(decode(source).convert("RGB"), np.int16)
    assert painted.shape == original.shape
    # Inpainting keeps the unmasked half close to the source and changes the masked half.
    kept, repainted = np.abs(painted - original)[:, 48:].mean(), np.abs(painted - original)[:, :16].mean()
    assert repainted > kept
    params = parse_parameters(read_parameters(result_attachment(message)["data"]))
    assert (params["easel kind"], params["prompt"]) == ("paint", "a red flower")


async def test_paint_without_a_mask_region_or_box_says_how_to_choose(server: FakeDiscord, alice: Member) -> None:
    record = await alice.slash("paint", image=server.attachment("photo.png", png()), prompt="a hat")
    text = await refusal_of(server, record)
    assert "Choose what to repaint" in text and "`mask`" in text


async def test_paint_with_a_region(server: FakeDiscord, alice: Member) -> None:
    record = await alice.slash("paint", image=server.attachment("photo.png", png()), prompt="a hat",
                               region="top-left", seed=4)
    message = await result_of(server, record)
    assert parse_parameters(read_parameters(result_attachment(message)["data"]))["easel kind"] == "paint"


async def test_anime_paints_the_whole_picture_without_a_face(server: FakeDiscord, alice: Member) -> None:
    upload = server.attachment("landscape.png", png((96, 80), colour=(30, 160, 60)))
    record = await alice.slash("anime", image=upload)
    message = await result_of(server, record)
    assert "AnimeGAN2 `face_paint_512_v2`" in message["content"]
    assert "No face found" in message["content"]
    image = decode(result_attachment(message)["data"])
    assert max(image.size) == 512 and image.size[0] > image.size[1]  # the whole picture, long side 512
    labels = {c.get("label") for row in message["components"] for c in row["components"]}
    assert labels == {"Delete"}  # no vary/reroll/anime again under an anime result


async def test_queue_history_and_status_answer_ephemerally(server: FakeDiscord) -> None:
    # A member of its own, with a job of its own: the test needs no other test's history.
    dana = Member(server, "dana")
    await result_of(server, await dana.slash("imagine", prompt="a red fox in a green forest", seed=5))
    queue = await dana.slash("queue")
    await server.wait_for(lambda: queue.original, what="the /queue answer")
    assert queue.original["flags"] & EPHEMERAL and "You have no jobs in the queue." in queue.original["content"]

    history = await dana.slash("history", search="fox")
    await server.wait_for(lambda: history.original, what="the /history answer")
    [embed] = history.original["embeds"]
    assert history.original["flags"] & EPHEMERAL and "fox" in embed["title"]
    assert len(embed["fields"]) == 1 and "a red fox in a green forest" in embed["fields"][0]["value"]

    denied = await dana.slash("easel status")
    assert (await refusal_of(server, denied)).startswith("You need the Manage")
    admin = Member(server, "moderator", admin=True)
    status = await admin.slash("easel status")
    await server.wait_for(lambda: status.original, what="the /easel status answer")
    assert status.original["flags"] & EPHEMERAL and "device `cpu`" in status.original["content"]
    assert "tiny" in status.original["content"]


async def test_forget_deletes_the_members_history(server: FakeDiscord) -> None:
    bob = Member(server, "bob")
    await result_of(server, await bob.slash("imagine", prompt="a blue owl", seed=1))
    forget = await bob.slash("forget")
    await server.wait_for(lambda: forget.original, what="the /forget question")
    confirm = await bob.click(forget.original, next(c["custom_id"] for row in forget.original["components"]
                                                      for c in row["components"] if c["style"] == 4))
    await server.wait_for(lambda: forget.original["content"].startswith("Done"), what="the /forget answer")
    # The click is acknowledged as an update of the question (deferred: scrubbing takes a moment),
    # then the question is edited into the answer.
    assert confirm.response_type == 6 and "deleted 1 job(s)" in forget.original["content"]
    history = await bob.slash("history")
    await server.wait_for(lambda: history.original, what="the /history answer")
    assert history.original["embeds"][0]["description"].startswith("Nothing here yet")


"""What members do with a result: its buttons (U, V, reroll, anime, delete), reactions, and the Apps menu."""

from __future__ import annotations

import pytest
import pytest_asyncio

from inference.imaging import read_parameters
from inference.imaging.outpaint import band_width, plan_zoom
from inference.imaging.pngmeta import parse_parameters
from tests.e2e.client import Member, pings
from tests.e2e.conftest import Easel
from tests.e2e.easel_helpers import (
    buttons,
    decode,
    job_id_of,
    png,
    refusal_of,
    result_attachment,
    result_job,
    result_of,
    results_in,
)
from tests.e2e.fake_discord import EPHEMERAL, FakeDiscord, InteractionRecord

pytestmark = pytest.mark.asyncio(loop_scope="module")

PROMPT = "a girl with a red hat"


@pytest.fixture(scope="module")
def server(easel_bot: Easel) -> FakeDiscord:
    return easel_bot.server


@pytest.fixture(scope="module")
def alice(server: FakeDiscord) -> Member:
    return Member(server, "alice")


@pytest.fixture(scope="module")
def bob(server: FakeDiscord) -> Member:
    return Member(server, "bob")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def grid(server: FakeDiscord, alice: Member) -> dict:
    """alice's two-image result: the message the button tests click on."""
    return await result_of(server, await alice.slash("imagine", prompt=PROMPT, count=2, seed=500))


def kind_of(message: dict) -> str:
    return parse_parameters(read_parameters(result_attachment(message)["data"]))["easel kind"]


def replies_to(server: FakeDiscord, message: dict) -> dict | None:
    """The bot's result posted as a reply to ``message``."""
    return next((m for m in results_in(server) if (m.get("message_reference") or {}).get("message_id")
                 == message["id"]), None)


def text_inputs(record: InteractionRecord) -> dict[str, str]:
    """Label -> custom id of the text inputs of the modal the bot showed."""
    modal = next(c["data"] for c in record.callbacks if c["type"] == 9)
    found = {}
    for component in modal["components"]:
        inner = component.get("component") or (component.get("components") or [{}])[0]
        label = component.get("label") or inner.get("label")
        found[label] = inner["custom_id"]
    return found


async def test_a_grid_has_upscale_vary_reroll_anime_and_delete(grid: dict) -> None:
    job = job_id_of(grid)
    assert buttons(grid) == {"U1": f"easel:u:{job}:0", "U2": f"easel:u:{job}:1", "V1": f"easel:v:{job}:0",
                             "V2": f"easel:v:{job}:1", "Reroll": f"easel:r:{job}", "Anime": f"easel:a:{job}:0",
                             "Delete": f"easel:x:{job}"}


async def test_u2_posts_the_second_image_alone(server: FakeDiscord, alice: Member, grid: dict) -> None:
    job = job_id_of(grid)
    click = await alice.click(grid, buttons(grid)["U2"])
    message = await result_of(server, click)
    assert result_attachment(message)["filename"] == f"easel-{job}-2.png"
    cell = decode(result_attachment(grid)["data"]).crop((64, 0, 128, 64))
    assert decode(result_attachment(message)["data"]).tobytes() == cell.tobytes()
    assert "image 2" in message["content"] and "seed `501`" in message["content"]
    assert set(buttons(message)) == {"Vary", "Anime", "Morph", "Zoom out 1.5x", "Zoom out 2x", "Pan left", "Pan right",
                                     "Pan up", "Pan down"}


async def test_zoom_out_2x_grows_a_result_around_its_untouched_pixels(server: FakeDiscord, alice: Member) -> None:
    source = await result_of(server, await alice.slash("imagine", prompt="a harbour at dawn", seed=31))
    click = await alice.click(source, buttons(source)["Zoom out 2x"])
    message = await result_of(server, click)
    zoomed, original = decode(result_attachment(message)["data"]), decode(result_attachment(source)["data"])
    assert zoomed.size == (128, 128) and "Zoomed out 2x." in message["content"] and "seed `31`" in message["content"]
    band = band_width(plan_zoom((64, 64), 2.0, 256))
    assert zoomed.crop((32 + band, 32 + band, 96 - band, 96 - band)).tobytes() == \
        original.crop((band, band, 64 - band, 64 - band)).tobytes()
    assert kind_of(message) == "paint" and "Pan left" in buttons(message)


async def test_v1_makes_a_variation_of_the_first_image(server: FakeDiscord, bob: Member, grid: dict) -> None:
    click = await bob.click(grid, buttons(grid)["V1"])
    message = await result_of(server, click)
    assert kind_of(message) == "vary" and f"<@{bob.id}>" in message["content"]  # bob owns his variation
    assert parse_parameters(read_parameters(result_attachment(message)["data"]))["prompt"] == PROMPT


async def test_reroll_keeps_the_prompt_with_a_new_seed(server: FakeDiscord, alice: Member, grid: dict) -> None:
    click = await alice.click(grid, buttons(grid)["Reroll"])
    message = await result_of(server, click)
    params = parse_parameters(read_parameters(result_attachment(message)["data"]))
    assert params["prompt"] == PROMPT and params["Seed"] != "500" and job_id_of(message) != job_id_of(grid)


async def test_anime_button_paints_the_result(server: FakeDiscord, alice: Member, grid: dict) -> None:
    message = await result_of(server, await alice.click(grid, buttons(grid)["Anime"]))
    assert "AnimeGAN2 `face_paint_512_v2`" in message["content"]
    assert parse_parameters(read_parameters(result_attachment(message)["data"]))["Sampler"] == "AnimeGAN2"


async def test_delete_is_for_the_owner_only(server: FakeDiscord, alice: Member, bob: Member) -> None:
    message = await result_of(server, await alice.slash("imagine", prompt="a small boat", seed=2))
    refused = await bob.click(message, buttons(message)["Delete"])
    assert "Only the member who asked" in await refusal_of(server, refused)
    assert not message.get("deleted")
    await alice.click(message, buttons(message)["Delete"])
    await server.wait_for(lambda: message.get("deleted"), what="the deleted result")
    assert message not in server.channel_messages()


async def test_reroll_reaction_replies_with_a_new_result(server: FakeDiscord, alice: Member) -> None:
    message = await result_of(server, await alice.slash("imagine", prompt="a dog on a ship", seed=8))
    await alice.react(message, "\U0001f501")
    reply = await server.wait_for(
        lambda: replies_to(server, message), what="the reroll reply")
    assert result_job(reply) not in (None, job_id_of(message))
    assert parse_parameters(read_parameters(result_attachment(reply)["data"]))["prompt"] == "a dog on a ship"
    assert pings(server, reply) == []  # a reply, but nobody is notified


async def test_vary_reaction_on_a_members_picture(server: FakeDiscord, bob: Member) -> None:
    posted = await bob.post_message("my cat", [server.attachment("cat.png", png((80, 80)))])
    await bob.react(posted, "\U0001f3a8")
    reply = await server.wait_for(
        lambda: replies_to(server, posted), what="the variation of bob's picture")
    assert kind_of(reply) == "vary" and f"<@{bob.id}>" in reply["content"]


async def test_vary_image_menu_on_a_members_picture(server: FakeDiscord, alice: Member, bob: Member) -> None:
    posted = await bob.post_message("", [server.attachment("portrait.png", png((64, 96)))])
    record = await alice.context_menu("Vary image", posted)
    message = await result_of(server, record)
    assert kind_of(message) == "vary" and f"<@{alice.id}>" in message["content"]


async def test_describe_menu_shows_the_parameters_of_our_png(server: FakeDiscord, alice: Member, grid: dict) -> None:
    record = await alice.context_menu("Describe", grid)

    def answer() -> dict | None:
        return next((m for m in record.messages if m["flags"] & EPHEMERAL and "Seed:" in m["content"]), None)

    text = (await server.wait_for(answer, what="the parameters"))["content"]
    assert PROMPT in text and "Seed: 500" in text and f"easel job: {job_id_of(grid)}" in text


async def test_paint_menu_asks_where_then_paints(server: FakeDiscord, alice: Member, grid: dict) -> None:
    shown = await alice.context_menu("Paint...", grid)
    await server.wait_for(lambda: shown.callbacks, what="the paint modal")
    assert shown.response_type == 9
    inputs = text_inputs(shown)
    submitted = await alice.submit_modal(shown, {inputs["What to paint"]: "a blue hat",
                                                 inputs["Where: regions or a box"]: "box 0,0,50,50"})
    message = await result_of(server, submitted)
    params = parse_parameters(read_parameters(result_attachment(message)["data"]))
    assert (params["easel kind"], params["prompt"]) == ("paint", "a blue hat")


async def test_menus_on_a_message_without_an_image_refuse(server: FakeDiscord, alice: Member) -> None:
    posted = await alice.post_message("no picture here")
    for name in ("Paint...", "Use as control...", "Describe", "Vary image"):
        record = await alice.context_menu(name, posted)
        assert "no image" in await refusal_of(server, record)

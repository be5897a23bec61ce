"""The studio (job log in SQLite, saved PNGs, history) over the remote backend: remote jobs are
recorded, failed, cancelled and recovered exactly like local ones."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from config import Config
from inference.engine import Engine
from inference.imaging import parse_parameters, read_parameters
from inference.jobs import InpaintJob
from inference.remote import PAINT_UNSUPPORTED
from inference.remote import errors as E
from studio import JobCancelled, JobDone, JobFailed, RequestContext, Studio, StudioEvent
from tests.remote.conftest import with_remote
from tests.remote.fake_api import FakeInferenceAPI, Reply, seed_colour
from tests.remote.helpers import save_png, t2i, until, until_true

CTX = RequestContext(user_id=1, guild_id=10, channel_id=20)


class Events:
    def __init__(self) -> None:
        self.all: list[StudioEvent] = []

    def __call__(self, event: StudioEvent) -> None:
        self.all.append(event)

    def final(self, job_id: str) -> StudioEvent | None:
        for event in self.all:
            if event.job_id == job_id and isinstance(event, JobDone | JobFailed | JobCancelled):
                return event
        return None

    async def wait(self, job_id: str) -> StudioEvent:
        await until(lambda: self.final(job_id) is not None)
        event = self.final(job_id)
        assert event is not None
        return event


async def open_studio(config: Config, make_executor: Any, **kw: Any) -> tuple[Studio, Events]:
    studio = Studio(config, engine=Engine(config, make_executor(config, **kw)))
    events = Events()
    studio.add_listener(events)
    await studio.start(warm_up=False)
    return studio, events


@pytest.fixture
async def studio(config: Config, make_executor: Any) -> AsyncIterator[tuple[Studio, Events]]:
    st, events = await open_studio(config, make_executor)
    yield st, events
    await st.close()


async def test_a_remote_job_is_logged_saved_and_in_history(studio: tuple[Studio, Events]) -> None:
    st, events = studio
    await st.submit(t2i("j1", seed=30, count=2, prompt="a lighthouse at dusk"), CTX)
    done = await events.wait("j1")
    assert isinstance(done, JobDone)
    row = await st.database.jobs.get("j1")
    assert row is not None and row.status == "done" and row.kind == "imagine" and row.params["seed"] == 30
    images = await st.database.images.for_job("j1")
    assert [(im.idx, im.seed, im.width, im.height) for im in images] == [(0, 30, 64, 64), (1, 31, 64, 64)]
    data = Path(images[1].path).read_bytes()
    params = parse_parameters(read_parameters(data) or "")
    assert params["prompt"] == "a lighthouse at dusk" and params["Seed"] == "31" and params["Model"] == "sdxl-turbo"
    page = await st.database.jobs.history(user_id=1)
    assert [r.job_id for r in page.rows] == ["j1"]
    assert Image.open(images[0].path).convert("RGB").getpixel((0, 0)) == seed_colour(30)


async def test_failures_are_logged_with_the_members_message(config: Config, make_executor: Any,
                                                            tmp_path: Path) -> None:
    st, events = await open_studio(config, make_executor, environ={"HF_TOKEN": "hf_revoked"})
    try:
        await st.submit(t2i("j1"), CTX)
        await st.submit(InpaintJob(job_id="p1", owner=1, prompt="a hat", width=64, height=64, model="sdxl-turbo",
                                   init_image=save_png(tmp_path / "i.png", (1, 2, 3)),
                                   mask_image=save_png(tmp_path / "m.png", (255,), mode="L")), CTX)
        for jid, message in (("j1", E.TOKEN_REFUSED), ("p1", PAINT_UNSUPPORTED)):
            event = await events.wait(jid)
            assert isinstance(event, JobFailed) and event.message == message
            await until_true(status_is(st, jid, "failed"))
            row = await st.database.jobs.get(jid)
            assert row is not None and row.status == "failed" and row.error == message
    finally:
        await st.close()


async def test_a_cancelled_remote_job_is_logged_as_cancelled(config: Config, make_executor: Any,
                                                             api: FakeInferenceAPI) -> None:
    st, events = await open_studio(with_remote(config, concurrency=1), make_executor)
    hold = threading.Event()
    try:
        api.expect(Reply(hold=hold))
        await st.submit(t2i("j1"), CTX)
        await st.submit(t2i("j2"), CTX)
        await st.submit(t2i("j3"), CTX)
        await until(lambda: len(api.seen) == 1)
        assert await st.cancel("j3", user_id=1)
        hold.set()
        assert isinstance(await events.wait("j3"), JobCancelled)
        assert isinstance(await events.wait("j1"), JobDone) and isinstance(await events.wait("j2"), JobDone)
        row = await st.database.jobs.get("j3")
        assert row is not None and row.status == "cancelled"
    finally:
        hold.set()
        await st.close()


async def test_a_job_abandoned_at_stop_is_made_at_the_next_start(config: Config, make_executor: Any,
                                                                 api: FakeInferenceAPI) -> None:
    st, _ = await open_studio(config, make_executor)
    hold = threading.Event()
    api.expect(Reply(hold=hold))
    await st.submit(t2i("j1"), CTX)
    await until(lambda: len(api.seen) == 1)
    await until_true(status_is(st, "j1", "running"))
    await st.close()
    hold.set()
    again, events = await open_studio(config, make_executor)
    try:
        assert isinstance(await events.wait("j1"), JobDone)
        assert len(api.seen) == 2
    finally:
        await again.close()


def status_is(st: Studio, job_id: str, status: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        row = await st.database.jobs.get(job_id)
        return row is not None and row.status == status

    return check


async def test_a_morph_is_refused_before_it_is_queued(studio: tuple[Studio, Events]) -> None:
    """launch() answers a refusal privately before anything is recorded (cogs/utils/launch.py)."""
    from inference.jobs import MorphJob
    from inference.remote.executor import MORPH_UNSUPPORTED

    st, _ = studio
    assert st.refusal(MorphJob(job_id="m1", owner=1, prompt="a", to_prompt="b", model="sdxl-turbo")) == MORPH_UNSUPPORTED


async def test_describe_is_refused_before_it_is_queued(studio: tuple[Studio, Events]) -> None:
    from inference.jobs import DescribeJob
    from inference.remote.executor import DESCRIBE_UNSUPPORTED

    st, _ = studio
    assert st.refusal(DescribeJob(job_id="d1", owner=1, init_image="/x.png")) == DESCRIBE_UNSUPPORTED

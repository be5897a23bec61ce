"""The remote backend driven by the real Engine against the fake Inference API: results, faults,
cancellation, unsupported commands, /anime on this machine, start-up errors and shutdown."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import torch
from huggingface_hub import constants as hf_constants
from PIL import Image

from config import Config
from inference.anime import Generator
from inference.engine import Engine
from inference.executor import default_anime_factory, internal_error_message
from inference.jobs import (
    AnimeJob,
    Cancelled,
    Failed,
    Finished,
    ImageToImageJob,
    InpaintJob,
    JobEvent,
    JobKind,
    Progress,
    Started,
)
from inference.loader import ModelLoadError
from inference.prepare import PreparedJob
from inference.remote import PAINT_UNSUPPORTED, RemoteClient
from inference.remote import errors as E
from tests.fixtures.recorder import Recorder
from tests.remote.conftest import TOKEN, with_remote, write_config
from tests.remote.fake_api import (
    FakeInferenceAPI,
    Reply,
    error,
    json_instead_of_image,
    loading,
    rate_limited,
    seed_colour,
)
from tests.remote.helpers import save_png, t2i, until


async def started_engine(config: Config, make_executor: Any, **kw: Any) -> tuple[Engine, Recorder]:
    engine = Engine(config, make_executor(config, **kw))
    recorder = Recorder()
    engine.add_listener(recorder)
    await engine.start(warm_up=False)
    return engine, recorder


@pytest.fixture
async def engine(config: Config, make_executor: Any) -> AsyncIterator[tuple[Engine, Recorder]]:
    eng, rec = await started_engine(config, make_executor)
    yield eng, rec
    await eng.stop()


async def test_imagine_makes_each_image_with_its_own_seed(engine: tuple[Engine, Recorder],
                                                         api: FakeInferenceAPI) -> None:
    eng, rec = engine
    eng.submit(t2i("j1", seed=20, count=3, width=96))
    outcome = await rec.outcome("j1")
    assert isinstance(outcome, Finished)
    assert outcome.result.seeds == (20, 21, 22)
    assert [im.getpixel((0, 0)) for im in outcome.result.images] == [seed_colour(s) for s in (20, 21, 22)]
    assert all(im.size == (96, 64) for im in outcome.result.images)
    assert sorted(s.parameters["seed"] for s in api.seen) == [20, 21, 22]
    assert len(rec.of("j1", Started)) == 1
    steps = [(e.step, e.total_steps) for e in rec.of("j1", Progress)]  # type: ignore[attr-defined]
    assert steps[0] == (0, 3) and steps[-1] == (3, 3) and len(steps) == 4


async def test_vary_sends_the_source_image(engine: tuple[Engine, Recorder], api: FakeInferenceAPI,
                                           tmp_path: Path) -> None:
    eng, rec = engine
    source = save_png(tmp_path / "source.png", (250, 10, 10), size=(128, 128))
    eng.submit(ImageToImageJob(job_id="v1", owner=1, prompt="", width=64, height=64, steps=4, seed=2,
                               model="sdxl-turbo", init_image=source, strength=0.5))
    outcome = await rec.outcome("v1")
    assert isinstance(outcome, Finished) and outcome.result.images[0].getpixel((1, 1)) == seed_colour(2)
    (seen,) = api.seen
    assert seen.input_image.size == (64, 64)  # prepared to the job's size before sending
    assert seen.input_image.convert("RGB").getpixel((3, 3)) == (250, 10, 10)
    assert "prompt" not in seen.parameters  # an empty /vary prompt is not sent as ""


async def test_paint_is_refused_with_a_clear_message(engine: tuple[Engine, Recorder], api: FakeInferenceAPI,
                                                     tmp_path: Path) -> None:
    eng, rec = engine
    assert eng.executor.unsupported(JobKind.PAINT) == PAINT_UNSUPPORTED  # type: ignore[attr-defined]
    assert eng.executor.unsupported(JobKind.IMAGINE) is None  # type: ignore[attr-defined]
    eng.submit(InpaintJob(job_id="p1", owner=1, prompt="a red hat", width=64, height=64, model="sdxl-turbo",
                          init_image=save_png(tmp_path / "i.png", (1, 2, 3)),
                          mask_image=save_png(tmp_path / "m.png", (255,), mode="L")))
    outcome = await rec.outcome("p1")
    assert isinstance(outcome, Failed) and outcome.message == PAINT_UNSUPPORTED
    assert api.seen == []


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        ([loading(0.01), loading(0.01)], None),
        ([rate_limited("0")], None),
        ([error(503, "Service Unavailable")], None),
        ([json_instead_of_image()] * 3, E.NOT_AN_IMAGE),
        ([Reply(truncate=True)] * 3, E.NOT_AN_IMAGE),
        ([loading(5.0)], E.LOADING),  # asks for longer than max_wait_s
        ([error(422, "Input validation error")], "refused these settings: Input validation error"),
    ],
    ids=["loading", "429", "503", "json", "truncated", "long-load", "422"],
)
async def test_faults_end_in_an_image_or_one_clear_message(engine: tuple[Engine, Recorder], api: FakeInferenceAPI,
                                                           replies: list[Reply], expected: str | None) -> None:
    eng, rec = engine
    api.expect(*replies)
    eng.submit(t2i("j1"))
    outcome = await rec.outcome("j1")
    if expected is None:
        assert isinstance(outcome, Finished) and len(outcome.result.images) == 1
    else:
        assert isinstance(outcome, Failed) and expected in outcome.message
    assert eng.status().failed == (0 if expected is None else 1)


async def test_a_timeout_fails_the_job(config: Config, make_executor: Any, api: FakeInferenceAPI) -> None:
    eng, rec = await started_engine(with_remote(config, timeout_s=0.3), make_executor)
    try:
        api.expect(Reply(delay_s=1.5))
        eng.submit(t2i("j1"))
        outcome = await rec.outcome("j1")
        assert isinstance(outcome, Failed) and "did not answer within 0.3 seconds" in outcome.message
    finally:
        await eng.stop()


async def test_a_bad_token_fails_the_job_for_the_admins_to_fix(config: Config, make_executor: Any,
                                                               api: FakeInferenceAPI) -> None:
    eng, rec = await started_engine(config, make_executor, environ={"HF_TOKEN": "hf_revoked"})
    try:
        eng.submit(t2i("j1"))
        outcome = await rec.outcome("j1")
        assert isinstance(outcome, Failed) and outcome.message == E.TOKEN_REFUSED
        assert len(api.seen) == 1
    finally:
        await eng.stop()


async def test_one_failed_image_fails_the_whole_job(engine: tuple[Engine, Recorder], api: FakeInferenceAPI) -> None:
    eng, rec = engine
    api.expect(error(404, "Model not found"))
    eng.submit(t2i("j1", count=2))
    outcome = await rec.outcome("j1")
    assert isinstance(outcome, Failed) and "does not offer the model sdxl-turbo" in outcome.message


async def test_cancelling_queued_waiting_and_running_jobs(config: Config, make_executor: Any,
                                                          api: FakeInferenceAPI) -> None:
    eng, rec = await started_engine(with_remote(config, concurrency=1), make_executor)
    try:
        hold = threading.Event()
        api.expect(Reply(hold=hold))
        for jid in ("j1", "j2", "j3"):
            eng.submit(t2i(jid))
        await until(lambda: len(api.seen) == 1)  # j1's request is in the air
        await until(lambda: eng.queue.position("j2") is None)  # j2 was handed to the executor
        assert eng.queue.position("j3") == 1
        assert eng.cancel("j3") and eng.cancel("j2") and eng.cancel("j1")
        hold.set()
        outcomes = [await rec.outcome(jid) for jid in ("j1", "j2", "j3")]
        assert all(isinstance(o, Cancelled) for o in outcomes)
        assert len(api.seen) == 1  # j2 and j3 never reached the service; j1's image was thrown away
        assert rec.of("j2", Started) == [] and rec.of("j3", Started) == []
    finally:
        hold.set()
        await eng.stop()


def test_requests_run_side_by_side_up_to_the_concurrency(config: Config, make_executor: Any,
                                                         api: FakeInferenceAPI) -> None:
    executor = make_executor(with_remote(config, concurrency=2))
    executor.model("")
    holds = [threading.Event(), threading.Event()]
    api.expect(Reply(hold=holds[0]), Reply(hold=holds[1]))
    events: list[JobEvent] = []
    future = executor.run_batch([PreparedJob(t2i("a", count=2)), PreparedJob(t2i("b", count=2, seed=40))],
                                events.append)
    pause = threading.Event()
    while api.active < 2 and not pause.wait(0.01):
        pass
    pause.wait(0.2)  # room for a third request to show up, were the limit not kept
    assert api.active == 2 and executor._pool.workers == 2
    for hold in holds:
        hold.set()
    outcomes = future.result(timeout=30)
    assert [type(o) for o in outcomes] == [Finished, Finished]
    assert api.max_active == 2 and len(api.seen) == 4
    assert outcomes[1].result.images[1].getpixel((0, 0)) == seed_colour(41)  # type: ignore[union-attr]
    assert executor.busy_stats().busy_s > 0


async def test_anime_runs_on_this_machine_through_the_anime_factory(tmp_path: Path, api: FakeInferenceAPI,
                                                                    make_executor: Any) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "random.pt"
    torch.save(Generator().state_dict(), weights)
    config = write_config(tmp_path, api.url,
                          extra=f'[anime]\ndevice = "cpu"\nweights = {{ face_paint_512_v2 = "{weights}" }}\n')
    eng, rec = await started_engine(config, make_executor, anime_factory=default_anime_factory(config))
    try:
        eng.submit(AnimeJob(job_id="a1", owner=1, init_image=save_png(tmp_path / "me.png", (200, 150, 120)),
                            whole_image=True))
        outcome = await rec.outcome("a1")
        assert isinstance(outcome, Finished) and len(outcome.result.images) == 1
        assert api.seen == []
    finally:
        await eng.stop()


async def test_status_and_model_info_describe_the_remote_model(engine: tuple[Engine, Recorder],
                                                               api: FakeInferenceAPI) -> None:
    eng, _ = engine
    status = eng.status()
    host = api.url.split("/")[2]
    assert status.device == f"remote:{host}" and status.dtype == "remote" and status.models == ("sdxl-turbo",)
    info = eng.model_info()
    assert info.name == "sdxl-turbo" and info.preset.size == 64 and info.loras == () and info.tokenizer is None


async def test_start_up_names_what_is_missing(tmp_path: Path, make_executor: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, "")  # the provider, not a test endpoint: nothing may be sent
    with pytest.raises(ModelLoadError, match="HF_TOKEN is not set"):
        await Engine(config, make_executor(config, environ={})).start(warm_up=False)
    with pytest.raises(ModelLoadError, match="'nowhere' is not a provider"):
        await Engine(config, make_executor(with_remote(config, provider="nowhere"))).start(warm_up=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE is set"):
        await Engine(config, make_executor(config)).start(warm_up=False)


async def test_stopping_abandons_a_request_in_the_air(config: Config, make_executor: Any,
                                                      api: FakeInferenceAPI) -> None:
    eng, rec = await started_engine(config, make_executor)
    hold = threading.Event()
    api.expect(Reply(hold=hold))
    eng.submit(t2i("j1"))
    await until(lambda: len(api.seen) == 1)
    await eng.stop()  # returns without waiting for the service
    seen_at_stop = len(rec.events)
    hold.set()
    await until(lambda: eng.executor.busy_stats().batches == 1)  # the request came back...
    await asyncio.sleep(0.05)  # ...and its worker had the chance to report it
    assert len(rec.events) == seen_at_stop  # nothing is reported after stop
    assert rec.of("j1", Started)
    assert [e for e in rec.of("j1") if isinstance(e, Finished | Failed | Cancelled)] == []  # the next start reruns it


def test_events_after_shutdown_or_a_closed_loop_are_dropped(config: Config, make_executor: Any) -> None:
    executor = make_executor(config)
    got: list[JobEvent] = []

    def closed_loop(event: JobEvent) -> None:
        raise RuntimeError("Event loop is closed")

    executor._guarded(closed_loop)(Started("j1"))  # no exception reaches the worker
    send = executor._guarded(got.append)
    send(Started("j1"))
    executor.shutdown()
    send(Progress("j1", 1, 1))
    assert got == [Started("j1")]


class RecordingApi:
    """Stands in for InferenceClient where no loopback URL can be used: provider routing by hub id."""

    def __init__(self) -> None:
        self.models: list[str | None] = []

    def text_to_image(self, prompt: str, **kw: Any) -> Image.Image:
        self.models.append(kw["model"])
        return Image.new("RGB", (kw["width"], kw["height"]))


def test_each_configured_model_is_asked_for_by_its_hub_id(tmp_path: Path, make_executor: Any) -> None:
    config = write_config(tmp_path, "", extra='[[models]]\nsource = "stable-diffusion-v1-5/stable-diffusion-v1-5"\n'
                                              'name = "sd15"\n')
    api = RecordingApi()
    executor = make_executor(config, client=RemoteClient(config.remote, TOKEN, api=api))
    executor.model("")
    jobs = [t2i("a"), t2i("b", model="sd15"), t2i("c", model="nope")]
    outcomes = [executor.run_batch([PreparedJob(job)], lambda _: None).result(timeout=30) for job in jobs]
    assert api.models == ["stabilityai/sdxl-turbo", "stable-diffusion-v1-5/stable-diffusion-v1-5"]
    assert [type(o[0]) for o in outcomes] == [Finished, Finished, Failed]
    assert outcomes[2][0].message == "There is no model called 'nope' here."  # type: ignore[union-attr]
    assert [m.name for m in executor.loaded_models()] == ["sdxl-turbo", "sd15"]


def test_an_unexpected_error_fails_only_its_job_with_the_internal_message(tmp_path: Path, make_executor: Any) -> None:
    class BrokenApi(RecordingApi):
        def text_to_image(self, prompt: str, **kw: Any) -> Image.Image:
            if kw["seed"] == 1:
                raise ValueError("an unexpected bug")
            return super().text_to_image(prompt, **kw)

    config = write_config(tmp_path, "")
    executor = make_executor(config, client=RemoteClient(config.remote, TOKEN, api=BrokenApi()))
    executor.model("")
    outcomes = executor.run_batch([PreparedJob(t2i("bad", seed=1)), PreparedJob(t2i("good", seed=2))],
                                  lambda _: None).result(timeout=30)
    assert isinstance(outcomes[0], Failed) and outcomes[0].message == internal_error_message()
    assert isinstance(outcomes[1], Finished)


def test_batches_arriving_during_shutdown_are_cancelled_unsent(config: Config, make_executor: Any,
                                                               api: FakeInferenceAPI) -> None:
    executor = make_executor(config)
    executor.model("")
    executor._pool.shutdown()  # the pool closed a moment before the executor noticed
    (racing,) = executor.run_batch([PreparedJob(t2i("a"))], lambda _: None).result(timeout=30)
    executor.shutdown()
    (late,) = executor.run_batch([PreparedJob(t2i("b"))], lambda _: None).result(timeout=30)
    assert isinstance(racing, Cancelled) and isinstance(late, Cancelled)
    assert api.seen == []


async def test_a_morph_is_refused_with_a_clear_message_and_never_sent(engine: tuple[Engine, Recorder],
                                                                     api: FakeInferenceAPI, tmp_path: Path) -> None:
    from inference.jobs import MorphJob
    from inference.remote.executor import MORPH_UNSUPPORTED

    eng, rec = engine
    assert eng.executor.unsupported(JobKind.MORPH) == MORPH_UNSUPPORTED  # type: ignore[attr-defined]
    assert "not available on this bot" in MORPH_UNSUPPORTED
    eng.submit(MorphJob(job_id="m1", owner=1, prompt="a fox", width=64, height=64, model="sdxl-turbo",
                        init_image=save_png(tmp_path / "i.png", (1, 2, 3)), frames=3))
    outcome = await rec.outcome("m1")  # a morph queued before the backend changed
    assert isinstance(outcome, Failed) and outcome.message == MORPH_UNSUPPORTED
    assert api.seen == []


async def test_a_describe_job_is_refused_with_a_clear_message_and_never_sent(
        engine: tuple[Engine, Recorder], api: FakeInferenceAPI, tmp_path: Path) -> None:
    from inference.jobs import DescribeJob
    from inference.remote.executor import DESCRIBE_UNSUPPORTED

    eng, rec = engine
    assert eng.executor.unsupported(JobKind.DESCRIBE) == DESCRIBE_UNSUPPORTED  # type: ignore[attr-defined]
    eng.submit(DescribeJob(job_id="d1", owner=1, init_image=save_png(tmp_path / "i.png", (1, 2, 3))))
    outcome = await rec.outcome("d1")  # queued before the backend changed
    assert isinstance(outcome, Failed) and outcome.message == DESCRIBE_UNSUPPORTED
    assert api.seen == []

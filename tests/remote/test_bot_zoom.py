"""Zoom out and Pan on the remote backend: the Inference API cannot inpaint, so the buttons get a
clear private refusal and nothing is sent to the service or stored."""

from __future__ import annotations

from inference.outpaint_options import REMOTE
from tests.cogs.conftest import simcord_bot, simcord_env  # noqa: F401 - the in-process bot's fixtures
from tests.cogs.helpers import button_ids, final, make_world, refusal
from tests.remote.fake_api import FakeInferenceAPI
from tests.remote.test_bot_options import bot_config  # noqa: F401 - the remote bot's configuration


async def test_zoom_and_pan_are_refused_privately_on_the_remote_backend(simcord_env, simcord_bot,  # noqa: F811
                                                                        api: FakeInferenceAPI, monkeypatch) -> None:
    """No Zoom or Pan buttons under remote results; one posted before a switch of backend is refused."""
    w = make_world(simcord_env)
    plain = await final(await w.alice.slash(w.channel, "imagine", prompt="a fox", seed=2))
    assert not any(i.startswith(("easel:z2:", "easel:pl:", "easel:m:", "easel:us:")) for i in button_ids(plain))
    with monkeypatch.context() as m:  # a result posted while the local backend served this server
        m.setattr(simcord_bot.studio, "unsupported", lambda kind: None)
        source = await final(await w.alice.slash(w.channel, "imagine", prompt="a fox", seed=3))
    assert len(api.seen) == 2
    for action in ("z2", "pl"):
        custom_id = next(i for i in button_ids(source) if i.startswith(f"easel:{action}:"))
        assert refusal(await w.bob.click(source, custom_id=custom_id)) == REMOTE
    assert len(api.seen) == 2
    assert (await simcord_bot.studio.database.jobs.history(user_id=w.bob.id)).total == 0

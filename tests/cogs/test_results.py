"""Going on from a result: U/V/reroll/anime/delete buttons; and delivery that survives expired
tokens, Discord's upload limit and restarts (exactly once)."""

from __future__ import annotations

import asyncio

from cogs.utils.origin import InteractionOrigin
from inference.jobs import TextToImageJob
from studio import RequestContext, new_job_id
from tests.cogs.conftest import eventually
from tests.cogs.helpers import (
    button_ids,
    final,
    final_in,
    gpu_busy,
    image_of,
    job_posted_as,
    make_world,
    png,
    refusal,
)


def button(message, prefix: str) -> str:
    return next(i for i in button_ids(message) if i.startswith(prefix))


async def test_upscale_posts_one_grid_image_alone_at_full_size(simcord_env) -> None:
    w = make_world(simcord_env)
    grid = await final(await w.alice.slash(w.channel, "imagine", prompt="two birds", count=2, seed=10))
    clicked = await w.alice.click(grid, label="U2")
    single = await eventually(lambda: clicked.response if clicked.response and clicked.response.attachments else None)
    assert (await image_of(single)).size == (64, 64)
    assert "image 2" in single.content and "seed `11`" in single.content
    assert any(i.startswith("easel:v:") and i.endswith(":1") for i in button_ids(single))


async def test_an_upscale_of_an_image_pruned_since_the_check_is_refused_privately(simcord_env, simcord_bot,
                                                                                    monkeypatch) -> None:
    """The file goes (retention, /forget) between the check that it exists and its read: the member
    gets a private answer, and no public "thinking" message is left in the channel."""
    w = make_world(simcord_env)
    grid = await final(await w.alice.slash(w.channel, "imagine", prompt="two birds", count=2, seed=10))

    async def pruned(path: object) -> bytes:
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(simcord_bot.studio.outputs, "read", pruned)
    clicked = await w.alice.click(grid, label="U1")
    await simcord_env.settle()
    assert "no longer stored here" in refusal(clicked)
    assert [m.id for m in w.channel.history() if m.author.bot] == [grid.id]


async def test_an_upscale_that_fails_after_thinking_answers_privately_and_removes_the_thinking(
        simcord_env, monkeypatch) -> None:
    w = make_world(simcord_env)
    grid = await final(await w.alice.slash(w.channel, "imagine", prompt="two birds", count=2, seed=10))

    def broken(*args: object, **kwargs: object) -> tuple[bytes, str]:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("cogs.utils.actions.fit_for_upload", broken)
    clicked = await w.alice.click(grid, label="U2")
    await simcord_env.settle()
    assert clicked.acknowledged and clicked.response is None  # the public "thinking" message is gone
    [answer] = clicked.followups
    assert answer.ephemeral and "could not post that image" in answer.content
    assert [m.id for m in w.channel.history() if m.author.bot] == [grid.id]


async def test_variation_reroll_and_anime_buttons_start_new_jobs(simcord_env) -> None:
    w = make_world(simcord_env)
    first = await final(await w.alice.slash(w.channel, "imagine", prompt="a lighthouse", seed=7))
    for prefix, expect in (("easel:v:", "a lighthouse"), ("easel:r:", "a lighthouse"), ("easel:a:", "AnimeGAN2")):
        clicked = await w.bob.click(first, custom_id=button(first, prefix))
        message = await final(clicked)
        assert expect in message.content and message.attachments
        if prefix == "easel:r:":
            assert "seed `7`" not in message.content  # a reroll takes a new seed
            assert f"<@{w.bob.id}>" in message.content  # and belongs to whoever clicked


async def test_only_the_requester_or_a_moderator_can_delete(simcord_env) -> None:
    w = make_world(simcord_env)
    result = await final(await w.alice.slash(w.channel, "imagine", prompt="mine"))
    denied = await w.bob.click(result, custom_id=button(result, "easel:x:"))
    assert "Only the member who asked" in refusal(denied)
    assert any(m.id == result.id for m in w.channel.history())
    await w.admin.click(result, custom_id=button(result, "easel:x:"))
    assert not any(m.id == result.id for m in w.channel.history())


async def test_buttons_on_a_deleted_job_say_so(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    result = await final(await w.alice.slash(w.channel, "imagine", prompt="soon gone"))
    await simcord_bot.studio.database.forget(w.alice.id)
    clicked = await w.alice.click(result, custom_id=button(result, "easel:r:"))
    assert "no longer have that job" in refusal(clicked)


async def test_an_expired_interaction_token_edits_the_status_message_as_the_bots_own(simcord_env, simcord_bot) -> None:
    """After its 15 minutes the token edits nothing; the status message is edited by id instead
    (Discord allows it for the bot's non-ephemeral messages): the result is where the member looks."""
    w = make_world(simcord_env)
    with gpu_busy(simcord_bot):
        result = await w.alice.slash(w.channel, "imagine", prompt="a slow one")
        assert "Queued" in result.response.content
        simcord_env.inject_error("PATCH", "/webhooks/*", status=401, code=50027, message="Invalid Webhook Token",
                                 times=None)
    posted = await final_in(w.channel)
    assert posted.id == result.response.id and "a slow one" in posted.content and posted.attachments
    assert [m.id for m in w.channel.history() if m.author.bot] == [posted.id]  # no second message
    row = await job_posted_as(simcord_bot, posted)  # recorded right after Discord took the edit
    assert row.status == "delivered" and row.result_message_id == posted.id


async def test_results_are_fitted_under_the_upload_limit(simcord_env, monkeypatch) -> None:
    monkeypatch.setattr(InteractionOrigin, "upload_limit", property(lambda self: 4000))
    w = make_world(simcord_env)
    message = await final(await w.alice.slash(w.channel, "imagine", prompt="noise", seed=1))
    attachment = message.attachments[0]
    assert attachment.size <= 4000 and not attachment.filename.endswith(".png")
    assert "Re-encoded to fit" in message.content


async def test_after_a_restart_finished_jobs_are_posted_exactly_once(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    bot = simcord_bot
    db = bot.studio.database
    first = await final(await w.alice.slash(w.channel, "imagine", prompt="already posted"))
    lost = await final(await w.alice.slash(w.channel, "imagine", prompt="never posted"))
    for message in (first, lost):  # both recorded as posted before the log is rewound below
        await job_posted_as(bot, message)
    await w.admin.delete(lost)  # its status message is gone: the result needs a new one
    posted_before = [m.id for m in w.channel.history() if m.author.bot]
    # Pretend the bot died: one job finished but never posted, one posted but not recorded.
    rows = {r.prompt: r for r in (await db.jobs.history(user_id=w.alice.id)).rows}
    conn = db.jobs._conn  # noqa: SLF001 - rewinding the job log to the moment of the crash
    await conn.execute("UPDATE jobs SET status='done', delivered_at=NULL, result_message_id=NULL "
                       "WHERE job_id=?", (rows["never posted"].job_id,))
    await conn.execute("UPDATE jobs SET status='delivering', prior_status='done', delivered_at=NULL, "
                       "result_message_id=NULL WHERE job_id=?", (rows["already posted"].job_id,))
    await bot.delivery.redeliver()
    messages = [m for m in w.channel.history() if m.author.bot]
    assert [m.id for m in messages[:-1]] == posted_before  # only the never-posted one was posted again
    again = messages[-1]
    assert f"job `{rows['never posted'].job_id}`" in again.content and again.attachments
    assert (await db.jobs.get(rows["already posted"].job_id)).result_message_id == first.id
    assert (await db.jobs.get(rows["never posted"].job_id)).result_message_id == again.id
    await bot.delivery.redeliver()
    assert len([m for m in w.channel.history() if m.author.bot]) == len(posted_before) + 1


async def test_a_result_being_posted_when_the_restart_scan_runs_is_posted_once(
        simcord_env, simcord_bot, monkeypatch) -> None:
    """A job requeued at start-up can finish, and be mid-upload, while the scan for what the previous
    process left undelivered reads the job log: the scan must leave that post alone."""
    w = make_world(simcord_env)
    bot = simcord_bot
    db = bot.studio.database
    first_post = await final(await w.alice.slash(w.channel, "imagine", prompt="requeued and finished"))
    job_id = (await db.jobs.history(user_id=w.alice.id)).rows[0].job_id
    await w.admin.delete(first_post)  # as if it had never been posted
    await db.jobs._conn.execute(  # noqa: SLF001 - as the job finished after a restart: done, not yet posted
        "UPDATE jobs SET status='done', delivered_at=NULL, result_message_id=NULL WHERE job_id=?", (job_id,))
    before = {m.id for m in w.channel.history()}
    upload = asyncio.Event()
    real_render = bot.delivery._render

    async def slow_render(*args, **kwargs):
        await upload.wait()  # the upload takes as long as the test wants
        return await real_render(*args, **kwargs)

    monkeypatch.setattr(bot.delivery, "_render", slow_render)
    live = asyncio.create_task(bot.delivery.deliver(job_id, None))
    while (await db.jobs.get(job_id)).status != "delivering":
        await asyncio.sleep(0.01)
    await asyncio.wait_for(bot.delivery.redeliver(), 10)  # returns at once: nothing of a previous run
    upload.set()
    await live
    new = [m for m in w.channel.history() if m.id not in before and m.author.bot]
    assert len(new) == 1 and f"job `{job_id}`" in new[0].content and new[0].attachments
    row = await db.jobs.get(job_id)
    assert row.status == "delivered" and row.result_message_id == new[0].id
    await bot.delivery.deliver(job_id, None)  # a second call for a delivered job posts nothing
    assert len([m for m in w.channel.history() if m.id not in before]) == 1


async def test_posting_a_result_takes_two_trips_to_the_job_log(simcord_env, simcord_bot) -> None:
    """Claim + row + images read share one trip, delivered + images' message id another (storage/batched.py)."""
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    first_post = await final(await w.alice.slash(w.channel, "imagine", prompt="counted", count=2))
    job_id = (await db.jobs.history(user_id=w.alice.id)).rows[0].job_id
    await db.jobs._conn.execute(  # noqa: SLF001 - finished, not yet posted (its message is edited again)
        "UPDATE jobs SET status='done', delivered_at=NULL, result_message_id=NULL WHERE job_id=?", (job_id,))
    batcher = db.jobs._conn._batcher  # noqa: SLF001
    trips = batcher.trips
    await simcord_bot.delivery.deliver(job_id, None)
    assert batcher.trips - trips == 2
    row = await db.jobs.get(job_id)
    assert row.status == "delivered" and row.result_message_id == first_post.id
    assert [image.message_id for image in await db.images.for_job(job_id)] == [row.result_message_id] * 2


async def test_a_live_result_comes_claimed_from_the_studio_and_is_posted_without_claiming_again(
        simcord_env, simcord_bot, monkeypatch) -> None:
    """The studio records a finished job already claimed for the Delivery cog (one statement, the
    row comes back with it): posting it takes the one trip that records the message."""
    w = make_world(simcord_env)
    db = simcord_bot.studio.database
    claims: list[str] = []
    real_claim = db.jobs.begin_delivery

    async def counted_claim(job_id: str) -> bool:
        claims.append(job_id)
        return await real_claim(job_id)

    monkeypatch.setattr(db.jobs, "begin_delivery", counted_claim)
    post = await final(await w.alice.slash(w.channel, "imagine", prompt="claimed on the way", count=2))
    job_id = (await db.jobs.history(user_id=w.alice.id)).rows[0].job_id
    assert claims == [] and f"job `{job_id}`" in post.content and post.attachments
    row = await job_posted_as(simcord_bot, post)  # recorded right after Discord took the post
    assert row.status == "delivered" and row.result_message_id == post.id
    assert [image.message_id for image in await db.images.for_job(job_id)] == [post.id] * 2
    assert len([m for m in w.channel.history() if m.author.bot and f"job `{job_id}`" in m.content]) == 1


async def test_a_result_the_studio_claimed_is_left_alone_by_a_restart_scan_before_its_post_begins(
        simcord_env, simcord_bot, monkeypatch) -> None:
    """The studio records a finished job already claimed (``delivering``) and publishes it; the cog
    marks it as its own in that same step, so a restart scan that runs before the post has even
    started does not take it for a post a previous process left unfinished."""
    w = make_world(simcord_env)
    bot = simcord_bot
    db = bot.studio.database
    gate = asyncio.Event()
    real_finish = bot.delivery._finish

    async def held(*args, **kwargs):
        await gate.wait()
        return await real_finish(*args, **kwargs)

    monkeypatch.setattr(bot.delivery, "_finish", held)
    job = TextToImageJob(job_id=new_job_id(), owner=w.alice.id, prompt="claimed, not posted yet", width=64,
                         height=64, steps=2, seed=1, model=bot.studio.model_names()[0])
    await bot.studio.submit(job, RequestContext(user_id=w.alice.id, guild_id=w.guild.id, channel_id=w.channel.id))
    while (row := await db.jobs.get(job.job_id)) is None or row.status != "delivering":
        await asyncio.sleep(0.02)
    await asyncio.wait_for(bot.delivery.redeliver(), 10)  # must not post it
    gate.set()
    while (await db.jobs.get(job.job_id)).status != "delivered":
        await asyncio.sleep(0.02)
    posts = [m for m in w.channel.history() if m.author.bot and f"job `{job.job_id}`" in m.content]
    assert len(posts) == 1 and posts[0].attachments


async def test_a_cancelled_job_says_so_in_its_status_message(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    with gpu_busy(simcord_bot):
        await w.bob.slash(w.channel, "imagine", prompt="ahead")
        result = await w.alice.slash(w.channel, "imagine", prompt="never mind")
        job_id = result.response.content.split("job `")[1].split("`")[0]
        cancel = button(result.response, "easel:c:")
        assert "You can only cancel your own jobs" in refusal(await w.bob.click(result.response, custom_id=cancel))
        clicked = await w.alice.click(result.response, custom_id=cancel)
        assert clicked.ephemeral and "Cancelling" in clicked.response.content
    await eventually(lambda: "Cancelled" in result.response.content and not result.response.components)
    assert (await simcord_bot.studio.database.jobs.get(job_id)).status == "cancelled"
    await asyncio.sleep(0)


async def test_a_picked_cell_of_a_vary_without_prompt_says_so_instead_of_bare_asterisks(simcord_env) -> None:
    w = make_world(simcord_env)
    grid = await final(await w.alice.slash(w.channel, "vary", image=("src.png", png((64, 64))), count=2, seed=4))
    assert grid.content.startswith("*(no prompt)* for")
    clicked = await w.alice.click(grid, label="U1")
    single = await eventually(lambda: clicked.response if clicked.response and clicked.response.attachments else None)
    assert single.content.startswith("*(no prompt)* \u00b7 image 1") and "****" not in single.content

"""/easel stats: a server's last 7 days as figures and a chart; the counting itself on made-up timings."""

from __future__ import annotations

import io

from PIL import Image

from storage.stats import JobTiming
from studio_stats import (
    CHART_DPI,
    CHART_SIZE_IN,
    DAYS,
    HOUR_S,
    busy_share,
    render_chart,
    summary_text,
    week_stats,
)
from tests.cogs.helpers import final, make_world

NOW = 1_800_000_000.0


def timing(created: float, start: float | None, end: float | None, *, kind: str = "imagine", model: str = "",
           status: str = "delivered", guild: int | None = 1) -> JobTiming:
    return JobTiming(kind, model, status, guild, NOW - created, None if start is None else NOW - start,
                     None if end is None else NOW - end)


async def test_stats_answers_an_admin_privately_with_the_weeks_chart_and_figures(simcord_env, simcord_bot) -> None:
    w = make_world(simcord_env)
    await final(await w.alice.slash(w.channel, "imagine", prompt="a red fox", seed=1, steps=2))
    result = await w.admin.slash(w.channel, "easel stats")
    assert result.ephemeral
    answer = result.response  # the deferred answer, filled in by the followup
    assert answer.content.startswith(f"**Last {DAYS} days**: 1 job (imagine 1)")
    assert "Top models: tiny (1)" in answer.content
    chart = Image.open(io.BytesIO(await answer.attachments[0].read()))
    assert chart.format == "PNG"
    assert chart.size == (int(CHART_SIZE_IN[0] * CHART_DPI), int(CHART_SIZE_IN[1] * CHART_DPI))


async def test_stats_is_hidden_from_members_without_manage_server(simcord_env) -> None:
    w = make_world(simcord_env)
    assert "easel stats" not in w.bob.available_commands(w.channel)
    assert "easel stats" in w.admin.available_commands(w.channel)


def test_overlapping_jobs_of_a_batch_count_once_towards_the_busy_share() -> None:
    start = NOW - 2 * HOUR_S
    # Two jobs of one batch ran together for the first half of the first hour; one ran alone later.
    timings = [timing(2 * HOUR_S, 2 * HOUR_S, 1.5 * HOUR_S), timing(2 * HOUR_S, 2 * HOUR_S, 1.5 * HOUR_S),
               timing(HOUR_S, 0.75 * HOUR_S, 0.5 * HOUR_S)]
    assert busy_share(timings, start, 2, NOW) == [0.5, 0.25]


def test_the_week_counts_only_this_servers_jobs_but_the_gpu_is_everyones() -> None:
    timings = [timing(3600 * 30, 3600 * 30 - 4, 3600 * 30 - 6, model="xl"),
               timing(3600 * 5, 3600 * 5 - 10, 3600 * 5 - 12, kind="vary"),
               timing(3600 * 5, None, None, status="cancelled"),
               timing(3600 * 4, 3600 * 4, 3600 * 3, guild=2)]  # another server's hour-long job
    week = week_stats(timings, 1, NOW, "tiny")
    assert week.jobs == 3 and week.totals == {"delivered": 2, "cancelled": 1}
    assert dict(week.top_models) == {"tiny": 2, "xl": 1}
    assert week.wait_p50_per_day[-1] == 10.0 and week.wait_p50_per_day[-2] == 4.0
    assert max(week.busy_per_hour) == 1.0  # the other server's job kept the GPU busy for an hour
    text = summary_text(week)
    assert "3 jobs (imagine 2, vary 1)" in text and "cancelled: 1" in text


def test_an_empty_week_still_draws_a_chart_and_says_there_was_nothing() -> None:
    week = week_stats([], 1, NOW, "tiny")
    assert "0 jobs" in summary_text(week) and "median n/a" in summary_text(week)
    assert Image.open(io.BytesIO(render_chart(week))).size == (1200, 800)

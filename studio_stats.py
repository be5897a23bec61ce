"""``/easel stats``: a server's last 7 days as figures and as one PNG chart.

From the job log's timings (storage/stats.py): jobs per hour by kind, the queue wait (request to
start) p50/p95 per day, the GPU's busy share per hour, the most used models. The GPU is shared by
every server the bot serves, so its busy share counts all jobs; everything else only the server's.
A batch runs several jobs at once: busy time is the union of the jobs' run intervals, never their sum.

:func:`render_chart` draws with matplotlib's Agg backend (no display) and is CPU work of a few
hundred ms: the cog runs it on a worker thread. Knows no discord types and no SQL.
"""

from __future__ import annotations

import io
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from storage.stats import JobTiming

DAYS = 7
HOUR_S = 3600.0
DAY_S = 86400.0
CHART_SIZE_IN = (12.0, 8.0)
CHART_DPI = 100  # 1200 x 800 px
TOP_MODELS = 5


@dataclass(frozen=True)
class WeekStats:
    """A server's last :data:`DAYS` days, hour by hour (index 0 = the oldest hour)."""

    start: float  # Unix time of the first hour
    jobs_per_hour: dict[str, list[int]]  # kind -> jobs asked for in each hour
    wait_p50_per_day: list[float | None]  # seconds; None: no job started that day
    wait_p95_per_day: list[float | None]
    busy_per_hour: list[float]  # share of each hour the GPU ran jobs (any server's), 0-1
    top_models: list[tuple[str, int]]  # (model, jobs), most used first
    totals: dict[str, int] = field(default_factory=dict)  # status -> jobs

    @property
    def hours(self) -> int:
        return DAYS * 24

    @property
    def jobs(self) -> int:
        return sum(sum(counts) for counts in self.jobs_per_hour.values())


def week_stats(timings: Sequence[JobTiming], guild_id: int | None, now: float, default_model: str) -> WeekStats:
    """The figures of ``guild_id`` (None: direct messages) from every job's ``timings``."""
    start = (now // HOUR_S + 1) * HOUR_S - DAYS * 24 * HOUR_S  # whole hours, the current one last
    hours = DAYS * 24
    mine = [t for t in timings if t.guild_id == guild_id and t.created_at >= start]
    per_hour: dict[str, list[int]] = {}
    for t in mine:
        per_hour.setdefault(t.kind, [0] * hours)[min(hours - 1, int((t.created_at - start) // HOUR_S))] += 1
    waits: list[list[float]] = [[] for _ in range(DAYS)]
    for t in mine:
        if t.started_at is not None:
            waits[min(DAYS - 1, int((t.started_at - start) // DAY_S))].append(max(0.0, t.started_at - t.created_at))
    models = Counter(t.model or default_model for t in mine)
    return WeekStats(
        start=start, jobs_per_hour=per_hour,
        wait_p50_per_day=[_percentile(w, 50) for w in waits], wait_p95_per_day=[_percentile(w, 95) for w in waits],
        busy_per_hour=busy_share(timings, start, hours, now),
        top_models=models.most_common(TOP_MODELS), totals=dict(Counter(t.status for t in mine)),
    )


def busy_share(timings: Sequence[JobTiming], start: float, hours: int, now: float) -> list[float]:
    """Share of each hour covered by at least one running job (batches overlap: a union)."""
    spans = sorted((t.started_at, t.finished_at if t.finished_at is not None else now)
                   for t in timings if t.started_at is not None)
    merged: list[list[float]] = []
    for begin, end in spans:
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([begin, end])
    busy = [0.0] * hours
    for begin, end in merged:
        begin, end = max(begin, start), min(end, start + hours * HOUR_S)
        while begin < end:
            hour = int((begin - start) // HOUR_S)
            upto = min(end, start + (hour + 1) * HOUR_S)
            busy[hour] += upto - begin
            begin = upto
    return [min(1.0, b / HOUR_S) for b in busy]


def _percentile(values: list[float], pct: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def summary_text(stats: WeekStats) -> str:
    """The figures under the chart, for the member who cannot see images (or reads faster)."""
    waits = [w for w in stats.wait_p50_per_day if w is not None]
    p95s = [w for w in stats.wait_p95_per_day if w is not None]
    busy = sum(stats.busy_per_hour) / len(stats.busy_per_hour)
    kinds = ", ".join(f"{kind} {sum(counts)}" for kind, counts in
                      sorted(stats.jobs_per_hour.items(), key=lambda kv: -sum(kv[1])))
    lines = [f"**Last {DAYS} days**: {stats.jobs} job{'s' if stats.jobs != 1 else ''}" + (f" ({kinds})" if kinds else ""),
             f"Failed: {stats.totals.get('failed', 0)} \u00b7 cancelled: {stats.totals.get('cancelled', 0)}",
             f"Queue wait: median {_seconds(statistics.median(waits)) if waits else 'n/a'}, "
             f"p95 {_seconds(max(p95s)) if p95s else 'n/a'} (worst day)",
             f"GPU busy: {busy:.0%} of the week (all servers)"]
    if stats.top_models:
        lines.append("Top models: " + ", ".join(f"{name or 'default'} ({n})" for name, n in stats.top_models))
    return "\n".join(lines)


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.0f} min"


def week_chart(timings: Sequence[JobTiming], guild_id: int | None, now: float,
               default_model: str) -> tuple[WeekStats, bytes]:
    """:func:`week_stats` and its chart: the CPU work of /easel stats, for one worker thread (a busy
    week is tens of thousands of jobs to sort and count)."""
    stats = week_stats(timings, guild_id, now, default_model)
    return stats, render_chart(stats)


def render_chart(stats: WeekStats) -> bytes:
    """A 1200x800 PNG: jobs per hour by kind, wait p50/p95 per day, GPU busy share, top models."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # no pyplot: no global state shared between threads

    fig = Figure(figsize=CHART_SIZE_IN, dpi=CHART_DPI, layout="constrained")
    (jobs_ax, wait_ax), (busy_ax, model_ax) = fig.subplots(2, 2)
    hours = list(range(stats.hours))
    bottom = [0] * stats.hours
    for kind, counts in sorted(stats.jobs_per_hour.items()):
        jobs_ax.bar(hours, counts, bottom=bottom, width=1.0, label=kind)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    jobs_ax.set_title("Jobs per hour by kind")
    if stats.jobs_per_hour:
        jobs_ax.legend(loc="upper left", fontsize="small")
    _days_axis(jobs_ax, stats.hours)
    days = list(range(DAYS))
    for values, label in ((stats.wait_p50_per_day, "p50"), (stats.wait_p95_per_day, "p95")):
        wait_ax.plot(days, [v if v is not None else float("nan") for v in values], marker="o", label=label)
    wait_ax.set_title("Queue wait per day (s)")
    wait_ax.set_xticks(days, [f"-{DAYS - 1 - d}d" if d < DAYS - 1 else "today" for d in days])
    wait_ax.legend(loc="upper left", fontsize="small")
    busy_ax.fill_between(hours, [b * 100 for b in stats.busy_per_hour], step="mid")
    busy_ax.set_ylim(0, 100)
    busy_ax.set_title("GPU busy (% of each hour, all servers)")
    _days_axis(busy_ax, stats.hours)
    names = [name or "default" for name, _ in stats.top_models][::-1]
    model_ax.barh(names, [n for _, n in stats.top_models][::-1])
    model_ax.set_title("Top models (jobs)")
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _days_axis(ax: object, hours: int) -> None:
    ticks = list(range(0, hours + 1, 24))
    ax.set_xticks(ticks, [f"-{(hours - t) // 24}d" if t < hours else "now" for t in ticks])  # type: ignore[attr-defined]
    ax.set_xlim(-0.5, hours - 0.5)  # type: ignore[attr-defined]

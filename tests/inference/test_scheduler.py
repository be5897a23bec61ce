"""The fair queue: round-robin across members, caps with clear refusals, cancel, batching order."""

from __future__ import annotations

import asyncio

import pytest

from inference.eta import EtaEstimator
from inference.jobs import Job, QueueRefused, TextToImageJob
from inference.scheduler import FairQueue


def job(job_id: str, owner: int, *, steps: int = 4, width: int = 64) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=owner, prompt="p", steps=steps, width=width, height=64)


async def drain(queue: FairQueue) -> list[str]:
    out = []
    while len(queue):
        j = await queue.get()
        queue.done(j.job_id)
        out.append(j.job_id)
    return out


async def test_one_members_backlog_never_holds_up_another_members_first_job() -> None:
    q = FairQueue(per_user=20, total=100)
    for i in range(5):
        q.put(job(f"a{i}", 1))
    q.put(job("b0", 2))
    q.put(job("c0", 3))
    q.put(job("b1", 2))
    assert [j.job_id for j in q.order()] == ["a0", "b0", "c0", "a1", "b1", "a2", "a3", "a4"]
    assert await drain(q) == ["a0", "b0", "c0", "a1", "b1", "a2", "a3", "a4"]


async def test_a_member_who_just_ran_goes_to_the_back_of_the_round() -> None:
    q = FairQueue(per_user=20, total=100)
    q.put(job("a0", 1))
    q.put(job("a1", 1))
    first = await q.get()
    q.put(job("b0", 2))
    assert first.job_id == "a0"
    assert [j.job_id for j in q.order()] == ["a1", "b0"] or [j.job_id for j in q.order()] == ["b0", "a1"]
    assert q.position("b0") == 1


def test_positions_are_one_based_and_follow_the_fair_order() -> None:
    q = FairQueue(per_user=5, total=10)
    assert q.put(job("a0", 1)) == 1
    assert q.put(job("a1", 1)) == 2
    assert q.put(job("b0", 2)) == 2
    assert q.position("a1") == 3
    assert q.position("nope") is None


async def test_the_per_member_cap_counts_running_jobs_and_says_what_to_do() -> None:
    q = FairQueue(per_user=2, total=10)
    q.put(job("a0", 1))
    q.put(job("a1", 1))
    with pytest.raises(QueueRefused, match="already have 2 jobs"):
        q.put(job("a2", 1))
    running = await q.get()
    with pytest.raises(QueueRefused):
        q.put(job("a2", 1))
    q.done(running.job_id)
    assert q.put(job("a2", 1)) == 2


def test_the_global_cap_refuses_with_queue_full() -> None:
    q = FairQueue(per_user=5, total=3)
    for i in range(3):
        q.put(job(f"j{i}", i))
    with pytest.raises(QueueRefused, match="queue is full"):
        q.check_room(99)
    with pytest.raises(QueueRefused, match="queue is full"):
        q.put(job("j3", 99))
    assert len(q) == 3


def test_a_job_id_cannot_be_queued_twice() -> None:
    q = FairQueue()
    q.put(job("a0", 1))
    with pytest.raises(QueueRefused, match="already queued"):
        q.put(job("a0", 2))


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError):
        FairQueue(per_user=0)


async def test_cancel_removes_a_waiting_job_only() -> None:
    q = FairQueue()
    q.put(job("a0", 1))
    q.put(job("a1", 1))
    running = await q.get()
    assert q.cancel(running.job_id) is None  # running jobs are cancelled by the executor, not here
    cancelled = q.cancel("a1")
    assert cancelled is not None and cancelled.job_id == "a1"
    assert len(q) == 0
    assert q.cancel("a1") is None


async def test_get_waits_for_a_job() -> None:
    q = FairQueue()
    waiter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    q.put(job("late", 1))
    got = await asyncio.wait_for(waiter, 1)
    assert got.job_id == "late"
    assert [j.job_id for j in q.running()] == ["late"]


async def test_take_compatible_stops_at_the_first_incompatible_job() -> None:
    q = FairQueue(per_user=10, total=20)
    q.put(job("a0", 1))
    q.put(job("b0", 2))
    q.put(job("c0", 3, steps=8))  # different steps: not batchable with the others
    q.put(job("d0", 4))
    first = await q.get()
    taken = q.take_compatible(first.batch_key(), 3)
    assert [j.job_id for j in taken] == ["b0"]  # d0 must not jump ahead of c0
    assert [j.job_id for j in q.order()] == ["c0", "d0"]
    assert {j.job_id for j in q.running()} == {"a0", "b0"}


def test_restore_keeps_the_original_order_and_ignores_caps() -> None:
    q = FairQueue(per_user=1, total=2)
    q.restore([job("a0", 1), job("a1", 1), job("b0", 2)])
    assert [j.job_id for j in q.order()] == ["a0", "b0", "a1"]
    q.restore([job("a0", 1)])  # already known: not doubled
    assert len(q) == 3


def test_listeners_hear_every_change() -> None:
    q = FairQueue()
    calls = []
    q.add_listener(lambda: calls.append(len(q)))
    q.put(job("a0", 1))
    q.put(job("a1", 1))
    q.cancel("a0")
    assert calls == [1, 2, 1]


def test_eta_uses_the_measured_average_per_key_then_overall_then_default() -> None:
    eta = EtaEstimator(default_s=7.0)
    assert eta.estimate("x") == 7.0
    eta.record("x", 2.0)
    assert eta.estimate("x") == 2.0
    eta.record("x", 4.0)
    assert 2.0 < eta.estimate("x") < 4.0
    assert eta.estimate("unknown") == pytest.approx(eta.estimate("x"))
    eta.record("y", -1.0)  # nonsense measurements are ignored
    assert eta.estimate("y") == pytest.approx(eta.estimate("x"))


async def test_emptying_your_lane_and_resubmitting_does_not_jump_the_queue() -> None:
    q = FairQueue(per_user=10, total=20)
    q.put(job("a0", 1))
    q.put(job("b0", 2))
    q.put(job("b1", 2))
    ran = await q.get()
    q.done(ran.job_id)
    assert ran.job_id == "a0"
    q.put(job("a1", 1))  # a's lane was empty; b has waited since before a's turn
    assert [j.job_id for j in q.order()] == ["b0", "a1", "b1"]


# --------------------------------------------------------------------------- taken, not started yet


def ids(jobs: list[Job]) -> list[str]:
    return [j.job_id for j in jobs]


async def test_a_taken_job_is_next_until_it_starts() -> None:
    q = FairQueue(per_user=5, total=20)
    q.put(job("a0", 1))
    q.put(job("a1", 1))
    taken = await q.get()
    assert ids(q.next_up()) == ["a0"] and q.started() == [] and ids(q.running()) == ["a0"]
    q.start(taken.job_id)
    assert q.next_up() == [] and ids(q.started()) == ["a0"]
    ended_before_starting = await q.get()
    q.done(ended_before_starting.job_id)  # e.g. cancelled on the GPU thread before its batch began
    assert q.next_up() == [] and q.pending_for(1) == 1


async def test_a_newcomer_whose_turn_comes_first_makes_an_early_take_unfair_and_giving_it_back_is_exact() -> None:
    q = FairQueue(per_user=5, total=20)
    for i in range(4):
        q.put(job(f"a{i}", 1))
    q.start((await q.get()).job_id)  # a0 runs
    early = [await q.get()]  # a1, taken for the GPU thread while a0 runs
    assert q.is_fair(early)
    q.put(job("a4", 1))  # A's own next job changes nothing
    assert q.is_fair(early)
    q.put(job("b0", 2))  # B was never served: B's turn comes before A's second
    assert not q.is_fair(early)
    q.give_back(early)
    assert q.next_up() == [] and ids(q.order()) == ["b0", "a1", "a2", "a3", "a4"]
    assert await drain(q) == ["b0", "a1", "a2", "a3", "a4"]


async def test_a_member_served_after_the_early_take_does_not_displace_it() -> None:
    q = FairQueue(per_user=5, total=20)
    q.put(job("a0", 1))
    q.put(job("a1", 1))
    q.put(job("b0", 2))
    for _ in range(2):
        q.start((await q.get()).job_id)  # a0, then b0 ran: A was served before B
    early = [await q.get()]  # a1
    q.put(job("b1", 2))
    assert q.is_fair(early)  # B had its turn after A's: b1 comes after a1
    assert ids(q.order()) == ["b1"]


async def test_giving_back_a_batch_of_several_members_restores_their_lanes_and_turns() -> None:
    q = FairQueue(per_user=5, total=20)
    q.put(job("a_old", 1))
    q.put(job("b_old", 2))
    for _ in range(2):
        q.start((await q.get()).job_id)  # A, then B were served
    q.put(job("a0", 1))
    q.put(job("b0", 2))
    batch = [await q.get(), *q.take_compatible(job("x", 0).batch_key(), 1)]
    assert ids(batch) == ["a0", "b0"] and q.is_fair(batch) and len(q) == 0
    q.put(job("a1", 1))  # A's lane was emptied by the take: this opens a new one
    assert q.is_fair(batch)
    q.put(job("d0", 4))  # D was never served: before A and B
    assert not q.is_fair(batch)
    q.give_back(batch)
    assert q.next_up() == [] and ids(q.order()) == ["d0", "a0", "b0", "a1"]
    assert await drain(q) == ["d0", "a0", "b0", "a1"]

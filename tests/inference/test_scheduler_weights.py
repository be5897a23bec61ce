"""Weights in the fair queue: a member of weight w takes up to w jobs per turn, never starving the
others, and ``order()``, ``is_fair()`` and ``give_back()`` agree with what ``get`` hands out."""

from __future__ import annotations

import random

import pytest

from inference.jobs import TextToImageJob
from inference.scheduler import MAX_WEIGHT, FairQueue


def job(job_id: str, owner: int, *, steps: int = 4) -> TextToImageJob:
    return TextToImageJob(job_id=job_id, owner=owner, prompt="p", steps=steps, width=64, height=64)


def ids(jobs: list[TextToImageJob]) -> list[str]:
    return [j.job_id for j in jobs]


async def drain(queue: FairQueue) -> list[str]:
    out = []
    while len(queue):
        taken = await queue.get()
        queue.start(taken.job_id)
        queue.done(taken.job_id)
        out.append(taken.job_id)
    return out


async def test_a_weighted_member_gets_that_many_jobs_per_turn() -> None:
    q = FairQueue(per_user=20, total=100)
    q.set_weight(1, 2)
    for i in range(5):
        q.put(job(f"a{i}", 1))
    q.put(job("b0", 2))
    q.put(job("b1", 2))
    q.put(job("c0", 3))
    expected = ["a0", "a1", "b0", "c0", "a2", "a3", "b1", "a4"]
    assert ids(q.order()) == expected
    assert q.position("b0") == 3
    assert await drain(q) == expected


async def test_a_heavy_member_never_starves_a_newcomer() -> None:
    q = FairQueue(per_user=20, total=100)
    q.set_weight(1, MAX_WEIGHT)
    for i in range(12):
        q.put(job(f"a{i}", 1))
    first = await q.get()
    q.start(first.job_id)
    q.put(job("b0", 2))  # arrives during the heavy member's turn: waits for the rest of it only
    assert q.position("b0") == MAX_WEIGHT
    assert (await drain(q))[:MAX_WEIGHT + 1] == ["a1", "a2", "a3", "a4", "b0", "a5"]


async def test_a_turn_ends_when_another_member_is_served_in_between() -> None:
    q = FairQueue(per_user=20, total=100)
    q.set_weight(1, 3)
    q.put(job("a0", 1))
    assert ids([await q.get()]) == ["a0"]
    q.put(job("b0", 2))
    q.put(job("a1", 1))  # the turn of 3 goes on: a1 before b0
    assert ids(q.order()) == ["a1", "b0"]
    q.cancel("a1")
    assert ids([await q.get()]) == ["b0"]
    q.put(job("a2", 1))
    q.put(job("c0", 3))
    assert ids(q.order()) == ["c0", "a2"]  # a's turn was over once b was served: c has never had one


def test_weights_are_bounded_and_one_is_the_default() -> None:
    q = FairQueue()
    assert q.weight(7) == 1
    for bad in (0, MAX_WEIGHT + 1, 2.0, True):
        with pytest.raises(ValueError, match=f"from 1 to {MAX_WEIGHT}"):
            q.set_weight(7, bad)  # type: ignore[arg-type]
    q.set_weight(7, 3)
    assert q.weight(7) == 3
    q.set_weight(7, 1)
    assert q.weight(7) == 1


def test_give_back_undoes_weighted_takes_and_is_fair_sees_a_newcomer() -> None:
    q = FairQueue(per_user=20, total=100)
    q.set_weight(1, 3)
    for i in range(4):
        q.put(job(f"a{i}", 1))
    q.put(job("b0", 2))
    before = ids(q.order())
    taken = q.take_compatible(job("x", 1).batch_key(), 2)  # a0, a1: one batch
    assert ids(taken) == ["a0", "a1"] and q.is_fair(taken)
    assert ids(q.order()) == ["a2", "b0", "a3"]  # the turn has one more job
    q.put(job("c0", 3))
    assert q.is_fair(taken)  # c0 comes after a's turn of 3, not before a1
    q.give_back(taken)
    assert ids(q.order()) == ["a0", "a1", "a2", "b0", "c0", "a3"]
    q.cancel("c0")
    assert ids(q.order()) == before


@pytest.mark.parametrize("seed", range(8))
async def test_order_is_what_get_hands_out_and_give_back_restores_it(seed: int) -> None:
    """Random puts, weights, takes, give-backs and cancels: at every step ``order()`` is exactly
    what taking job after job would give, a batch just taken is fair, and giving back the jobs
    taken since a moment restores that moment's order."""
    rng = random.Random(seed)
    q = FairQueue(per_user=50, total=500)
    n = 0
    for _ in range(60):
        action = rng.random()
        owner = rng.randint(1, 4)
        if action < 0.45:
            q.put(job(f"j{n}", owner, steps=rng.choice((2, 3))))
            n += 1
        elif action < 0.55:
            q.set_weight(owner, rng.randint(1, MAX_WEIGHT))
        elif action < 0.65 and q.order():
            q.cancel(rng.choice(q.order()).job_id)
        elif q.order():
            before = ids(q.order())
            taken = q.take_compatible(q.order()[0].batch_key(), rng.randint(1, 3))
            assert ids(taken) == before[:len(taken)] and q.is_fair(taken)
            assert ids(q.order()) == before[len(taken):]
            if rng.random() < 0.4:
                q.give_back(taken)
                assert ids(q.order()) == before
            else:
                for t in taken:
                    q.start(t.job_id)
                    if rng.random() < 0.5:
                        q.done(t.job_id)
    for t in q.running():
        q.start(t.job_id)
        q.done(t.job_id)
    expected = ids(q.order())
    assert await drain(q) == expected

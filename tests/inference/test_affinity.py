"""Model affinity in the fair queue: jobs for the model already on the GPU go first, within a bound
(``queue.affinity_skips``); ``order()``, ``position()``, ``is_fair()`` and ``give_back()`` follow the
same rule, and with no preferred model the queue is exactly the fair queue it always was."""

from __future__ import annotations

import random
from typing import Any

import pytest

from inference.jobs import AnimeJob, Job, TextToImageJob
from inference.scheduler import MAX_WEIGHT, FairQueue

# Three members, each with three jobs for model "A" or "B"; the device holds "A".
BACKLOG = [("1B0", 1, "B"), ("2A0", 2, "A"), ("3A0", 3, "A"), ("1B1", 1, "B"), ("2A1", 2, "A"),
           ("3B1", 3, "B"), ("1B2", 1, "B"), ("2A2", 2, "A"), ("3A2", 3, "A")]
FAIR = ["1B0", "2A0", "3A0", "1B1", "2A1", "3B1", "1B2", "2A2", "3A2"]


def job(job_id: str, owner: int, model: str | None = "A", *, steps: int = 4) -> Job:
    if model is None:
        return AnimeJob(job_id=job_id, owner=owner, init_image="in.png")
    return TextToImageJob(job_id=job_id, owner=owner, prompt="p", width=64, height=64, steps=steps, model=model)


def ids(jobs: list[Job]) -> list[str]:
    return [j.job_id for j in jobs]


def queue_with(backlog: list[tuple[str, int, str | None]], *, skips: int = 2, preferred: set[str] | None = None) -> FairQueue:
    q = FairQueue(per_user=50, total=500, affinity_skips=skips)
    for job_id, owner, model in backlog:
        q.put(job(job_id, owner, model))
    if preferred is not None:
        q.set_preferred(preferred)
    return q


async def drain(q: FairQueue) -> list[str]:
    out = []
    while len(q):
        taken = await q.get()
        q.start(taken.job_id)
        q.done(taken.job_id)
        out.append(taken.job_id)
    return out


def switches(order: list[str], device: str = "A") -> int:
    count = 0
    for job_id in order:
        model = job_id[1]
        count += model != device
        device = model
    return count


@pytest.mark.parametrize(("skips", "preferred"), [(2, set()), (0, {"A"})])
async def test_without_a_preferred_model_or_with_no_skips_allowed_the_order_is_the_fair_one(skips: int, preferred: set[str]) -> None:
    q = queue_with(BACKLOG, skips=skips, preferred=preferred)
    assert ids(q.order()) == FAIR
    assert [q.position(j) for j in FAIR] == list(range(1, 10))
    assert await drain(q) == FAIR


async def test_jobs_for_the_model_on_the_gpu_go_first_and_a_passed_over_job_goes_after_two_skips() -> None:
    q = queue_with(BACKLOG, preferred={"A"})
    # 1B0 is due first: passed over for 2A0 and 3A0, then it goes (and the GPU holds B): 3B1 and
    # 1B1 pass over 2A1 twice, then 2A1 goes, and the A jobs follow it.
    expected = ["2A0", "3A0", "1B0", "3B1", "1B1", "2A1", "3A2", "2A2", "1B2"]
    assert ids(q.order()) == expected
    assert q.position("1B0") == 3 and q.position("2A1") == 6
    assert await drain(q) == expected
    assert switches(expected) == 3 < switches(FAIR) == 6
    assert q.preferred == {"B"}  # the last job taken for another model made it the preferred one


@pytest.mark.parametrize(("skips", "expected"), [
    (1, ["2A0", "1B0", "1B1", "3A0", "2A1", "2A2", "1B2", "3B1", "3A2"]),
    (3, ["2A0", "3A0", "2A1", "1B0", "3B1", "1B1", "1B2", "2A2", "3A2"]),
])
async def test_the_bound_is_how_many_times_a_job_may_be_passed_over(skips: int, expected: list[str]) -> None:
    q = queue_with(BACKLOG, skips=skips, preferred={"A"})
    assert ids(q.order()) == expected
    assert await drain(q) == expected
    assert expected.index("1B0") == skips  # the first job due waited exactly `skips` jobs


async def test_a_job_without_a_model_is_never_passed_over_nor_preferred() -> None:
    q = queue_with([("1anime", 1, None), ("2A0", 2, "A")], preferred={"A"})
    assert ids(q.order()) == ["1anime", "2A0"]  # due first and has no model: not passed over
    q = queue_with([("1B0", 1, "B"), ("2anime", 2, None), ("3A0", 3, "A")], preferred={"A"})
    assert await drain(q) == ["3A0", "1B0", "2anime"]  # the anime job is not taken for affinity
    q = queue_with([("1B0", 1, "B"), ("2anime", 2, None)], preferred={"A"})
    assert await drain(q) == ["1B0", "2anime"]


async def test_a_job_taken_for_affinity_does_not_end_the_turn_of_the_weighted_member_it_passed_over() -> None:
    q = queue_with([("1A0", 1, "A"), ("1B1", 1, "B"), ("1B2", 1, "B"), ("2A0", 2, "A"), ("3B0", 3, "B")])
    q.set_weight(1, 2)
    assert ids(q.order()) == ["1A0", "1B1", "2A0", "3B0", "1B2"]
    q.set_preferred({"A"})
    # 2A0 passes over 1B1, the second job of member 1's turn, which still comes before member 3's.
    expected = ["1A0", "2A0", "1B1", "3B0", "1B2"]
    assert ids(q.order()) == expected
    assert await drain(q) == expected


async def test_give_back_undoes_affinity_takes_exactly_and_is_fair_sees_a_preferred_newcomer() -> None:
    q = queue_with(BACKLOG, preferred={"A"})
    before = ids(q.order())
    taken = [await q.get() for _ in range(4)]
    assert ids(taken) == before[:4] and q.preferred == {"B"}
    assert all(q.is_fair([t]) for t in taken)
    q.give_back(taken)
    assert ids(q.order()) == before and q.preferred == {"A"}
    assert await drain(q) == before

    q = queue_with([("1B0", 1, "B"), ("2B0", 2, "B")], preferred={"A"})
    first = await q.get()
    assert first.job_id == "1B0" and q.is_fair([first])  # no job for A waits: 1B0 goes
    q.put(job("3A0", 3, "A"))  # now one does, and 1B0 has not started: the take is no longer the rule's
    assert not q.is_fair([first])
    q.give_back([first])
    assert ids(q.order()) == ["3A0", "1B0", "2B0"]


async def test_take_compatible_takes_companions_in_the_affinity_order() -> None:
    q = queue_with(BACKLOG, preferred={"A"})
    first = await q.get()
    assert first.job_id == "2A0"
    companions = q.take_compatible(first.batch_key(), 3)
    assert ids(companions) == ["3A0"]  # then 1B0 is due (passed over twice): the batch stops there
    assert q.is_fair([first, *companions])
    assert ids(q.order())[0] == "1B0"


def test_the_bound_is_checked_and_set_preferred_notifies_only_on_a_change() -> None:
    with pytest.raises(ValueError):
        FairQueue(affinity_skips=11)
    with pytest.raises(ValueError):
        FairQueue(affinity_skips=-1)
    q = FairQueue()
    calls: list[int] = []
    q.add_listener(lambda: calls.append(1))
    q.set_preferred({"A"})
    q.set_preferred(frozenset({"A"}))
    assert len(calls) == 1


def test_a_default_model_named_two_ways_is_preferred_by_both_names() -> None:
    q = FairQueue(model_names=lambda m: frozenset({"tiny", ""}) if m in ("", "tiny") else frozenset({m}))
    for job_id, owner, model in [("1B0", 1, "B"), ("2def", 2, ""), ("3tiny", 3, "tiny")]:
        q.put(job(job_id, owner, model))
    q.set_preferred({"B"})
    assert ids(q.order()) == ["1B0", "2def", "3tiny"]
    q.set_preferred({"tiny", ""})
    assert ids(q.order()) == ["2def", "3tiny", "1B0"]


@pytest.mark.parametrize("seed", range(8))
async def test_with_affinity_order_is_what_get_hands_out_and_give_back_restores_it(seed: int) -> None:
    """Random puts, weights, preferences, takes, give-backs and cancels over jobs for two models and
    jobs without one: ``order()`` is what taking job after job gives, a batch just taken is fair,
    giving it back restores the order, and no job is passed over more than the bound."""
    rng = random.Random(seed)
    skips = rng.randint(1, 3)
    q = FairQueue(per_user=50, total=500, affinity_skips=skips)
    n = 0
    for _ in range(70):
        action = rng.random()
        owner = rng.randint(1, 4)
        if action < 0.45:
            q.put(job(f"j{n}", owner, rng.choice(("A", "A", "B", None)), steps=rng.choice((2, 3))))
            n += 1
        elif action < 0.5:
            q.set_weight(owner, rng.randint(1, MAX_WEIGHT))
        elif action < 0.55:
            q.set_preferred(rng.choice((set(), {"A"}, {"B"})))
        elif action < 0.62 and q.order():
            q.cancel(rng.choice(q.order()).job_id)
        elif q.order():
            before, preferred = ids(q.order()), q.preferred
            first = await q.get()
            taken = [first, *q.take_compatible(first.batch_key(), rng.randint(0, 2))] if first.batch_key() else [first]
            assert ids(taken) == before[:len(taken)] and q.is_fair(taken)
            assert ids(q.order()) == before[len(taken):]
            if rng.random() < 0.4:
                q.give_back(taken)
                assert ids(q.order()) == before and q.preferred == preferred
            else:
                for t in taken:
                    q.start(t.job_id)
                    if rng.random() < 0.5:
                        q.done(t.job_id)
    for t in q.running():
        q.start(t.job_id)
    expected = ids(q.order())
    assert await drain_counting_passes(q, skips) == expected


async def drain_counting_passes(q: FairQueue, bound: int) -> list[str]:
    """Drain, checking that the job due first by the fair order alone (what a queue without a
    preference would take) is passed over at most ``bound`` times."""
    passed: dict[str, int] = {}
    out = []
    while len(q):
        preferred = q.preferred
        q.set_preferred(set())
        due = q.order()[0].job_id
        q.set_preferred(preferred)
        taken = await q.get()
        if taken.job_id != due:
            passed[due] = passed.get(due, 0) + 1
            assert passed[due] <= bound
        q.start(taken.job_id)
        q.done(taken.job_id)
        out.append(taken.job_id)
    return out


def test_affinity_skips_is_a_queue_setting_from_0_to_10(tmp_path: Any) -> None:
    from config import ConfigError, load_config

    toml = tmp_path / "easel.toml"
    toml.write_text('[model]\nsource = "x/y"\n', encoding="utf-8")
    assert load_config(toml, environ={}).queue.affinity_skips == 2
    assert load_config(toml, environ={"EASEL_QUEUE__AFFINITY_SKIPS": "0"}).queue.affinity_skips == 0
    with pytest.raises(ConfigError, match="queue.affinity_skips"):
        load_config(toml, environ={"EASEL_QUEUE__AFFINITY_SKIPS": "11"})

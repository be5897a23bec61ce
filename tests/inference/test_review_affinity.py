"""Review findings on model affinity in the fair queue (inference/scheduler.py)."""

from __future__ import annotations

import builtins

import pytest

from config import Config
from inference import scheduler
from inference.jobs import Job, TextToImageJob, UpscaleJob
from inference.scheduler import FairQueue


def job(job_id: str, owner: int, model: str) -> Job:
    return TextToImageJob(job_id=job_id, owner=owner, prompt="p", width=64, height=64, steps=4, model=model)


def ids(jobs: list[Job]) -> list[str]:
    return [j.job_id for j in jobs]


def lane_mixed_queue() -> FairQueue:
    """Member 2's second job uses the preferred model: affinity takes it from the middle of their lane."""
    q = FairQueue(per_user=10, total=50, affinity_skips=2)
    q.put(job("a1", 1, "B"))
    q.put(job("b1", 2, "B"))
    q.put(job("b2", 2, "A"))
    q.set_preferred({"A"})
    return q


async def test_give_back_of_a_job_taken_from_the_middle_of_its_lane_puts_it_back_in_its_place() -> None:
    q = lane_mixed_queue()
    before = ids(q.order())
    taken = await q.get()
    assert taken.job_id == "b2"  # passed over a1 (and b1, member 2's older job)
    q.give_back([taken])
    assert ids(q.order()) == before
    q.set_preferred(set())
    assert ids(q.order()) == ["a1", "b1", "b2"]  # member 2's jobs still in the order they sent them


async def test_give_back_after_an_older_job_of_the_lane_was_cancelled_keeps_the_lane_in_order() -> None:
    q = lane_mixed_queue()
    q.put(job("b3", 2, "B"))
    taken = await q.get()
    assert taken.job_id == "b2"
    assert q.cancel("b1") is not None
    q.give_back([taken])
    q.set_preferred(set())
    assert ids(q.order()) == ["a1", "b2", "b3"]


async def test_is_fair_sees_a_job_taken_from_the_middle_of_its_lane_in_its_place() -> None:
    q = lane_mixed_queue()
    taken = await q.get()
    assert taken.job_id == "b2"
    q.put(job("c1", 3, "A"))  # with the take undone, c1 comes before b2 (behind b1) in fair order
    assert not q.is_fair([taken])


def test_order_with_a_preferred_model_sorts_the_members_once_not_once_per_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """order() runs on every submit and every position update: with affinity it simulates each take,
    and sorting every member's turn again for each job made it O(jobs x members log members)
    (5000 jobs of 1000 members: seconds on the event loop). What it hands out is checked against
    get() in tests/inference/test_affinity.py."""
    q = FairQueue(per_user=10, total=500, affinity_skips=2)
    for i in range(60):
        q.put(job(f"j{i}", i % 20, "ABC"[i * 7 % 3]))
    q.set_preferred({"A"})
    calls: list[int] = []
    monkeypatch.setattr(scheduler, "sorted", lambda *a, **k: calls.append(1) or builtins.sorted(*a, **k), raising=False)
    assert len(q.order()) == 60
    assert len(calls) == 1


async def test_after_a_job_passed_over_a_weighted_run_order_is_still_what_get_hands_out() -> None:
    """A take for affinity leaves the passed-over member's run going (``last``) while its own member
    is served last; the fair order read in one go must then still send that run's member to the
    back of the round once their run goes on, as get() does."""
    q = FairQueue(per_user=10, total=50, affinity_skips=2)
    q.set_weight(1, 2)
    for job_id, owner, model in [("a1", 1, "B"), ("a2", 1, "B"), ("a3", 1, "B"), ("b1", 2, "A"), ("b2", 2, "B"),
                                 ("c1", 3, "B")]:
        q.put(job(job_id, owner, model))
    first = await q.get()  # member 1's run of two starts
    q.set_preferred({"A"})
    second = await q.get()  # b1 passes over a2: member 1's run goes on
    assert (first.job_id, second.job_id) == ("a1", "b1")
    for preferred in ({"B"}, set()):  # every job left uses the preferred model, or none is preferred
        q.set_preferred(preferred)
        shown = ids(q.order())
        handed = []
        while len(q):
            taken = await q.get()
            handed.append(taken.job_id)
        assert handed == shown
        q.give_back([j for j in q.next_up() if j.job_id in handed])


async def test_give_back_after_the_passed_over_job_was_cancelled_keeps_no_skip_count_of_it() -> None:
    """Undoing a take that passed over a job cancelled since must not bring back that job's skip
    count: nothing would ever remove it again (a job id per such cancel, for as long as the bot runs)."""
    q = FairQueue(per_user=10, total=50, affinity_skips=3)
    for job_id, owner, model in [("a1", 1, "B"), ("b1", 2, "A"), ("c1", 3, "A")]:
        q.put(job(job_id, owner, model))
    q.set_preferred({"A"})
    first, second = await q.get(), await q.get()
    assert (first.job_id, second.job_id) == ("b1", "c1")  # both passed over a1
    assert q.cancel("a1") is not None
    q.give_back([second])
    assert "a1" not in q._skips
    q.give_back([first])
    assert q._skips == {}


@pytest.mark.parametrize(("mode", "preferred"), [("creative", {"twin"}), ("subtle", {"tiny", ""})])
def test_a_creative_upscale_moves_the_preference_to_the_model_it_put_on_the_device(
        tiny_config: Config, monkeypatch: pytest.MonkeyPatch, mode: str, preferred: set[str]) -> None:
    """A creative upscale refines with its model (inference/upscale/runner.py), so the device holds
    that model afterwards; the executor went on preferring the model of the diffusion batch before,
    and jobs for it passed over jobs for the model actually loaded (a switch more, not fewer)."""
    from inference.affinity import DevicePreference
    from inference.prepare import PreparedJob
    from tests.inference.engine_helpers import GUARD_S
    from tests.inference.test_affinity_engine import loaded_executor, two_models

    executor = loaded_executor(two_models(tiny_config))
    try:
        assert executor.preferred_models() == {"tiny", ""}
        monkeypatch.setattr(executor, "_timed_batch", lambda jobs, relayed: [])  # only what starting it records
        upscale = UpscaleJob(job_id="u", owner=1, init_image="in.png", upscaler="x", factor=2, mode=mode,
                             model="twin" if mode == "creative" else "", steps=4, strength=0.3)
        assert DevicePreference(executor.config, executor).now([upscale]) == preferred  # taken, not started
        executor.run_batch([PreparedJob(upscale)], lambda event: None).result(GUARD_S)
        assert executor.preferred_models() == preferred
    finally:
        executor.shutdown()

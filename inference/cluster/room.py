"""How many batches the bot may have out at the workers: counted per worker, in fair order across models.

A live worker takes its ``slots`` plus one prefetched batch in all, whatever models it holds. A batch
may go when fewer batches of its model are out than the workers able to run it (model, LoRAs,
pixels: :func:`inference.cluster.roster.can_run`) have places, and a place is left in all once the
earlier batches of other models that could go now have theirs (the fair queue's order holds across
models; an earlier batch no worker can take does not hold a later one back).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from inference.cluster.collect import ClusterBatch
from inference.cluster.roster import batch_needs, can_run


def model_room(state: ClusterBatch, roster: list[dict[str, Any]]) -> int:
    """Places for ``state``: slots plus one of each live worker able to run it (0: none can)."""
    loras, pixels = batch_needs([p.job for p in state.jobs])
    return sum(w["slots"] + 1 for w in roster if can_run(w, state.model, loras, pixels))


def has_room(state: ClusterBatch, batches: Iterable[ClusterBatch], out: dict[str, int],
             roster: list[dict[str, Any]]) -> bool:
    """Whether ``state`` may be sent now; ``batches`` are those handed over (repeats allowed),
    ``out`` the batches sent and not answered, per model."""
    if out.get(state.model, 0) >= model_room(state, roster):
        return False
    ahead: dict[str, int] = {}  # model -> earlier waiting batches of it that could go now
    for other in {id(b): b for b in batches}.values():
        if (other.model != state.model and 0 <= other.seq < state.seq and not other.sent
                and not other.withdrawn and not other.done.done()):
            free = model_room(other, roster) - out.get(other.model, 0)
            ahead[other.model] = min(ahead.get(other.model, 0) + 1, max(0, free))
    total = sum(w["slots"] + 1 for w in roster)
    return sum(out.values()) + sum(ahead.values()) < total

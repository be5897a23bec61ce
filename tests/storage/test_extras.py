"""Pictures shown with a result (a tile's 2x2 preview, a control map): recorded with the job in the
trip that records it finished, found again in order after a restart, deleted with the job."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import Database, OutputStore
from storage.extras import extra_role
from storage.images import NewImage
from storage.jobs import JobsMissing
from tests.storage.helpers import add_job


def image(job_id: str) -> NewImage:
    return NewImage(job_id, 0, 5, f"/o/{job_id}.png", 64, 64, "aa" * 32, 10)


async def test_extras_are_recorded_with_the_result_in_one_trip_and_come_back_in_order(db: Database) -> None:
    for jid in ("j1", "j2"):
        await add_job(db, jid)
        await db.jobs.set_status(jid, "running")
    trips = db.jobs._conn._batcher.trips  # noqa: SLF001
    pictures = [("tile", "/o/t1.png"), ("tile", "/o/t2.png"), ("control", "/o/c.png")]
    pictures += [("tile", f"/o/t{n}.png") for n in range(3, 12)]  # positions past 9 keep their order
    rows = await db.record_results([image("j1"), image("j2")], ["j1", "j2"], claim=True, extras={"j1": pictures})
    assert db.jobs._conn._batcher.trips == trips + 1  # noqa: SLF001
    assert sorted(rows) == ["j1", "j2"]
    assert await db.extras.for_job("j1") == [(label, Path(path)) for label, path in pictures]
    assert await db.extras.for_job("j2") == []
    assert await db.images.for_job("j1") == [image("j1").as_row()]  # not results: nothing picks them


async def test_a_rerun_replaces_the_extras_it_recorded_before(db: Database) -> None:
    await add_job(db, "j1")
    await db.record_results([image("j1")], ["j1"], extras={"j1": [("tile", "/o/old.png")]})
    await db.record_results([image("j1")], ["j1"], extras={"j1": [("tile", "/o/new.png")]})
    assert await db.extras.for_job("j1") == [("tile", Path("/o/new.png"))]


async def test_extras_of_a_job_gone_from_the_log_record_nothing(db: Database) -> None:
    await add_job(db, "j1")
    await db.jobs.set_status("j1", "running")
    with pytest.raises(JobsMissing) as missing:
        await db.record_results([image("j1")], ["j1"], extras={"ghost": [("tile", "/o/t.png")]})
    assert list(missing.value.job_ids) == ["ghost"]
    assert await db.images.for_job("j1") == []
    assert (await db.jobs.get("j1")).status == "running"  # type: ignore[union-attr]


async def test_forget_deletes_the_extras_files_with_the_job(db: Database, outputs: OutputStore) -> None:
    await add_job(db, "j1", user_id=1)
    preview = (await outputs.save_bytes(b"a tile preview")).path
    await db.record_results([], ["j1"], extras={"j1": [("tile", preview)]})
    report = await db.forget(1)
    assert preview in report.files and not preview.exists()
    assert await db.extras.for_job("j1") == []


@pytest.mark.parametrize(("position", "label"), [(-1, "tile"), (100, "tile"), (0, ""), (0, "a:b")])
def test_an_extra_role_needs_a_position_and_a_plain_label(position: int, label: str) -> None:
    with pytest.raises(ValueError, match="extra picture"):
        extra_role(position, label)


async def test_forgetting_the_supplier_of_a_control_picture_takes_its_map_too(db: Database,
                                                                              outputs: OutputStore) -> None:
    picture = (await outputs.save_bytes(b"bob's picture")).path
    control_map = (await outputs.save_bytes(b"its canny map")).path
    preview = (await outputs.save_bytes(b"a tile preview")).path
    await add_job(db, "j1", user_id=1, control_image=str(picture), control_mode="canny", suppliers={"control_image": 2})
    await db.record_results([], ["j1"], extras={"j1": [("control", control_map), ("tile", preview)]})
    report = await db.forget(2)  # bob, who supplied the picture alice's job followed
    assert report.detached == 1 and not picture.exists() and not control_map.exists()
    assert await db.extras.for_job("j1") == [("tile", preview)]  # alice's own tile preview stays
    assert (await db.jobs.get("j1")).params["control_image"] == ""  # type: ignore[union-attr]

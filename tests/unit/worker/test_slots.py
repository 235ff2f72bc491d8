"""Slot accounting: entries held never exceed the slots, and every slot comes back."""

from __future__ import annotations

import asyncio

import pytest

from service.worker.slots import Slots
from service.worker.state import QueueEntry


async def test_a_lease_takes_every_free_slot_and_gives_back_the_unused() -> None:
    slots = Slots(4)
    release = asyncio.Event()
    lease = await slots.take()
    assert (lease.left, slots.free) == (4, 0)
    lease.start(release.wait())
    lease.close()
    assert (lease.left, slots.free, len(slots.tasks)) == (0, 3, 1)
    release.set()
    await asyncio.gather(*slots.tasks)
    assert (slots.free, slots.tasks) == (4, set())


async def test_keep_gives_back_all_but_the_slots_kept() -> None:
    slots = Slots(5)
    lease = await slots.take()
    lease.keep(1)
    assert (lease.left, slots.free) == (1, 4)
    lease.keep(3)  # cannot take back what it gave
    assert (lease.left, slots.free) == (1, 4)


async def test_take_waits_for_a_slot_to_free() -> None:
    slots = Slots(1)
    release = asyncio.Event()
    first = await slots.take()
    first.start(release.wait())
    waiting = asyncio.create_task(slots.take())
    await asyncio.sleep(0)
    assert not waiting.done()
    release.set()
    second = await asyncio.wait_for(waiting, 5)
    assert second.left == 1 and slots.free == 0


async def test_a_lease_cannot_start_more_than_it_holds() -> None:
    slots = Slots(1)
    lease = await slots.take()
    done = asyncio.Event()

    async def work() -> None:
        done.set()

    lease.start(work())
    extra = work()
    with pytest.raises(RuntimeError):
        lease.start(extra)
    extra.close()
    await asyncio.wait_for(done.wait(), 5)


async def test_leases_of_many_loops_never_hold_more_than_the_slots() -> None:
    slots = Slots(3)
    held = 0
    most = 0

    async def work() -> None:
        nonlocal held, most
        held += 1
        most = max(most, held)
        await asyncio.sleep(0)
        held -= 1

    async def loop() -> None:
        for _ in range(20):
            lease = await slots.take()
            lease.start(work())
            lease.close()

    await asyncio.gather(*(loop() for _ in range(4)))
    await asyncio.gather(*slots.tasks)
    assert most <= 3


def test_no_slots_is_refused() -> None:
    with pytest.raises(ValueError):
        Slots(0)


@pytest.mark.parametrize(
    "fields",
    [
        {b"run_id": b"r1", b"sid": b"s", b"kind": b"workflow"},
        {"run_id": "r1", "sid": "s", "kind": "workflow"},
    ],
)
def test_a_queue_entry_reads_bytes_or_text(fields: dict[object, object]) -> None:
    entry = QueueEntry.parse(0, b"1700000000000-3", fields)
    assert (entry.entry_id, entry.run_id, entry.sid, entry.kind) == (
        "1700000000000-3",
        "r1",
        "s",
        "workflow",
    )
    assert entry.queued_ms == 1_700_000_000_000 and entry.schedule_id is None


def test_an_entry_without_a_kind_is_a_schedules() -> None:
    entry = QueueEntry.parse(0, "1-0", {b"run_id": b"r", b"sid": b"s"})
    assert entry.kind == "schedule" and entry.schedule_id == "s"

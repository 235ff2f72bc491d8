"""``cancel_and_wait``: every task is cancelled and unwound, and a real error is not lost."""

from __future__ import annotations

import asyncio

import pytest

from service.tasks import cancel_and_wait


async def test_cancels_every_task_and_waits_for_each_to_unwind() -> None:
    unwound: list[int] = []

    async def loop(n: int) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # an unwinding step that itself awaits
            unwound.append(n)

    tasks = [asyncio.create_task(loop(n)) for n in range(3)]
    await asyncio.sleep(0)
    await cancel_and_wait(tasks)
    assert sorted(unwound) == [0, 1, 2]
    assert all(task.cancelled() for task in tasks)


async def test_an_error_other_than_cancellation_is_raised_once_all_have_unwound() -> None:
    async def broken() -> None:
        raise ValueError("boom")

    async def waiting() -> None:
        await asyncio.Event().wait()

    failed = asyncio.create_task(broken())
    other = asyncio.create_task(waiting())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="boom"):
        await cancel_and_wait([failed, other])
    assert other.cancelled()  # unwound, not left running behind the error


async def test_finished_tasks_and_an_empty_list_are_fine() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    await cancel_and_wait([done])
    await cancel_and_wait([])

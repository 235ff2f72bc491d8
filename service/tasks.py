"""Ending a process's background loops."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]]) -> None:
    """Cancel every task and wait until all have unwound.

    A task's own cancellation is expected and swallowed. The first other error a task
    ended with is raised, but only once every task has finished, so none is left
    running behind it.
    """
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    ended = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in ended:
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome

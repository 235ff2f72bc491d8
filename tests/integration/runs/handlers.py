"""Python handlers the run tests name as ``tests.integration.runs.handlers:<fn>``."""

from __future__ import annotations

import asyncio
import threading

from service.worker.targets.base import RunContext

started = threading.Event()
saw_cancel = threading.Event()


def reset() -> None:
    started.clear()
    saw_cancel.clear()


def noop(ctx: RunContext) -> None:
    return None


async def wait_for_cancel(ctx: RunContext) -> None:
    started.set()
    try:
        await asyncio.wait_for(ctx.cancelled.wait(), timeout=20)
    finally:
        saw_cancel.set()


async def nap(ctx: RunContext) -> None:
    """A handler that takes a little while, so runs are in flight when a fault strikes."""
    await asyncio.sleep(0.02)

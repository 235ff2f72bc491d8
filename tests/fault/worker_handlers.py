"""Handlers the worker fault tests name as ``tests.fault.worker_handlers:<fn>``."""

from __future__ import annotations

import asyncio

from service.worker.targets.base import RunContext


async def slow(ctx: RunContext) -> None:
    """Holds its worker slot for ``input["sleep_s"]`` seconds, so workers stay busy."""
    await asyncio.sleep(float(ctx.input["sleep_s"]))

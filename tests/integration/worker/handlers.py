"""Handlers the Python target tests name as ``tests.integration.worker.handlers:<fn>``."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from service.worker.targets.base import PermanentFailure, RunContext

seen: list[RunContext] = []
# set by a handler once it is running, so a test can wait for it without sleeping
started = threading.Event()
finished = threading.Event()
release = threading.Event()

NOT_CALLABLE = 42


def reset() -> None:
    seen.clear()
    for event in (started, finished, release):
        event.clear()


def sync_ok(ctx: RunContext) -> dict[str, Any]:
    seen.append(ctx)
    return {"thread": threading.current_thread() is not threading.main_thread()}


async def async_ok(ctx: RunContext) -> list[int]:
    seen.append(ctx)
    await asyncio.sleep(0)
    return [ctx.attempt, ctx.input["n"]]


def returns_nothing(ctx: RunContext) -> None:
    seen.append(ctx)


def returns_object(ctx: RunContext) -> object:
    return object()


def raises(ctx: RunContext) -> None:
    raise ValueError(f"bad customer {ctx.input['n']}")


async def async_raises(ctx: RunContext) -> None:
    raise RuntimeError("database is down")


def permanent(ctx: RunContext) -> None:
    raise PermanentFailure("customer 7 was deleted")


async def async_permanent(ctx: RunContext) -> None:
    raise PermanentFailure("no such invoice")


async def async_slow(ctx: RunContext) -> None:
    started.set()
    try:
        await asyncio.sleep(3600)
    finally:
        finished.set()  # cancelled: its cleanup ran


def sync_slow(ctx: RunContext) -> None:
    """Ignores the clock until the test releases it (a thread cannot be killed)."""
    started.set()
    release.wait(30)
    finished.set()


def sync_cooperative(ctx: RunContext) -> str:
    """Polls for cancellation, as long-running sync handlers should."""
    started.set()
    deadline = time.monotonic() + 30
    while not ctx.cancelled.is_set() and time.monotonic() < deadline:
        release.wait(0.01)
    finished.set()
    return "stopped early" if ctx.cancelled.is_set() else "ran out"


async def sleep_input(ctx: RunContext) -> None:
    """Takes ``input["sleep_s"]`` seconds, so a test can keep a worker's slot busy."""
    seen.append(ctx)
    await asyncio.sleep(float(ctx.input["sleep_s"]))


async def says_timed_out(ctx: RunContext) -> None:
    """Fails with a message about a timeout, without the attempt running out of time."""
    raise RuntimeError("upstream timed out")


async def slow_to_stop(ctx: RunContext) -> None:
    """Needs a few turns of the event loop to clean up once cancelled."""
    started.set()
    try:
        await asyncio.sleep(3600)
    finally:
        await asyncio.sleep(0.1)
        finished.set()

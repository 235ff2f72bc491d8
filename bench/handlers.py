"""Handlers the run benchmark names (``bench.handlers:noop``)."""

from __future__ import annotations

from service.worker.targets.base import RunContext


def noop(ctx: RunContext) -> None:
    return None


async def async_noop(ctx: RunContext) -> None:
    return None

"""What a target is: one attempt of a run in, one ``AttemptResult`` out.

A target never raises out of ``attempt``: every failure (a refused connection, a
handler's exception, a timeout, a cancellation) is a result, marked retryable or
not, so the worker has one path for recording attempts.

Handler authors raise ``PermanentFailure`` to say that retrying cannot help.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from service.domain.fire.requests import FireMode, fire_id
from service.domain.retry import MAX_RETRY_AFTER_S as MAX_RETRY_AFTER_S
from service.domain.timeutil import parse_instant

T = TypeVar("T")

EXCERPT_LIMIT = 2048
"""The most characters of a response body (or handler result) kept on an attempt."""


class PermanentFailure(Exception):
    """Raised by a handler when retrying the run cannot help (bad input, gone resource)."""


@dataclass
class RunContext:
    """What a target gets for one attempt of a run."""

    run_id: str
    schedule_id: str | None
    workflow_id: str
    trigger: str  # schedule | manual | api | backfill
    nominal_time: str | None  # RFC 3339
    attempt: int  # 1-based
    input: Any
    timeout_s: float  # the attempt's time limit
    traceparent: str | None = None
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def fire_id(self) -> str | None:
        """The fire that made this run, as the fire events name it; None for a run of a
        workflow alone (``POST /v1/workflows/{id}/runs``), which no schedule fired.

        Fire ids are a function of (schedule, nominal time, trigger), and of the run for a
        trigger, so they are derived here rather than carried with every run.
        """
        if self.schedule_id is None or not self.nominal_time:
            return None
        try:
            mode = FireMode(self.trigger)
            nominal_ms = parse_instant(self.nominal_time)
        except ValueError:
            return None
        return fire_id(self.schedule_id, nominal_ms, mode, self.run_id)


@dataclass(frozen=True)
class AttemptResult:
    ok: bool
    retryable: bool  # False: retrying cannot help (410, 400, a bad handler path)
    error: str | None = None  # a short human-readable reason
    status: int | None = None  # the HTTP status, if any
    body_excerpt: str | None = None  # at most EXCERPT_LIMIT characters
    retry_after_s: float | None = None  # from Retry-After on 429/503, <= MAX_RETRY_AFTER_S
    timed_out: bool = False  # the attempt ran out of time
    stopped: bool = False  # the attempt was cancelled or terminated before it ended
    refused: bool = False  # the outbound policy refused the target's address: nothing was sent

    @classmethod
    def success(cls, status: int | None = None, body_excerpt: str | None = None) -> AttemptResult:
        return cls(ok=True, retryable=False, status=status, body_excerpt=body_excerpt)

    @classmethod
    def failure(
        cls,
        error: str,
        *,
        retryable: bool,
        status: int | None = None,
        body_excerpt: str | None = None,
        retry_after_s: float | None = None,
        refused: bool = False,
    ) -> AttemptResult:
        return cls(
            ok=False,
            retryable=retryable,
            error=error,
            status=status,
            body_excerpt=body_excerpt,
            retry_after_s=retry_after_s,
            refused=refused,
        )


CANCELLED = AttemptResult(ok=False, retryable=False, error="cancelled", stopped=True)
"""The attempt stopped because the run was asked to cancel."""

TERMINATED = AttemptResult(ok=False, retryable=False, error="terminated", stopped=True)
"""The attempt was stopped without being asked (a terminate request)."""


def timed_out(timeout_s: float) -> AttemptResult:
    return AttemptResult(
        ok=False, retryable=True, error=f"timed out after {timeout_s:g}s", timed_out=True
    )


class Target(Protocol):
    async def attempt(self, ctx: RunContext) -> AttemptResult: ...


async def race_cancel(ctx: RunContext, work: asyncio.Task[T]) -> T | None:
    """Await ``work`` unless ``ctx.cancelled`` is set first; then cancel it and return None.

    The task is always finished (awaited) before this returns, so nothing is left
    running unowned.
    """
    if ctx.cancelled.is_set():
        work.cancel()
    waiter = asyncio.create_task(ctx.cancelled.wait())
    try:
        await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not work.done():
            work.cancel()
        await asyncio.gather(work, waiter, return_exceptions=True)
    if work.cancelled():
        return None
    return work.result()

"""The ``python`` target: calls ``module:function`` with the attempt's ``RunContext``.

- An ``async def`` handler runs on the worker's event loop; when the attempt times
  out or the run is asked to cancel, its task is cancelled (it sees
  ``CancelledError`` at its next ``await``).
- A plain ``def`` handler runs in a thread (``asyncio.to_thread``). A thread cannot
  be killed: on timeout or cancellation the attempt ends at once with that outcome
  while the thread runs on in the background until the function returns, and
  whatever it returns or raises then is dropped. It holds one of the default
  executor's threads meanwhile, so a sync handler should poll
  ``ctx.cancelled.is_set()`` and watch its own deadline (``ctx.timeout_s``) in
  long loops.
- Raising ``PermanentFailure`` fails the run for good; any other exception fails
  the attempt, retryably, as ``"<ExceptionType>: <message>"``.
- A bad handler path (no such module or function, an import that raises) fails the
  attempt for good with the reason; the import is retried on the next run, so a
  handler deployed later is picked up.
- A JSON-able return value is kept, truncated, as the attempt's excerpt.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any

import orjson

from service.worker.targets.base import (
    CANCELLED,
    EXCERPT_LIMIT,
    AttemptResult,
    PermanentFailure,
    RunContext,
    race_cancel,
    timed_out,
)

Handler = Callable[[RunContext], Any]

_resolved: dict[str, Handler] = {}


class HandlerNotFound(LookupError):
    def __init__(self, handler: str, reason: str) -> None:
        super().__init__(f"handler {handler!r}: {reason}")
        self.handler = handler


def resolve(handler: str) -> Handler:
    """The function a ``module:function`` path names (imported once per process)."""
    found = _resolved.get(handler)
    if found is not None:
        return found
    module_name, sep, attr = handler.partition(":")
    if not sep or not module_name or not attr:
        raise HandlerNotFound(handler, "must be 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HandlerNotFound(handler, f"cannot import {module_name!r}: {exc}") from exc
    except Exception as exc:
        raise HandlerNotFound(
            handler, f"importing {module_name!r} raised {_describe(exc)}"
        ) from exc
    fn = getattr(module, attr, None)
    if fn is None:
        raise HandlerNotFound(handler, f"module {module_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise HandlerNotFound(handler, f"{attr!r} is not callable")
    _resolved[handler] = fn
    return fn  # type: ignore[no-any-return]


class PythonTarget:
    """Runs a Python handler in this process; never raises out of ``attempt``."""

    def __init__(self, handler: str) -> None:
        self.handler = handler

    async def _resolve(self) -> Handler:
        found = _resolved.get(self.handler)
        if found is not None:
            return found
        # a first import can be slow (heavy modules): keep it off the event loop
        return await asyncio.to_thread(resolve, self.handler)

    async def attempt(self, ctx: RunContext) -> AttemptResult:
        try:
            fn = await self._resolve()
        except HandlerNotFound as exc:
            return AttemptResult.failure(str(exc), retryable=False)
        if ctx.cancelled.is_set():
            return CANCELLED
        call = fn(ctx) if _is_async(fn) else asyncio.to_thread(fn, ctx)
        task: asyncio.Task[Any] = asyncio.ensure_future(call)
        try:
            async with asyncio.timeout(ctx.timeout_s):
                value = await race_cancel(ctx, task)
        except TimeoutError:
            if not task.done() or task.cancelled():
                return timed_out(ctx.timeout_s)
            return _outcome(task)  # finished just as the time ran out
        except PermanentFailure as exc:
            return AttemptResult.failure(_describe(exc), retryable=False)
        except Exception as exc:
            return AttemptResult.failure(_describe(exc), retryable=True)
        if task.cancelled():
            return CANCELLED
        return AttemptResult.success(body_excerpt=_excerpt(value))


def _outcome(task: asyncio.Task[Any]) -> AttemptResult:
    exc = task.exception()
    if exc is None:
        return AttemptResult.success(body_excerpt=_excerpt(task.result()))
    return AttemptResult.failure(_describe(exc), retryable=not isinstance(exc, PermanentFailure))


def _is_async(fn: Handler) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - an instance with an async __call__
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _excerpt(value: Any) -> str | None:
    if value is None:
        return None
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text[:EXCERPT_LIMIT]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]

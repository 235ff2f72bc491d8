"""The Python target: sync and async handlers, failures, time limits, cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from service.worker.targets.base import RunContext
from service.worker.targets.python import PythonTarget, resolve
from tests.integration.worker import handlers

MODULE = "tests.integration.worker.handlers"


@pytest.fixture(autouse=True)
def fresh_handlers() -> Iterator[None]:
    handlers.reset()
    yield
    handlers.release.set()  # let any thread a test left behind finish


def context(timeout_s: float = 5.0, **extra: Any) -> RunContext:
    fields: dict[str, Any] = {
        "run_id": "run_1",
        "schedule_id": "sch_1",
        "workflow_id": "wf_1",
        "trigger": "manual",
        "nominal_time": None,
        "attempt": 2,
        "input": {"n": 7},
        "timeout_s": timeout_s,
    }
    fields.update(extra)
    return RunContext(**fields)


async def run(name: str, ctx: RunContext | None = None) -> Any:
    return await PythonTarget(f"{MODULE}:{name}").attempt(ctx or context())


async def wait_for(event: Any, seconds: float = 5.0) -> None:
    """Waits for a threading.Event without blocking the loop (polled with a deadline)."""
    deadline = time.monotonic() + seconds
    while not event.is_set():
        assert time.monotonic() < deadline, "timed out waiting for the handler"
        await asyncio.to_thread(event.wait, 0.05)


async def test_sync_handler_runs_in_a_thread_with_the_context() -> None:
    ctx = context()
    result = await run("sync_ok", ctx)
    assert (result.ok, result.body_excerpt) == (True, '{"thread":true}')
    assert handlers.seen == [ctx]


async def test_async_handler_is_awaited() -> None:
    result = await run("async_ok")
    assert (result.ok, result.body_excerpt) == (True, "[2,7]")


async def test_return_values_that_are_not_json_are_kept_as_repr() -> None:
    assert (await run("returns_nothing")).body_excerpt is None
    excerpt = (await run("returns_object")).body_excerpt
    assert excerpt is not None and excerpt.startswith("<object object")


@pytest.mark.parametrize(
    ("name", "error"),
    [("raises", "ValueError: bad customer 7"), ("async_raises", "RuntimeError: database is down")],
)
async def test_an_exception_fails_the_attempt_retryably(name: str, error: str) -> None:
    result = await run(name)
    assert (result.ok, result.retryable, result.error) == (False, True, error)


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("permanent", "PermanentFailure: customer 7 was deleted"),
        ("async_permanent", "PermanentFailure: no such invoice"),
    ],
)
async def test_permanent_failure_is_not_retryable(name: str, error: str) -> None:
    result = await run(name)
    assert (result.ok, result.retryable, result.error) == (False, False, error)


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        ("no_such_module_here:run", "cannot import 'no_such_module_here'"),
        (f"{MODULE}:missing", f"module '{MODULE}' has no attribute 'missing'"),
        (f"{MODULE}:NOT_CALLABLE", "'NOT_CALLABLE' is not callable"),
        ("tests.integration.worker.broken_handlers:run", "RuntimeError: settings missing"),
        ("no_colon", "must be 'module:function'"),
    ],
)
async def test_a_bad_handler_path_fails_for_good_with_the_reason(handler: str, reason: str) -> None:
    result = await PythonTarget(handler).attempt(context())
    assert (result.ok, result.retryable) == (False, False)
    assert result.error is not None and reason in result.error
    assert result.error.startswith(f"handler {handler!r}")


def test_resolve_caches_the_function() -> None:
    assert resolve(f"{MODULE}:sync_ok") is resolve(f"{MODULE}:sync_ok") is handlers.sync_ok


async def test_a_slow_async_handler_is_cancelled_at_the_time_limit() -> None:
    started = time.monotonic()
    result = await run("async_slow", context(timeout_s=0.3))
    assert (result.ok, result.retryable, result.error) == (False, True, "timed out after 0.3s")
    assert (result.timed_out, result.stopped) == (True, False)
    assert time.monotonic() - started < 3
    assert handlers.finished.is_set()  # the task was cancelled and awaited, not left running


async def test_a_slow_sync_handler_times_out_and_finishes_in_the_background() -> None:
    started = time.monotonic()
    result = await run("sync_slow", context(timeout_s=0.3))
    assert (result.ok, result.retryable, result.error) == (False, True, "timed out after 0.3s")
    assert result.timed_out
    assert time.monotonic() - started < 3
    assert not handlers.finished.is_set()  # still running in its thread
    handlers.release.set()
    await wait_for(handlers.finished)


async def test_cancelling_an_async_handler_cancels_its_task() -> None:
    ctx = context(timeout_s=30)
    attempt = asyncio.create_task(run("async_slow", ctx))
    await wait_for(handlers.started)

    ctx.cancelled.set()
    result = await asyncio.wait_for(attempt, 5)

    assert (result.ok, result.retryable, result.error) == (False, False, "cancelled")
    assert (result.stopped, result.timed_out) == (True, False)
    assert handlers.finished.is_set()


async def test_a_sync_handler_can_observe_cancellation() -> None:
    ctx = context(timeout_s=30)
    attempt = asyncio.create_task(run("sync_cooperative", ctx))
    await wait_for(handlers.started)

    ctx.cancelled.set()
    result = await asyncio.wait_for(attempt, 5)

    assert result.error == "cancelled" and result.stopped
    await wait_for(handlers.finished)  # the handler saw the flag and returned


async def test_a_run_cancelled_before_the_attempt_does_not_call_the_handler() -> None:
    ctx = context()
    ctx.cancelled.set()
    result = await run("sync_ok", ctx)
    assert result.error == "cancelled" and result.stopped and handlers.seen == []

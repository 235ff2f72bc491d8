"""Where Redis's own errors become cronstream's: an unreachable or silent Redis is
``StoreUnavailable``.

The store adapters wrap their Redis calls in ``translate_redis_errors``, as a
decorator (coroutine functions and async generators) or as ``async with``, so
callers above the store (the API's problem middleware, the CLI) handle one error
of their own instead of the client library's. It is raised ``from`` the Redis
error, which stays in the traceback. Other Redis errors (a script error, a wrong
type) are bugs, not outages, and pass through unchanged.

``StoreUnavailable`` is a ``ConnectionError``, hence an ``OSError``: loops that
ride out outages by catching ``OSError`` (ticker, worker, projector) keep doing so.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, cast

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.errors import StoreUnavailable

UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
)
"""What an outage looks like from the client: refused, reset, timed out, loading."""

F = TypeVar("F", bound=Callable[..., Any])


def unavailable(exc: BaseException, where: str) -> StoreUnavailable:
    return StoreUnavailable(where, str(exc) or type(exc).__name__)


class _Translate:
    """Decorator and async context manager in one (stateless, so shared freely)."""

    def __call__(self, fn: F) -> F:
        where = fn.__qualname__
        if inspect.isasyncgenfunction(fn):
            return cast(F, _wrap_generator(fn, where))
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"{where}: translate_redis_errors wraps async functions only")
        coroutine = cast(Callable[..., Awaitable[Any]], fn)

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await coroutine(*args, **kwargs)
            except StoreUnavailable:
                raise
            except UNAVAILABLE as exc:
                raise unavailable(exc, where) from exc

        return cast(F, wrapper)

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if isinstance(exc, UNAVAILABLE) and not isinstance(exc, StoreUnavailable):
            raise unavailable(exc, "redis") from exc


def _wrap_generator(
    fn: Callable[..., AsyncGenerator[Any, None]], where: str
) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        try:
            async with contextlib.aclosing(fn(*args, **kwargs)) as items:
                async for item in items:
                    yield item
        except StoreUnavailable:
            raise
        except UNAVAILABLE as exc:
            raise unavailable(exc, where) from exc

    return wrapper


translate_redis_errors = _Translate()

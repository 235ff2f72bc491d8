"""What the notifier's loops do when a round fails: wait a little and carry on, so a
Redis outage or one bad record never stops notifications (nor ``serve``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger("service.notify")

OUTAGES = (OSError, RedisConnectionError, RedisTimeoutError)


async def ride_out(where: str, exc: Exception, stop: asyncio.Event, wait_s: float = 1.0) -> None:
    if isinstance(exc, OUTAGES):
        log.warning("%s: redis unavailable (%s)", where, exc)
    else:
        log.error("%s: %s", where, exc, exc_info=exc)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), wait_s)

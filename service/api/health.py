"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service.api.context import CLOCK, KEYS, REDIS, SETTINGS, json_response
from service.api.models import Health
from service.api.routing import Reply, route
from service.store.boundary import translate_redis_errors
from service.store.eventstore import as_text, parse_position

LAG_COUNT_BOUND = 1000
TICKER_BEHIND_S = 1.0  # a partition whose earliest due schedule waits longer is behind


@route(
    "GET",
    "/healthz",
    summary="The process is up",
    tag="health",
    scope=None,
    replies=(Reply(200, "Up", Health),),
)
async def healthz(_request: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


@route(
    "GET",
    "/readyz",
    summary="Redis answers and the views are caught up",
    tag="health",
    scope=None,
    replies=(
        Reply(200, "Ready", Health),
        Reply(503, "Not ready: Redis does not answer, or the views lag", Health),
    ),
    problems=(503,),
)
@translate_redis_errors
async def readyz(request: web.Request) -> web.StreamResponse:
    redis, keys = request.app[REDIS], request.app[KEYS]
    bound_s = request.app[SETTINGS].readiness_lag_s
    try:
        await redis.ping()
    except Exception as exc:  # any failure to answer means not ready
        return json_response(
            {"status": "unavailable", "checks": {"redis": f"unreachable: {exc}"}}, status=503
        )
    checks: dict[str, Any] = {"redis": "ok"}
    ready = True
    now = request.app[CLOCK].now_ms()
    for p in range(keys.partitions):
        raw = await redis.hget(keys.checkpoint(p), "position")
        start = f"({as_text(raw)}" if raw else "-"
        pending: Any = await redis.xrange(keys.log(p), min=start, count=LAG_COUNT_BOUND)
        lag_s = (now - parse_position(as_text(pending[0][0]))[0]) / 1000 if pending else 0.0
        behind = len(pending)
        checks[f"projection.views.{p}"] = {"lag_events": behind, "lag_seconds": max(lag_s, 0.0)}
        if behind and lag_s > bound_s:
            ready = False
        checks[f"ticker.{p}"] = await _ticker_check(redis, keys.due(p), now)
    return json_response(
        {"status": "ok" if ready else "lagging", "checks": checks}, status=200 if ready else 503
    )


async def _ticker_check(redis: Any, due_key: str, now: int) -> dict[str, Any]:
    """How long the partition's earliest due schedule has waited: a ticker that is
    behind (or none running). A detail only: the API serves as well either way."""
    first: Any = await redis.zrange(due_key, 0, 0, withscores=True)
    behind_s = max(0.0, (now - first[0][1]) / 1000) if first else 0.0
    return {"behind_seconds": round(behind_s, 3), "behind": behind_s > TICKER_BEHIND_S}

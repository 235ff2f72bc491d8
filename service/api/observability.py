"""The API's request spans and duration metric, and the Prometheus /metrics endpoint."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from opentelemetry.trace import SpanKind
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from projections.read import ViewReader
from service import telemetry
from service.api.context import KEYS, REDIS
from service.api.routing import Reply, route
from service.domain import namespaces
from service.domain.tokens import Scope
from service.store.boundary import translate_redis_errors
from service.store.eventstore import as_text, parse_position
from service.store.runs import GROUP
from service.worker.breaker import CircuitBreaker

LAG_BOUND = 10_000
BREAKER_LEVEL = {"closed": 0, "half_open": 1, "open": 2}


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Any) -> web.StreamResponse:
    """A server span per request (joining an incoming traceparent) and its duration."""
    started = time.perf_counter()
    route_name = _route_of(request)
    status = 500
    try:
        if telemetry.tracing():
            with telemetry.span(
                f"{request.method} {route_name}",
                kind=SpanKind.SERVER,
                parent=request.headers.get("traceparent"),
                attributes={
                    "http.request.method": request.method,
                    "http.route": route_name,
                    "url.path": request.path,
                    "url.scheme": request.scheme,
                },
            ) as current:
                response: web.StreamResponse = await handler(request)
                status = response.status
                if current is not None:
                    current.set_attribute("http.response.status_code", status)
                return response
        response = await handler(request)
        status = response.status
        return response
    finally:
        telemetry.HTTP_DURATION.labels(request.method, route_name, str(status)).observe(
            time.perf_counter() - started
        )


@route(
    "GET",
    "/metrics",
    summary="Prometheus metrics (text format)",
    tag="health",
    scope=Scope.METRICS_READ,
    replies=(Reply(200, "The metrics", media_type="text/plain"),),
    problems=(503,),
)
async def metrics(request: web.Request) -> web.StreamResponse:
    await refresh_gauges(request.app)
    return web.Response(
        body=generate_latest(telemetry.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


@translate_redis_errors
async def refresh_gauges(app: web.Application) -> None:
    """Gauges read from Redis at scrape time: queues, projections, leases, schedules."""
    redis, keys = app[REDIS], app[KEYS]
    now_s, now_us = await redis.time()
    now = int(now_s) * 1000 + int(now_us) // 1000
    for p in range(keys.partitions):
        label = str(p)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.xlen(keys.queue(p))
            pipe.zcard(keys.dead(p))
            pipe.get(keys.epoch(p))
            pipe.hget(keys.checkpoint(p), "position")
            depth, dead, epoch, checkpoint = await pipe.execute()
        telemetry.QUEUE_DEPTH.labels(label).set(depth)
        telemetry.DEAD_LETTERS.labels(label).set(dead)
        telemetry.LEASE_EPOCH.labels(label).set(int(epoch or 0))
        try:
            pending: Any = await redis.xpending(keys.queue(p), GROUP)
            telemetry.QUEUE_PENDING.labels(label).set(int(pending["pending"]))
        except Exception:  # no consumer group yet
            telemetry.QUEUE_PENDING.labels(label).set(0)
        start = f"({as_text(checkpoint)}" if checkpoint else "-"
        behind: Any = await redis.xrange(keys.log(p), min=start, count=LAG_BOUND)
        telemetry.PROJECTION_LAG.labels("views", label).set(len(behind))
        lag_s = (now - parse_position(as_text(behind[0][0]))[0]) / 1000 if behind else 0.0
        telemetry.PROJECTION_LAG_SECONDS.labels("views", label).set(max(lag_s, 0.0))
    counts = await ViewReader(redis, keys).schedule_counts()
    breakers = await CircuitBreaker(redis, keys).states()
    # a namespace or host gone since the last scrape must not keep its old value
    telemetry.SCHEDULES.clear()
    for (namespace, status), count in counts.items():
        telemetry.SCHEDULES.labels(namespace, status).set(count)
    telemetry.BREAKER_STATE.clear()
    for state in breakers:
        namespace, host = namespaces.split(state["host"])
        level = BREAKER_LEVEL.get(state["state"], 0)
        telemetry.BREAKER_STATE.labels(namespace, host).set(level)

"""The aiohttp application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Middleware
from redis.asyncio import Redis

from projections.projector import Projector
from projections.read import ViewReader

# Importing the endpoint modules registers their routes.
from service.api import (  # noqa: F401
    auth,
    docs,
    events,
    fires,
    forecast,
    health,
    namespaces,
    notifications,
    observability,
    runs,
    schedules,
    secrets,
    spec_words,
    specs,
    stream,
    workflows,
)
from service.api.context import CLOCK, COMMANDS, KEYS, REDIS, SETTINGS, STORE, VIEWS
from service.api.problems import problem_middleware
from service.api.routing import setup_routes
from service.clock import Clock, SystemClock
from service.commands import CommandService, ProjectionWaiter
from service.config import Settings
from service.console import setup_console
from service.store.archive_reader import ArchivedHistory
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.store.namespaces import NamespaceQuotas, TokenNamespaces
from service.store.tokens import TokenStore
from service.tasks import cancel_and_wait


def create_app(
    settings: Settings, redis: Redis, *, clock: Clock | None = None, projector: bool = True
) -> web.Application:
    """The API over ``redis``; with ``projector`` it also runs the projector loops."""
    keys = Keyspace(settings.key_prefix, settings.partitions)
    app = web.Application(
        middlewares=_middlewares(settings), client_max_size=settings.max_body_bytes
    )
    _setup_auth(app, settings, redis, keys, clock)
    # trimmed history comes from the archive each partition's record names, or from
    # CRONSTREAM_ARCHIVE_DIR when set (a copy elsewhere)
    store = EventStore(redis, keys, archive=ArchivedHistory(redis, keys, settings.archive_dir))
    app[SETTINGS] = settings
    app[REDIS] = redis
    app[KEYS] = keys
    app[STORE] = store
    app[VIEWS] = ViewReader(redis, keys)
    app[CLOCK] = clock or SystemClock()
    app[COMMANDS] = CommandService(
        store,
        ProjectionWaiter(redis, keys),
        wait_timeout_s=settings.read_your_writes_timeout_s,
        idempotency_ttl_ms=settings.idempotency_ttl_ms,
        clock=clock,  # None: due times are judged by Redis's clock
        outbound=settings.outbound_policy(),
    )
    app[namespaces.QUOTAS] = NamespaceQuotas(redis, keys)
    app.on_shutdown.append(stream.close_streams)
    if projector:
        app.cleanup_ctx.append(_projectors)
    setup_routes(app)
    setup_console(app, auth=settings.auth, partitions=keys.partitions)
    return app


def metrics_app(settings: Settings, redis: Redis) -> web.Application:
    """/healthz and /metrics only, for processes that run no API (ticker, worker roles)."""
    keys = Keyspace(settings.key_prefix, settings.partitions)
    guarded = settings.auth and settings.metrics_auth
    middlewares: list[Middleware] = [problem_middleware]
    if guarded:
        middlewares.append(auth.authenticate)
    app = web.Application(middlewares=middlewares)
    if guarded:
        _setup_auth(app, settings, redis, keys, None)
    app[SETTINGS] = settings
    app[REDIS] = redis
    app[KEYS] = keys
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/metrics", observability.metrics)
    return app


def _middlewares(settings: Settings) -> list[Middleware]:
    """Problems outside authentication, so a store outage while admitting is a 503 too."""
    chain: list[Middleware] = [observability.observe, problem_middleware]
    # with tokens, the token check settles the namespace too (one layer per request)
    chain.append(auth.authenticate if settings.auth else namespaces.resolve)
    return chain


def _setup_auth(
    app: web.Application, settings: Settings, redis: Redis, keys: Keyspace, clock: Clock | None
) -> None:
    if not settings.auth:
        return
    app[auth.TOKENS] = TokenStore(redis, keys)
    app[namespaces.TOKEN_NAMESPACES] = TokenNamespaces(redis, keys)
    app.on_cleanup.append(_close_tokens)
    if clock is not None:
        app[auth.AUTH_CLOCK] = clock
    app.on_response_prepare.append(auth.rate_headers)


async def _close_tokens(app: web.Application) -> None:
    await app[auth.TOKENS].aclose()


async def _projectors(app: web.Application) -> AsyncIterator[None]:
    projector = Projector(app[REDIS], app[KEYS], on_applied=app[COMMANDS].waiter.applied)
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(projector.run(p, stop), name=f"projector-{p}")
        for p in range(app[KEYS].partitions)
    ]
    yield
    stop.set()
    await cancel_and_wait(tasks)

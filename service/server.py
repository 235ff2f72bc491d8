"""``cronstream serve``: connect to Redis (or start the embedded one) and run the roles."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal

from aiohttp import web
from redis.asyncio import Redis

from migrations.keyspace import check_keyspace
from projections.shared import SharedProjector
from service import telemetry
from service.api.app import create_app, metrics_app
from service.commands import CommandService, ProjectionWaiter
from service.config import INSECURE_HOST, Settings, is_loopback
from service.connection import RedisConnection, redis_for
from service.domain.tokens import MalformedToken, Scope, check_token
from service.notify.notifier import Notifier
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.store.tokens import NewToken, TokenStore, new_token
from service.tasks import cancel_and_wait
from service.ticker.ticker import Ticker
from service.worker.worker import Worker

log = logging.getLogger(__name__)

MAKE_ONE = "make one with `cronstream token generate`"
BOOTSTRAP_BANNER = """\
cronstream: no API token existed, so this admin token was made. It is shown this once:
store it now (only its hash is kept).

    {token}

cronstream: send it as `Authorization: Bearer <token>`, or `export CRONSTREAM_TOKEN=<token>`
for the CLI; `cronstream token create` makes tokens with fewer scopes."""


GC_THRESHOLDS = (50_000, 20, 20)
"""The cyclic collector's thresholds in a ``serve`` process. Python's defaults (700, 10,
10) suit short scripts; a ticker holds the configs of every schedule of its partitions
and makes thousands of short-lived requests a second, so young collections ran every
few fires and older ones walked the whole cache: about 8 us of CPU a fire, measured
in process on a herd of 30,000 schedules. Objects without cycles are freed at once by
reference counting whatever the thresholds; these only bound how much cyclic garbage
waits (a few MB)."""


def tune_gc() -> None:
    """For a long-running process: move what start-up made (modules, settings) out of the
    collector's walks for good, and collect less often (``GC_THRESHOLDS``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or ``stop``); shut down cleanly."""
    stop = stop or asyncio.Event()
    telemetry.setup_tracing()
    try:
        await _serve(settings, stop)
    finally:
        telemetry.shutdown_tracing()


async def _serve(settings: Settings, stop: asyncio.Event) -> None:
    refuse_open_exposure(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with redis_for(settings, adopt=True) as conn:
        log.info("%s", conn.features.describe())
        keys = Keyspace(settings.key_prefix, settings.partitions)
        await check_keyspace(conn.client, keys)
        if "api" in settings.roles:
            await _bootstrap_tokens(settings, conn.client, keys)
        async with contextlib.AsyncExitStack() as stack:
            await _start_http(settings, conn, stack)
            _start_loops(settings, conn.client, keys, stop, stack)
            _start_config_watcher(settings, conn.client, keys, stop, stack)
            await stop.wait()
            log.info("shutting down")


async def _start_http(
    settings: Settings, conn: RedisConnection, stack: contextlib.AsyncExitStack
) -> None:
    """The API (with the projector when both roles are here), or /metrics alone."""
    if "api" in settings.roles:
        app = create_app(settings, conn.client, projector="projector" in settings.roles)
    elif settings.metrics_port_given:
        # a process without the API answers /healthz and /metrics on --port
        app = metrics_app(settings, conn.client)
    else:
        return
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, settings.host, settings.port).start()
    if "api" in settings.roles:
        log.info("serving on http://%s:%d (redis %s)", settings.host, settings.port, conn.url)
        print(f"cronstream: serving on http://{settings.host}:{settings.port}", flush=True)


def refuse_open_exposure(settings: Settings) -> None:
    """An API without tokens listens on loopback only (ValueError otherwise), and says so."""
    if settings.auth:
        return
    if not is_loopback(settings.host):
        raise ValueError(INSECURE_HOST.format(host=settings.host))
    log.warning(
        "insecure dev mode: the API asks for no token and limits no rate; "
        "listening on %s only. Never expose it.",
        settings.host,
    )


async def _bootstrap_tokens(settings: Settings, redis: Redis, keys: Keyspace) -> None:
    """An admin token to start with: CRONSTREAM_ADMIN_TOKEN's (its hash is stored on the
    first start), else, while no token exists, a new one printed once on stdout."""
    if not settings.auth:
        return
    tokens = TokenStore(redis, keys)
    admin = frozenset({Scope.ADMIN})
    if settings.admin_token is not None:
        try:
            token = check_token(settings.admin_token)
        except MalformedToken as exc:
            raise ValueError(f"CRONSTREAM_ADMIN_TOKEN: {exc} ({MAKE_ONE})") from None
        spec = NewToken("CRONSTREAM_ADMIN_TOKEN", admin, settings.rate_limit)
        stored = await tokens.create(token, spec)
        if stored is not None and stored.revoked_ms is not None:
            log.warning(
                "CRONSTREAM_ADMIN_TOKEN (token %s) was revoked: it stays refused", stored.id
            )
        elif stored is not None and stored.new:
            log.info("stored the hash of CRONSTREAM_ADMIN_TOKEN as admin token %s", stored.id)
        return
    token = new_token()
    created = await tokens.create(
        token, NewToken("bootstrap admin", admin, settings.rate_limit), first=True
    )
    if created is None:
        log.info("API requests need a token: `cronstream token create` makes more")
        return
    print(BOOTSTRAP_BANNER.format(token=token), flush=True)
    log.warning("created admin token %s and printed it once on stdout: store it now", created.id)


def _start_loops(
    settings: Settings,
    redis: Redis,
    keys: Keyspace,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
) -> None:
    """The projector (when the API does not run it), ticker and worker loops of this process."""
    if "projector" in settings.roles and "api" not in settings.roles:
        # projector processes divide the partitions (projections/shared.py); an API's
        # own projector follows them all, for the views its writes wait for
        shared = SharedProjector(redis, keys, settings.lease_ttl_ms)
        task = asyncio.create_task(shared.run(stop), name="projector")
        stack.push_async_callback(_cancel_all, [task])
    if "ticker" in settings.roles:
        ticker = Ticker(redis, keys, lease_ttl_ms=settings.lease_ttl_ms)
        task = asyncio.create_task(ticker.run(stop), name="ticker")
        stack.push_async_callback(_cancel_all, [task])
        log.info("ticker %s competing for %d partition(s)", ticker.owner, keys.partitions)
    if "worker" in settings.roles:
        commands = CommandService(
            EventStore(redis, keys), ProjectionWaiter(redis, keys), wait_timeout_s=0
        )
        worker = Worker(
            redis,
            keys,
            commands,
            concurrency=settings.worker_concurrency,
            idle_bound_ms=settings.reclaim_idle_ms,
            outbound=settings.outbound_policy(),
        )
        task = asyncio.create_task(worker.run(stop), name="worker")
        stack.push_async_callback(_cancel_all, [task])
        log.info("worker %s consuming %d partition(s)", worker.consumer, keys.partitions)
        _start_notifier(settings, redis, keys, stop, stack)


def _start_notifier(
    settings: Settings,
    redis: Redis,
    keys: Keyspace,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
) -> None:
    """Workers also tell the notification rules' channels (service/notify)."""
    notifier = Notifier(
        redis, keys, outbound=settings.outbound_policy(), secret_key=settings.secret_key
    )
    task = asyncio.create_task(notifier.run(stop), name="notifier")
    stack.push_async_callback(_cancel_all, [task])


def _start_config_watcher(
    settings: Settings,
    redis: Redis,
    keys: Keyspace,
    stop: asyncio.Event,
    stack: contextlib.AsyncExitStack,
) -> None:
    """``--config-dir``: apply the directory now and after each change of it."""
    if settings.config_dir is None:
        return
    from service.manifests.plan import Options
    from service.manifests.watch import ConfigWatcher, WatchSettings

    options = Options(
        settings.config_prune, settings.config_keep_overrides, settings.outbound_policy()
    )
    watch = WatchSettings(settings.config_dir, options, settings.config_interval_s)
    watcher = ConfigWatcher(EventStore(redis, keys), watch)
    stack.push_async_callback(_cancel_all, [asyncio.create_task(watcher.run(stop))])
    log.info("applying %s at start and after each change", settings.config_dir)


async def _cancel_all(tasks: list[asyncio.Task[None]], grace_s: float = 15.0) -> None:
    """Give the role loops (which watch ``stop``) a bounded time to finish, then cancel."""
    if tasks:
        await asyncio.wait(tasks, timeout=grace_s)
    await cancel_and_wait(tasks)

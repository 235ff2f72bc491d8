"""Workers: execute queued runs through a consumer group, with retries and reclaiming.

Per partition a worker process reads the run queue with XREADGROUP (at most
``concurrency`` runs in flight per process), starts each attempt through the run
script (which hands out an attempt token), calls the workflow's target, and
finishes the attempt with that token: the result, the ack and the release of the
schedule's next held run are one step, and a worker whose run was reclaimed
meanwhile is refused. A maintenance loop heartbeats in-flight entries (so only a
dead or stopped worker's entries go idle), reclaims idle entries (XAUTOCLAIM),
moves due retries back to the queue and passes cancellation requests on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import yarl
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service import telemetry
from service.clock import Clock
from service.commands import SCHEDULES, WORKFLOWS, CommandService, RequestContext
from service.domain import schedule as sched
from service.domain.retry import retry_delay_ms, should_retry
from service.domain.timeutil import to_rfc3339
from service.domain.workflow import HttpTarget as HttpTargetConfig
from service.domain.workflow import PythonTarget as PythonTargetConfig
from service.domain.workflow import WorkflowConfig
from service.store.eventstore import as_text
from service.store.keys import Keyspace
from service.store.runs import GROUP, MAX_DELIVERIES, RunStore, StartedAttempt
from service.worker.breaker import CircuitBreaker, breaker_host
from service.worker.targets.base import AttemptResult, RunContext, Target
from service.worker.targets.http import HttpTarget, make_session
from service.worker.targets.python import PythonTarget

log = logging.getLogger(__name__)

READ_BLOCK_MS = 1000
RECLAIM_COUNT = 50
RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0)
WORKFLOW_CACHE_S = 2.0
WORKFLOW_CACHE_SIZE = 10_000


@dataclass
class InFlight:
    partition: int
    entry_id: str
    ctx: RunContext
    task: asyncio.Task[AttemptResult] | None = None
    terminated: bool = False


@dataclass
class WorkerStats:
    started: int = 0
    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    refused: int = 0
    reclaimed: int = 0
    # the most recent samples only: a worker runs for months
    start_latency_ms: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))


class Worker:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        commands: CommandService,
        *,
        concurrency: int = 16,
        idle_bound_ms: int = 30_000,
        max_deliveries: int = MAX_DELIVERIES,
        clock: Clock | None = None,
        consumer: str | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.commands = commands
        self.concurrency = concurrency
        self.idle_bound_ms = idle_bound_ms
        self.max_deliveries = max_deliveries
        self.clock = clock
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.runs = RunStore(redis, keys)
        self.breaker = breaker or CircuitBreaker(redis, keys, clock=clock)
        self.stats = WorkerStats()
        self.inflight: dict[str, InFlight] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._workflows: dict[str, tuple[float, WorkflowConfig | None]] = {}
        self._session: aiohttp.ClientSession | None = None

    def now_ms(self) -> int:
        return self.clock.now_ms() if self.clock is not None else time.time_ns() // 1_000_000

    # -- lifecycle --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume every partition's queue until ``stop``; then finish what is in flight."""
        self._session = make_session(limit=max(self.concurrency, 10))
        loops = []
        for p in range(self.keys.partitions):
            await self.ensure_group(p)
            loops.append(asyncio.create_task(self._consume(p, stop), name=f"worker-{p}"))
            loops.append(asyncio.create_task(self._maintain(p, stop), name=f"worker-maint-{p}"))
        try:
            await stop.wait()
        finally:
            for task in loops:
                task.cancel()
            for task in loops:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.drain()
            await self._session.close()

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) for runs in flight; what does not finish is reclaimed elsewhere."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in list(self._tasks):
            task.cancel()

    async def ensure_group(self, partition: int) -> None:
        try:
            await self.redis.xgroup_create(self.keys.queue(partition), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # -- consuming -----------------------------------------------------------------------

    async def _consume(self, partition: int, stop: asyncio.Event) -> None:
        failures = 0
        queue = self.keys.queue(partition)
        while not stop.is_set():
            try:
                await self._slots.acquire()
                self._slots.release()
                free = max(1, self._free())
                reply: Any = await self.redis.xreadgroup(
                    GROUP, self.consumer, {queue: ">"}, count=free, block=READ_BLOCK_MS
                )
                failures = 0
                for _stream, entries in reply or []:
                    for entry_id, fields in entries:
                        self.spawn(partition, as_text(entry_id), fields)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                failures += 1
                log.warning(
                    "worker partition %d: redis unavailable (%s)",
                    partition,
                    exc,
                    extra={"partition": partition},
                )
                await asyncio.sleep(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S)) - 1])
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # the queue was deleted (a flush); make it again
                    await self.ensure_group(partition)
                else:
                    raise

    def _free(self) -> int:
        return self.concurrency - len(self._tasks)

    def spawn(self, partition: int, entry_id: str, fields: dict[Any, Any]) -> None:
        run_id = as_text(fields.get(b"run_id", fields.get("run_id", "")))
        sid = as_text(fields.get(b"sid", fields.get("sid", "")))
        kind = as_text(fields.get(b"kind", fields.get("kind", b"schedule")))
        task = asyncio.create_task(self._handle(partition, entry_id, run_id, sid, kind))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, p: int, entry_id: str, run_id: str, sid: str, kind: str) -> None:
        async with self._slots:
            try:
                await self._execute(p, entry_id, run_id, sid, kind)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                # the entry stays pending: it is reclaimed once idle, nothing is lost
                log.warning(
                    "run %s: redis unavailable (%s); left for reclaiming",
                    run_id,
                    exc,
                    extra={"run_id": run_id, "schedule_id": sid if kind == "schedule" else None},
                )
            except Exception:
                log.exception(
                    "run %s: unexpected error; left for reclaiming",
                    run_id,
                    extra={"run_id": run_id, "schedule_id": sid if kind == "schedule" else None},
                )

    async def _execute(self, p: int, entry_id: str, run_id: str, sid: str, kind: str) -> None:
        now = self.now_ms()
        status, started = await self.runs.start(
            p,
            sid,
            kind,
            run_id,
            entry_id,
            self.consumer,
            now,
            to_rfc3339(now),
            self.max_deliveries,
        )
        if status != "OK" or started is None:
            return
        self.stats.started += 1
        queued_ms = int(entry_id.split("-")[0])
        self.stats.start_latency_ms.append(max(0, now - queued_ms))
        workflow = await self._workflow(started.workflow_id)
        ctx = RunContext(
            run_id=run_id,
            schedule_id=sid if kind == "schedule" else None,
            workflow_id=started.workflow_id,
            trigger=str(started.trigger.get("type", "schedule")),
            nominal_time=started.nominal_time,
            attempt=started.attempt,
            input=started.input,
            timeout_s=(workflow.timeout if workflow else 300_000) / 1000,
        )
        flight = InFlight(p, entry_id, ctx)
        self.inflight[run_id] = flight
        began = time.perf_counter()
        try:
            with telemetry.span(
                "run.attempt",
                kind=SpanKind.CONSUMER,
                parent=started.traceparent,
                attributes={
                    "cronstream.run_id": run_id,
                    "cronstream.schedule_id": ctx.schedule_id,
                    "cronstream.nominal_time": ctx.nominal_time,
                    "cronstream.attempt": ctx.attempt,
                    "cronstream.trigger": ctx.trigger,
                    "messaging.system": "redis",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": self.keys.queue(p),
                    "messaging.message.id": entry_id,
                },
            ) as attempt_span:
                ctx.traceparent = telemetry.current_traceparent()
                result = await self._attempt(flight, workflow)
                if attempt_span is not None:
                    attempt_span.set_attribute("cronstream.outcome", "ok" if result.ok else "error")
                    if result.error:
                        attempt_span.set_attribute("error.type", result.error[:100])
        finally:
            self.inflight.pop(run_id, None)
        telemetry.RUN_DURATION.observe(time.perf_counter() - began)
        await self._finish(p, sid, kind, entry_id, started, ctx, workflow, result, flight)

    async def _attempt(self, flight: InFlight, workflow: WorkflowConfig | None) -> AttemptResult:
        if workflow is None:
            return AttemptResult.failure(
                f"workflow {flight.ctx.workflow_id!r} does not exist", retryable=False
            )
        target, host = self._target(workflow)
        if host is not None and not await self.breaker.allow(host):
            return AttemptResult.failure(f"circuit open for {host}", retryable=True)
        if telemetry.tracing() and isinstance(workflow.target, HttpTargetConfig):
            return await self._traced_http(flight, target, workflow.target, host)
        flight.task = asyncio.create_task(target.attempt(flight.ctx))
        try:
            result = await flight.task
        except asyncio.CancelledError:
            if not flight.terminated:
                raise
            result = AttemptResult.failure("terminated", retryable=False)
        if host is not None and result.error not in ("cancelled", "terminated"):
            await self.breaker.record(host, result.ok)
        return result

    async def _traced_http(
        self, flight: InFlight, target: Target, config: HttpTargetConfig, host: str | None
    ) -> AttemptResult:
        """The outbound request as a client span; the target sends its traceparent."""
        parsed = yarl.URL(config.url)
        with telemetry.span(
            config.method,
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": config.method,
                "url.full": config.url,
                "server.address": parsed.host,
                "server.port": parsed.port,
            },
        ) as client_span:
            flight.ctx.traceparent = telemetry.current_traceparent()
            flight.task = asyncio.create_task(target.attempt(flight.ctx))
            try:
                result = await flight.task
            except asyncio.CancelledError:
                if not flight.terminated:
                    raise
                result = AttemptResult.failure("terminated", retryable=False)
            if client_span is not None and result.status is not None:
                client_span.set_attribute("http.response.status_code", result.status)
        if host is not None and result.error not in ("cancelled", "terminated"):
            await self.breaker.record(host, result.ok)
        return result

    def _target(self, workflow: WorkflowConfig) -> tuple[Target, str | None]:
        config = workflow.target
        if isinstance(config, HttpTargetConfig):
            assert self._session is not None
            secret = os.environ.get(config.secret_env) if config.secret_env else None
            return HttpTarget(config, self._session, secret), breaker_host(config.url)
        if isinstance(config, PythonTargetConfig):
            return PythonTarget(config.handler), None
        return _Nothing(), None

    async def _finish(
        self,
        p: int,
        sid: str,
        kind: str,
        entry_id: str,
        started: StartedAttempt,
        ctx: RunContext,
        workflow: WorkflowConfig | None,
        result: AttemptResult,
        flight: InFlight,
    ) -> None:
        now = self.now_ms()
        attempt = {
            "run_id": ctx.run_id,
            "attempt": started.attempt,
            "error": result.error,
            "status": result.status,
            "body_excerpt": result.body_excerpt,
            "finished_at": to_rfc3339(now),
        }
        meta = {"actor": f"worker:{self.consumer}"}
        retry_at = 0
        # a handler that returns once asked to cancel has cancelled; a webhook that answered
        # 2xx did its work whatever was asked meanwhile
        cooperative = workflow is not None and isinstance(workflow.target, PythonTargetConfig)
        asked = ctx.cancelled.is_set() and (cooperative or not result.ok)
        if result.ok and not asked:
            outcome, attempt_data, final = "succeeded", None, attempt
        elif asked or result.error in ("cancelled", "terminated"):
            outcome, attempt_data = "cancelled", None
            final = {"run_id": ctx.run_id, "reason": result.error or "cancelled"}
        elif workflow is not None and should_retry(workflow.retry, started.attempt, result):
            delay = retry_delay_ms(
                workflow.retry, started.attempt, random.random(), result.retry_after_s
            )
            retry_at = now + delay
            outcome, attempt_data, final = (
                "retry",
                {**attempt, "retry_at": to_rfc3339(retry_at)},
                {},
            )
        else:
            timed_out = bool(result.error and "timed out" in result.error)
            outcome = "timedout" if timed_out else "failed"
            attempt_data, final = attempt, attempt
        status, _ = await self.runs.finish(
            p,
            sid,
            kind,
            ctx.run_id,
            outcome=outcome,
            meta=meta,
            now_ms=now,
            token=started.token,
            entry_id=entry_id,
            attempt_data=attempt_data,
            final_data=final,
            retry_at_ms=retry_at,
        )
        telemetry.ATTEMPTS.labels("succeeded" if result.ok else "failed").inc()
        if outcome == "retry" and status == "OK":
            telemetry.RETRIES.inc()
        elif status == "OK":
            telemetry.RUNS.labels(outcome, ctx.trigger).inc()
        if status == "STALE":
            self.stats.refused += 1
            log.warning(
                "run %s: completion refused (reclaimed by another worker)",
                ctx.run_id,
                extra={"run_id": ctx.run_id, "schedule_id": ctx.schedule_id},
            )
            return
        if outcome == "succeeded":
            self.stats.succeeded += 1
        elif outcome == "retry":
            self.stats.retried += 1
        elif outcome in ("failed", "timedout"):
            self.stats.failed += 1
            await self._pause_on_failure(sid, kind, ctx)

    async def _pause_on_failure(self, sid: str, kind: str, ctx: RunContext) -> None:
        if kind != "schedule" or ctx.trigger != "schedule":
            return
        state, _ = await self.commands.load(SCHEDULES, sid)
        if state is None or state.deleted or not state.config.policy.pause_on_failure:
            return
        note = f"paused after run {ctx.run_id} failed"
        await self.commands.execute(
            SCHEDULES,
            sid,
            sched.PauseSchedule(sid, note, run_id=ctx.run_id),
            RequestContext(actor=f"worker:{self.consumer}"),
        )

    async def _workflow(self, workflow_id: str) -> WorkflowConfig | None:
        if len(self._workflows) > WORKFLOW_CACHE_SIZE:
            self._workflows.clear()
        cached = self._workflows.get(workflow_id)
        if cached is not None and time.monotonic() - cached[0] < WORKFLOW_CACHE_S:
            return cached[1]
        state, _ = await self.commands.load(WORKFLOWS, workflow_id)
        config = None if state is None or state.deleted else state.config
        self._workflows[workflow_id] = (time.monotonic(), config)
        return config

    # -- maintenance ---------------------------------------------------------------------

    async def _maintain(self, partition: int, stop: asyncio.Event) -> None:
        interval_s = min(self.idle_bound_ms / 3000, 0.25)
        failures = 0
        while not stop.is_set():
            try:
                await self.maintain(partition)
                failures = 0
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                failures += 1
                log.warning("worker maintenance %d: redis unavailable (%s)", partition, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval_s * (1 + failures))

    async def maintain(self, partition: int) -> None:
        """One round: heartbeat, pass on cancellations, requeue due retries, reclaim."""
        mine = [f for f in self.inflight.values() if f.partition == partition]
        queue = self.keys.queue(partition)
        if mine:
            await self.redis.xclaim(
                queue, GROUP, self.consumer, 0, [f.entry_id for f in mine], justid=True
            )
            async with self.redis.pipeline(transaction=False) as pipe:
                for flight in mine:
                    pipe.hget(self.keys.run(partition, flight.ctx.run_id), "cancel")
                flags: list[Any] = await pipe.execute()
            for flight, flag in zip(mine, flags, strict=True):
                if flag is None:
                    continue
                flight.ctx.cancelled.set()
                if as_text(flag) == "terminate" and flight.task and not flight.task.done():
                    flight.terminated = True
                    flight.task.cancel()
        await self.runs.requeue_due(partition, self.now_ms())
        free = self._free()
        if free <= 0:
            return
        reply: Any = await self.redis.xautoclaim(
            queue, GROUP, self.consumer, self.idle_bound_ms, "0-0", count=min(free, RECLAIM_COUNT)
        )
        for entry_id, fields in reply[1]:
            if fields is None:
                continue
            self.stats.reclaimed += 1
            self.spawn(partition, as_text(entry_id), fields)


class _Nothing:
    """Target ``none``: the fire was the action (runs of these normally never reach a worker)."""

    async def attempt(self, ctx: RunContext) -> AttemptResult:
        return AttemptResult.success()

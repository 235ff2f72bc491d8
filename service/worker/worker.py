"""Workers: execute queued runs through a consumer group, with retries and reclaiming.

A worker process holds at most ``concurrency`` queue entries at once (``Slots``).
Per partition, a consumer loop (``consumer.py``) fills free slots with entries that
went stale on a lost worker first, then with new ones; a maintenance loop
(``maintenance.py``) heartbeats entries in flight, passes cancel requests on and
moves due retries back to the queue. For each entry the worker starts the attempt
through the run script (which hands out an attempt token), calls the workflow's
target (``attempt.py``) and records the domain's verdict with that token
(``outcome.py``): the result, the ack and the release of the schedule's next held
run are one step, and a worker whose run was reclaimed meanwhile is refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time

from aiohttp.abc import AbstractResolver
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service import telemetry
from service.clock import Clock
from service.commands import WORKFLOWS, CommandService
from service.domain.addresses import OutboundPolicy
from service.domain.timeutil import to_rfc3339
from service.domain.workflow import WorkflowConfig
from service.store.keys import Keyspace
from service.store.runs import MAX_DELIVERIES, RunStore, StartedAttempt
from service.store.secrets import SigningSecrets as StoredSecrets
from service.tasks import cancel_and_wait
from service.worker.attempt import Attempts
from service.worker.breaker import CircuitBreaker
from service.worker.consumer import Consumer
from service.worker.maintenance import Maintenance
from service.worker.outcome import Outcomes, activity
from service.worker.slots import Slots
from service.worker.state import InFlight, QueueEntry, WorkerStats
from service.worker.targets.base import RunContext

log = logging.getLogger(__name__)

WORKFLOW_CACHE_S = 2.0
WORKFLOW_CACHE_SIZE = 10_000
DEFAULT_TIMEOUT_MS = 300_000
CANCEL_GRACE_S = 5.0


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
        drain_timeout_s: float = 10.0,
        outbound: OutboundPolicy | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.commands = commands
        self.concurrency = concurrency
        self.idle_bound_ms = idle_bound_ms
        self.max_deliveries = max_deliveries
        self.clock = clock
        self.drain_timeout_s = drain_timeout_s
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.actor = f"worker:{self.consumer}"  # who the run events say did it
        self.runs = RunStore(redis, keys)
        self.breaker = breaker or CircuitBreaker(redis, keys, clock=clock)
        self.stats = WorkerStats()
        self.inflight: dict[str, InFlight] = {}
        self.slots = Slots(concurrency)
        self.maintenance = Maintenance(
            redis,
            keys,
            self.runs,
            consumer=self.consumer,
            idle_bound_ms=idle_bound_ms,
            inflight=self.inflight,
            stats=self.stats,
            now_ms=self.now_ms,
        )
        self.consumer_loop = Consumer(
            redis, keys, self.consumer, self.slots, self.maintenance, self.handle
        )
        self.attempts = Attempts(keys, self.breaker, outbound, resolver, StoredSecrets(redis, keys))
        self.outcomes = Outcomes(
            self.runs, commands, actor=self.actor, stats=self.stats, now_ms=self.now_ms
        )
        self._workflows: dict[str, tuple[float, WorkflowConfig | None]] = {}

    def now_ms(self) -> int:
        return self.clock.now_ms() if self.clock is not None else time.time_ns() // 1_000_000

    # -- lifecycle --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume every partition's queue until ``stop``; then finish what is in flight."""
        session = self.attempts.open(limit=max(self.concurrency, 10))
        loops = []
        try:
            for p in range(self.keys.partitions):
                await self.ensure_group(p)
                loops.append(
                    asyncio.create_task(self.consumer_loop.loop(p, stop), name=f"worker-{p}")
                )
                loops.append(
                    asyncio.create_task(self.maintenance.loop(p, stop), name=f"worker-maint-{p}")
                )
            await stop.wait()
        finally:
            await cancel_and_wait(loops)
            await self.drain(self.drain_timeout_s)
            await session.close()

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait (bounded) for runs in flight, then cancel the rest and wait (bounded) for
        them to unwind; their entries stay pending and are reclaimed elsewhere."""
        if not self.slots.tasks:
            return
        _, pending = await asyncio.wait(set(self.slots.tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            _, stuck = await asyncio.wait(pending, timeout=CANCEL_GRACE_S)
            if stuck:
                log.warning("%d run(s) did not stop when cancelled", len(stuck))

    async def ensure_group(self, partition: int) -> None:
        await self.consumer_loop.ensure_group(partition)

    async def maintain(self, partition: int) -> None:
        """One maintenance round: heartbeat, pass on cancellations, requeue due retries."""
        await self.maintenance.tick(partition)

    # -- one queue entry ----------------------------------------------------------------

    async def handle(self, entry: QueueEntry) -> None:
        """Start, attempt and finish one entry's run; a failure leaves it for reclaiming."""
        extra = {"run_id": entry.run_id, "schedule_id": entry.schedule_id}
        try:
            await self._execute(entry)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            # the entry stays pending: it is reclaimed once idle, nothing is lost
            log.warning(
                "run %s: redis unavailable (%s); left for reclaiming",
                entry.run_id,
                exc,
                extra=extra,
            )
        except Exception:
            log.exception(
                "run %s: unexpected error; left for reclaiming", entry.run_id, extra=extra
            )

    async def _execute(self, entry: QueueEntry) -> None:
        now = self.now_ms()
        status, started = await self.runs.start(
            entry.partition,
            entry.sid,
            entry.kind,
            entry.run_id,
            entry.entry_id,
            self.actor,
            now,
            to_rfc3339(now),
            self.max_deliveries,
        )
        if status == "DEAD":
            activity.warning(
                "run.deadlettered",
                "run %s dead-lettered: delivered %d times without a result",
                entry.run_id,
                self.max_deliveries,
                run_id=entry.run_id,
            )
        if status != "OK" or started is None:
            return
        self.stats.started += 1
        self.stats.start_latency_ms.append(max(0, now - entry.queued_ms))
        workflow = await self._workflow(started.workflow_id)
        ctx = _context(entry, started, workflow)
        self.inflight[entry.run_id] = flight = InFlight(entry.partition, entry.entry_id, ctx)
        began = time.perf_counter()
        try:
            result = await self.attempts.run(flight, workflow, started.traceparent)
        finally:
            self.inflight.pop(entry.run_id, None)
        telemetry.RUN_DURATION.observe(time.perf_counter() - began)
        await self.outcomes.record(entry, started, ctx, workflow, result)

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


def _context(
    entry: QueueEntry, started: StartedAttempt, workflow: WorkflowConfig | None
) -> RunContext:
    return RunContext(
        run_id=entry.run_id,
        schedule_id=entry.schedule_id,
        workflow_id=started.workflow_id,
        trigger=str(started.trigger.get("type", "schedule")),
        nominal_time=started.nominal_time,
        attempt=started.attempt,
        input=started.input,
        timeout_s=(workflow.timeout if workflow else DEFAULT_TIMEOUT_MS) / 1000,
    )

"""The ticker: holds a partition's lease and turns due schedules into fires.

Each partition loop sleeps until the earliest due time (or until the append script
announces a schedule due now), then ticks: it reads a batch of due schedules, asks
the fire plan (service/domain/fire) for each schedule's request, and runs them in one
pipeline of fire scripts, which enforce them atomically. It decides nothing itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar

from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service import telemetry
from service.activity import ActivityLog
from service.clock import Clock
from service.domain import namespaces
from service.domain.fire import Fence, FireRequest, scheduled_request
from service.domain.timeutil import to_rfc3339
from service.store.eventstore import as_text
from service.store.fires import FireReply, FireScript
from service.store.keys import Keyspace
from service.ticker.due import DueBatch, DueReader
from service.ticker.lease import DEFAULT_TTL_MS, Lease
from service.ticker.membership import (
    FairShare,
    Membership,
    hold_until_stopped,
    retry_delay,
)

log = logging.getLogger(__name__)
activity = ActivityLog(logging.getLogger("cronstream.fires"))
lag = ActivityLog(logging.getLogger("cronstream.ticker"))

BATCH_SIZE = 500
BEHIND_LOG_MS = 1000  # a tick this far behind says so in the log
MAX_SLEEP_S = 1.0
STATS_SAMPLES = 10_000
UNKNOWN_TARGET = "http"  # a workflow not found: its runs are queued, and fail in the worker

# a counter child per (outcome, namespace), bound once: counting stays a dict lookup
_FIRES: dict[tuple[str, str], Any] = {}


def _fires(outcome: str, schedule_id: str) -> Any:
    key = (outcome, namespaces.namespace_of(schedule_id))
    child = _FIRES.get(key)
    if child is None:
        child = _FIRES[key] = telemetry.FIRES.labels(*key)
    return child


@dataclass
class TickStats:
    """What a ticker did, for tests, metrics and benchmarks."""

    fired: int = 0
    skipped: int = 0
    dropped: int = 0
    fenced: int = 0
    stale: int = 0
    ticks: int = 0
    behind_ms: dict[int, int] = field(default_factory=dict)  # per partition, at its last tick
    # the most recent lateness samples only: a ticker runs for months
    lateness_ms: deque[float] = field(default_factory=lambda: deque(maxlen=STATS_SAMPLES))


@dataclass
class TickSummary:
    """What one tick decided, for the log: counts, and a few schedules of each outcome."""

    EXAMPLES: ClassVar[int] = 3
    counts: dict[str, int] = field(default_factory=dict)
    schedules: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, request: FireRequest, reply: FireReply) -> None:
        missed = request.missed.count if request.missed is not None else 0
        for outcome, count in (
            ("fired", reply.fired),
            ("skipped", reply.skipped),
            ("dropped", reply.dropped),
            ("missed", missed),
        ):
            if count:
                self.counts[outcome] = self.counts.get(outcome, 0) + count
                self.schedules[outcome] = self.schedules.get(outcome, 0) + 1
                some = self.examples.setdefault(outcome, [])
                if len(some) < self.EXAMPLES:
                    some.append(request.schedule_id)

    def line(self) -> str:
        parts = []
        for outcome, count in self.counts.items():
            names = self.examples[outcome]
            more = ", …" if self.schedules[outcome] > len(names) else ""
            parts.append(f"{outcome} {count} ({', '.join(names)}{more})")
        return ", ".join(parts)


class Ticker:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        *,
        clock: Clock | None = None,
        lease_ttl_ms: int = DEFAULT_TTL_MS,
        batch_size: int = BATCH_SIZE,
        owner: str | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.clock = clock
        owner = owner or Lease.new_owner()
        self.leases = [Lease(redis, keys, p, lease_ttl_ms, owner) for p in range(keys.partitions)]
        self.membership = Membership(redis, keys, owner, lease_ttl_ms)
        self.share = FairShare(self.membership, self.leases, "ticker")
        self.script = FireScript(redis, keys)
        self.due = DueReader(redis, keys, clock, batch_size)
        self.stats = TickStats()
        self._wake = [asyncio.Event() for _ in range(keys.partitions)]

    @property
    def owner(self) -> str:
        return self.leases[0].owner

    async def now_ms(self) -> int:
        """One clock for due-ness: the injected one, else Redis's."""
        if self.clock is not None:
            return self.clock.now_ms()
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def tick(self, partition: int) -> int:
        """Fire what is due now on a partition whose lease we hold; return how many
        schedules were looked at (a full batch means: tick again at once)."""
        looked, _, _ = await self._tick(partition)
        return looked

    async def _tick(self, partition: int) -> tuple[int, int | None, int]:
        """One tick: (schedules looked at, earliest due ms before it, now). While one
        batch is fired, the batch before it is counted, the next (strictly after it in
        the due index, read before) is planned, and the one after that is read; the tick
        ends at a short batch, once a batch was fenced, or when the lease wants renewing."""
        batch = await self.due.read(partition)
        self._behind(partition, batch)
        earliest, now, looked = batch.earliest, batch.now, 0
        if not batch.schedules:
            return looked, earliest, now
        current: tuple[DueBatch, list[FireRequest]] | None = (
            batch,
            await self._requests(partition, batch),
        )
        ahead = await self._read_next(partition, batch)
        settle: Callable[[], bool] | None = None  # counts the batch fired before
        while current is not None:
            batch, requests = current
            self.stats.ticks += 1
            looked += len(batch.schedules)
            current, ahead, replies, fenced = await self._fire_and_plan(
                partition, batch, requests, ahead, settle
            )
            # after a fenced batch, the one fired meanwhile was fenced too: nothing to count
            at = batch.now
            settle = None if fenced else partial(self._settle, partition, requests, replies, at)
        if settle is not None:
            settle()
        return looked, earliest, now

    async def _fire_and_plan(
        self,
        partition: int,
        batch: DueBatch,
        requests: list[FireRequest],
        ahead: DueBatch | None,
        settle: Callable[[], bool] | None,
    ) -> tuple[tuple[DueBatch, list[FireRequest]] | None, DueBatch | None, list[FireReply], bool]:
        """Fire a batch and read the one after ``ahead`` (the next, read before); while
        Redis runs them, count the batch before and plan ``ahead`` (none once the one
        before was fenced: True). A read waits in Redis behind the fire sent with it,
        which costs nothing: it is wanted only once the next batch is fired."""
        firing = asyncio.ensure_future(self._run(requests))
        reading = asyncio.ensure_future(self._read_next(partition, ahead))
        try:
            await asyncio.sleep(0)  # both are sent before the CPU turns to the rest
            fenced = settle is not None and settle()
            planned = None
            if ahead is not None and not fenced:
                planned = ahead, await self._requests(partition, ahead)
        except asyncio.CancelledError:
            firing.cancel()
            reading.cancel()
            raise
        except Exception:
            await asyncio.gather(firing, reading, return_exceptions=True)
            raise
        try:
            replies = await firing
        except BaseException:
            reading.cancel()  # not left running (or failing unheard) behind the error
            await asyncio.gather(reading, return_exceptions=True)
            raise
        try:
            following = await reading
        except Exception:
            self._settle(partition, requests, replies, batch.now)  # fired: count it
            raise
        return planned, None if fenced else following, replies, fenced

    async def _read_next(self, partition: int, batch: DueBatch | None) -> DueBatch | None:
        """The batch after a full one, while the lease needs no renewing yet."""
        lease = self.leases[partition]
        if batch is None or len(batch.schedules) < self.due.batch_size:
            return None
        if lease.renew_due() or not lease.held():
            return None
        following = await self.due.read(partition, after=batch)
        return following if following.schedules else None

    def _behind(self, partition: int, batch: DueBatch) -> None:
        """How long the earliest due schedule has waited: the metric, and a log line
        (limited) when it is more than a moment."""
        behind_ms = 0 if batch.earliest is None else max(0, batch.now - batch.earliest)
        self.stats.behind_ms[partition] = behind_ms
        telemetry.TICKER_BEHIND.labels(str(partition)).set(behind_ms / 1000)
        if behind_ms >= BEHIND_LOG_MS and batch.earliest is not None:
            lag.warning(
                "ticker.behind",
                "partition %d: %.1f s behind (due since %s); catching up by each "
                "schedule's catch-up policy",
                partition,
                behind_ms / 1000,
                to_rfc3339(batch.earliest),
                partition=partition,
            )

    async def _requests(self, partition: int, batch: DueBatch) -> list[FireRequest]:
        """The plan's request for each due schedule (under the lease held now)."""
        lease = self.leases[partition]
        fence = Fence(lease.owner, lease.state.epoch)
        await self.due.load_configs(partition, batch.schedules)
        configs = [self.due.config(due) for due in batch.schedules]
        targets = await self.due.targets({c.workflow_id for c in configs if c is not None})
        requests = []
        lateness = self.stats.lateness_ms
        for due, config in zip(batch.schedules, configs, strict=True):
            target = UNKNOWN_TARGET if config is None else targets.get(config.workflow_id)
            request = scheduled_request(due, config, target or UNKNOWN_TARGET, batch.now, fence)
            for fire in request.fires:
                lateness.append(batch.now - fire.at)
            requests.append(request)
        return requests

    async def _run(self, requests: list[FireRequest]) -> list[FireReply]:
        spans = self._fire_spans(requests) if telemetry.tracing() else []
        try:
            return await self.script.run_many(requests)
        finally:
            for fire_span in spans:
                fire_span.end()

    def _settle(
        self, partition: int, requests: list[FireRequest], replies: list[FireReply], now: int
    ) -> bool:
        """Count what the scripts did; step down at the first fenced reply (True)."""
        summary = TickSummary() if activity.logger.isEnabledFor(logging.INFO) else None
        fenced = self.stats.fenced
        for request, reply in zip(requests, replies, strict=True):
            if reply.status == "FENCED":
                self.stats.fenced += 1
                self.leases[partition].lost()
                telemetry.LEASE_HELD.labels(str(partition)).set(0)
                log.warning(
                    "partition %d: lease lost (fenced); stepping down",
                    partition,
                    extra={"partition": partition},
                )
                break
            if reply.status == "STALE":
                self.stats.stale += 1
            elif reply.status == "OK":
                self._count(request, reply, now)
                if summary is not None:
                    summary.add(request, reply)
        if summary is not None and summary.counts:
            activity.info(
                "fire", "partition %d: %s", partition, summary.line(), partition=partition
            )
        return self.stats.fenced > fenced

    def _fire_spans(self, requests: list[FireRequest]) -> list[Any]:
        """A ``schedule.fire`` span per fire, linked to the schedule's last command."""
        spans = []
        for request in requests:
            link = telemetry.links([self.due.trace(request.schedule_id)])
            destination = self.keys.queue(self.keys.partition_of(request.schedule_id))
            request.traces = []
            for fire in request.fires:
                fire_span = telemetry.tracer().start_span(
                    "schedule.fire",
                    kind=SpanKind.PRODUCER,
                    links=link,
                    attributes={
                        "cronstream.schedule_id": request.schedule_id,
                        "cronstream.run_id": fire.run_id,
                        "cronstream.nominal_time": to_rfc3339(fire.nominal),
                        "cronstream.fire_id": fire.fire_id,
                        "messaging.system": "redis",
                        "messaging.operation.type": "publish",
                        "messaging.destination.name": destination,
                    },
                )
                spans.append(fire_span)
                request.traces.append(telemetry.traceparent_of(fire_span) or "")
        return spans

    def _count(self, request: FireRequest, reply: FireReply, now: int) -> None:
        self.stats.fired += reply.fired
        self.stats.skipped += reply.skipped
        self.stats.dropped += reply.dropped
        for outcome, count in (
            ("fired", reply.fired),
            ("skipped", reply.skipped),
            ("dropped", reply.dropped),
        ):
            if count:
                _fires(outcome, request.schedule_id).inc(count)
        if request.missed is not None:
            _fires("missed", request.schedule_id).inc(request.missed.count)
        for fire in request.fires:
            telemetry.FIRE_LATENESS.observe(max(0, now - fire.nominal) / 1000)

    # -- the loop -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Take a fair share of the partitions' leases and fire while holding them, until
        ``stop``; then free them and leave the membership so the others take them at once."""
        with contextlib.suppress(RedisError, OSError):
            await self.membership.beat()  # be counted before taking any lease
        tasks = [
            asyncio.create_task(self._listen(stop), name="ticker-wake"),
            asyncio.create_task(self.share.heartbeat(stop, self._wake_all), name="ticker-members"),
            *(
                asyncio.create_task(self._partition_loop(p, stop), name=f"ticker-{p}")
                for p in range(self.keys.partitions)
            ),
        ]
        await hold_until_stopped(self.membership, self.leases, tasks, stop)

    def held(self) -> list[int]:
        """The partitions whose lease this ticker holds now."""
        return self.share.held()

    def _wake_all(self) -> None:
        """Members came or went: every partition loop looks again at once (takes a freed
        lease, or gives up a surplus one)."""
        for wake in self._wake:
            wake.set()

    async def _take(self, lease: Lease) -> bool:
        """Acquire a free lease if this ticker is below its share; True when held."""
        taken = await self.share.take(lease)
        if taken:
            log.info(
                "partition %d: lease acquired, epoch %d",
                lease.partition,
                lease.state.epoch,
                extra={"partition": lease.partition},
            )
            telemetry.LEASE_HELD.labels(str(lease.partition)).set(1)
        return taken

    async def _keep(self, lease: Lease) -> bool:
        """Renew the lease at renewal time, or give it up to rebalance; True while held."""
        kept = await self.share.keep(lease)
        if not kept:
            telemetry.LEASE_HELD.labels(str(lease.partition)).set(0)
        return kept

    async def _partition_loop(self, partition: int, stop: asyncio.Event) -> None:
        lease = self.leases[partition]
        failures = 0
        while not stop.is_set():
            try:
                if not lease.held():
                    if not await self._take(lease):
                        await self._sleep(partition, lease.ttl_ms / 5000)
                        continue
                elif not await self._keep(lease):
                    continue
                looked, earliest, now = await self._tick(partition)
                failures = 0
                if looked:
                    continue  # fired something: look again at once (it reports the next due)
                until_renewal = lease.ttl_ms / 3000 - (time.monotonic() - lease.state.renewed_at)
                pause = min(MAX_SLEEP_S, max(until_renewal, 0.0))
                if earliest is not None:
                    pause = min(pause, max(0.0, (earliest - now) / 1000))
                await self._sleep(partition, pause)
            except (RedisError, OSError) as exc:
                # unavailable, or a cluster that is down (CLUSTERDOWN) or moving slots
                log.warning("ticker partition %d: redis unavailable (%s)", partition, exc)
                await self._back_off(lease, failures)
                failures += 1
            except Exception:
                # a client library's own failure (seen: redis-py's cluster connections
                # after a node restart) must not end the partition's firing for good
                log.exception("ticker partition %d: unexpected error; trying again", partition)
                await self._back_off(lease, failures)
                failures += 1

    async def _back_off(self, lease: Lease, failures: int) -> None:
        """Wait before trying again, never past the lease's renewal time."""
        backoff = retry_delay(failures)
        await self._sleep(lease.partition, min(backoff, lease.ttl_ms / 3000))

    async def _sleep(self, partition: int, seconds: float) -> None:
        wake = self._wake[partition]
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=seconds)
        wake.clear()

    async def _listen(self, stop: asyncio.Event) -> None:
        """Wake a partition loop when the append script announces a schedule due now."""
        channels = {self.keys.wake(p): p for p in range(self.keys.partitions)}
        failures = 0
        while not stop.is_set():
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(*channels)
                    failures = 0
                    while not stop.is_set():
                        message = await pubsub.get_message(
                            ignore_subscribe_messages=True, timeout=MAX_SLEEP_S
                        )
                        if message is not None:
                            self._wake[channels[as_text(message["channel"])]].set()
            except (RedisError, OSError):
                failures += 1
                await asyncio.sleep(retry_delay(failures))

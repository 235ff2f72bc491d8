"""The ticker: holds a partition's lease and turns due schedules into fires.

Each partition loop sleeps until the earliest due time (or until the append
script announces a schedule due now), then fires every due schedule in batches:
one pipeline reads the schedules, the pure planner decides, one pipeline of fire
scripts enforces the decisions atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service import telemetry
from service.clock import Clock
from service.domain import firing
from service.domain.ids import new_id
from service.domain.schedule import ScheduleConfig
from service.domain.timeutil import to_rfc3339
from service.store.eventstore import as_text
from service.store.keys import Keyspace
from service.ticker.fires import FireRequest, FireScript
from service.ticker.lease import DEFAULT_TTL_MS, Lease

log = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_SLEEP_S = 1.0
RETRY_DELAYS_S = (0.05, 0.1, 0.25, 0.5, 1.0)
CONFIG_CACHE_SIZE = 200_000
TARGET_CACHE_S = 1.0
STATS_SAMPLES = 10_000
_FIRES = {o: telemetry.FIRES.labels(o) for o in ("fired", "skipped", "dropped", "missed")}


@dataclass
class TickStats:
    """What a ticker did, for tests, metrics and benchmarks."""

    fired: int = 0
    skipped: int = 0
    dropped: int = 0
    fenced: int = 0
    stale: int = 0
    ticks: int = 0
    # the most recent lateness samples only: a ticker runs for months
    lateness_ms: deque[float] = field(default_factory=lambda: deque(maxlen=STATS_SAMPLES))


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
        self.batch_size = batch_size
        self.leases = [Lease(redis, keys, p, lease_ttl_ms, owner) for p in range(keys.partitions)]
        self.script = FireScript(redis, keys)
        source = resources.files("service.ticker").joinpath("due.lua").read_text()
        self._due = redis.register_script(source)
        self.stats = TickStats()
        self._configs: dict[tuple[str, int], ScheduleConfig] = {}
        self._wake = [asyncio.Event() for _ in range(keys.partitions)]
        self._target_cache: dict[str, str] = {}
        self._traces: dict[str, str | None] = {}  # trace of each schedule's last command
        self._targets_read_at = 0.0

    @property
    def owner(self) -> str:
        return self.leases[0].owner

    async def now_ms(self) -> int:
        """One clock for due-ness: the injected one, else Redis's."""
        if self.clock is not None:
            return self.clock.now_ms()
        seconds, micros = await self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def _load_configs(self, partition: int, due: list[tuple[str, int]]) -> None:
        """Read and parse the configs of schedule versions not seen before (one pipeline)."""
        missing = [(sid, v) for sid, v in due if v and (sid, v) not in self._configs]
        if not missing:
            return
        if len(self._configs) + len(missing) > CONFIG_CACHE_SIZE:
            self._configs.clear()
            self._traces.clear()
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid, _ in missing:
                pipe.hmget(
                    self.keys.state(partition, "schedule", sid), ["version", "state", "traceparent"]
                )
            snapshots: list[Any] = await pipe.execute()
        for (sid, _), (version, snapshot, traceparent) in zip(missing, snapshots, strict=True):
            if snapshot is not None:
                config = ScheduleConfig.model_validate(orjson.loads(snapshot)["config"])
                self._configs[(sid, int(version))] = config
                self._traces[sid] = as_text(traceparent) if traceparent else None

    async def tick(self, partition: int) -> int:
        """Fire what is due now on a partition whose lease we hold; return how many
        schedules were looked at (a full batch means: tick again at once)."""
        looked, _, _ = await self._tick(partition)
        return looked

    async def _tick(self, partition: int) -> tuple[int, int | None, int]:
        """One tick: (schedules looked at, earliest due ms before it, now)."""
        lease = self.leases[partition]
        now_arg = "" if self.clock is None else str(self.clock.now_ms())
        reply: Any = await self._due(
            keys=[self.keys.due(partition), self.keys.hwm(partition)],
            args=[now_arg, self.batch_size, self.keys.state(partition, "schedule", "")],
        )
        now, earliest = int(reply[0]), int(reply[1])
        rows = reply[2:]
        due = [
            (
                as_text(rows[i]),
                int(rows[i + 1]),
                as_text(rows[i + 2]),
                int(rows[i + 3]),
                int(rows[i + 4]),
            )
            for i in range(0, len(rows), 5)
        ]
        if not due:
            return 0, None if earliest < 0 else earliest, now
        self.stats.ticks += 1
        await self._load_configs(partition, [(sid, version) for sid, version, *_ in due])
        configs: dict[str, ScheduleConfig] = {}
        requests = []
        for sid, version, status, actions, mark in due:
            request = FireRequest(
                schedule_id=sid,
                mode="schedule",
                token=lease.owner,
                epoch=lease.state.epoch,
                version=version,
                hwm=mark,
                fire_time=to_rfc3339(now),
                meta={"actor": f"ticker:{lease.owner}", "epoch": lease.state.epoch},
            )
            config = self._configs.get((sid, version))
            if config is not None and status == "active":
                configs[sid] = config
                request = self._planned(request, config, actions, now)
            requests.append(request)
        targets = await self._targets({c.workflow_id for c in configs.values()})
        for request in requests:
            found = configs.get(request.schedule_id)
            if found is not None:
                request.workflow_id = found.workflow_id
                request.target = targets.get(found.workflow_id, "http")
        spans = self._fire_spans(requests) if telemetry.tracing() else []
        try:
            results = await self.script.run_many(requests)
        finally:
            for fire_span in spans:
                fire_span.end()
        for request, (outcome, counts) in zip(requests, results, strict=True):
            if outcome == "OK":
                self._count(request, counts, now)
            if outcome == "FENCED":
                self.stats.fenced += 1
                lease.lost()
                telemetry.LEASE_HELD.labels(str(partition)).set(0)
                log.warning(
                    "partition %d: lease lost (fenced); stepping down",
                    partition,
                    extra={"partition": partition},
                )
                break
            if outcome == "STALE":
                self.stats.stale += 1
            elif outcome == "OK":
                self.stats.fired += counts[0]
                self.stats.skipped += counts[1]
                self.stats.dropped += counts[2]
        return len(due), earliest, now

    def _fire_spans(self, requests: list[FireRequest]) -> list[Any]:
        """A ``schedule.fire`` span per fire, linked to the schedule's last command."""
        spans = []
        for request in requests:
            link = telemetry.links([self._traces.get(request.schedule_id)])
            request.traces = []
            for nominal, run_id in request.fires:
                fire_span = telemetry.tracer().start_span(
                    "schedule.fire",
                    kind=SpanKind.PRODUCER,
                    links=link,
                    attributes={
                        "cronstream.schedule_id": request.schedule_id,
                        "cronstream.run_id": run_id,
                        "cronstream.nominal_time": to_rfc3339(nominal or 0),
                        "cronstream.fire_id": f"{request.schedule_id}:{nominal}:schedule",
                        "messaging.system": "redis",
                        "messaging.operation.type": "publish",
                        "messaging.destination.name": self.keys.queue(
                            self.keys.partition_of(request.schedule_id)
                        ),
                    },
                )
                spans.append(fire_span)
                request.traces.append(telemetry.traceparent_of(fire_span) or "")
        return spans

    def _count(self, request: FireRequest, counts: list[Any], now: int) -> None:
        for outcome, count in zip(("fired", "skipped", "dropped"), counts, strict=False):
            if count:
                _FIRES[outcome].inc(int(count))
        if request.missed is not None:
            _FIRES["missed"].inc(request.missed.count)
        for nominal, _ in request.fires:
            telemetry.FIRE_LATENESS.observe(max(0, now - (nominal or now)) / 1000)

    def _planned(
        self, request: FireRequest, config: ScheduleConfig, actions: int, now: int
    ) -> FireRequest:
        spec = config.spec
        sid = request.schedule_id
        remaining = None if config.max_actions is None else max(config.max_actions - actions, 0)

        def jittered(nominal: int) -> int:
            return firing.due_at(spec, sid, nominal) or nominal

        actual = jittered if spec.jitter > 0 else None
        plan = firing.plan(spec, config.policy, request.hwm, now, remaining, actual=actual)
        request.new_hwm = plan.new_hwm
        request.next_due = firing.due_at(spec, sid, plan.next_nominal)
        request.fires = [(t, new_id("run")) for t in plan.fire]
        request.missed = plan.missed
        request.max_actions = config.max_actions
        request.overlap = str(config.policy.overlap)
        request.buffer_max = config.policy.buffer_max
        request.input = config.input
        for nominal in plan.fire:
            self.stats.lateness_ms.append(now - (jittered(nominal) if actual else nominal))
        return request

    async def _targets(self, workflow_ids: set[str]) -> dict[str, str]:
        """The target type of each workflow ('none' runs complete at once), cached briefly:
        a workflow's target type changes rarely, and a fire reads it for every due time."""
        if time.monotonic() - self._targets_read_at > TARGET_CACHE_S:
            self._target_cache.clear()
            self._targets_read_at = time.monotonic()
        ordered = sorted(w for w in workflow_ids if w not in self._target_cache)
        if not ordered:
            return self._target_cache
        async with self.redis.pipeline(transaction=False) as pipe:
            for wid in ordered:
                pipe.hget(self.keys.state(self.keys.partition_of(wid), "workflow", wid), "state")
            raws: list[Any] = await pipe.execute()
        for wid, raw in zip(ordered, raws, strict=True):
            if raw is not None:
                self._target_cache[wid] = orjson.loads(raw)["config"]["target"]["type"]
        return self._target_cache

    # -- the loop -----------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Compete for every partition's lease and fire while holding it, until ``stop``."""
        listener = asyncio.create_task(self._listen(stop), name="ticker-wake")
        loops = [
            asyncio.create_task(self._partition_loop(p, stop), name=f"ticker-{p}")
            for p in range(self.keys.partitions)
        ]
        try:
            await stop.wait()
        finally:
            for task in (listener, *loops):
                task.cancel()
            for task in (listener, *loops):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for lease in self.leases:
                with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
                    await lease.release()

    async def _partition_loop(self, partition: int, stop: asyncio.Event) -> None:
        lease = self.leases[partition]
        failures = 0
        while not stop.is_set():
            try:
                if not lease.held():
                    if not await lease.acquire():
                        await self._sleep(partition, lease.ttl_ms / 5000)
                        continue
                    log.info(
                        "partition %d: lease acquired, epoch %d",
                        partition,
                        lease.state.epoch,
                        extra={"partition": partition},
                    )
                    telemetry.LEASE_HELD.labels(str(partition)).set(1)
                elif lease.renew_due() and not await lease.renew():
                    log.warning("partition %d: lease renewal refused; stepping down", partition)
                    telemetry.LEASE_HELD.labels(str(partition)).set(0)
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
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
                failures += 1
                log.warning("ticker partition %d: redis unavailable (%s)", partition, exc)
                await self._sleep(partition, delay)

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
            except (RedisConnectionError, RedisTimeoutError, OSError):
                failures += 1
                await asyncio.sleep(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)])

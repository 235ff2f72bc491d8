"""The subscriber: reads every partition's log in the consumer group ``notify`` and turns
the events the rules watch into incidents; probes each partition's due index for a
ticker that is behind.

The group starts at the end of the log when first made (notifications are about what
happens from then on, not about last year's failures), and every worker process reads
in it, so each event is handled by one of them; an event is acknowledged after it was
admitted, and one a dead process held is reclaimed after ``idle_ms``. Admitting is
idempotent (``notify.lua`` remembers each occurrence), so an event handled twice is
told once.

The ticker's signal: the oldest entry of ``cs:{p}:due``. A ticker holding the
partition's lease takes each due schedule within about a second, so an entry overdue
by more than a rule's ``lag`` means no ticker holds the lease, or it cannot keep up
(the same lateness ``cronstream_fire_lateness_seconds`` measures after the fact).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from service.domain.namespaces import namespace_of
from service.domain.notifications import (
    Incident,
    Occurrence,
    RuleConfig,
    Trigger,
    incident_of,
    lag_occurrence,
    matches,
    occurrence_of,
    summary,
    watched,
    windowed,
)
from service.notify.loops import ride_out
from service.store.eventstore import StoredEvent, decode_entry
from service.store.keys import Keyspace
from service.store.notifications import Admission, NotificationStore

log = logging.getLogger(__name__)

LOG_GROUP = "notify"
RUN_TRIGGERS = frozenset({Trigger.RUN_FAILED, Trigger.DEAD_LETTERED})
MAX_RATE = 1_000_000  # a channel deleted since the rule named it: fails at delivery


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Rules:
    """The rules and channels' rates as of the store's version: one GET a batch tells
    whether any changed (then all are read again), so a rule made before an event is
    always applied to it."""

    def __init__(self, store: NotificationStore) -> None:
        self.store = store
        self._version = -1
        self.rules: list[tuple[str, RuleConfig]] = []
        self.rates: dict[str, int] = {}

    async def fresh(self) -> list[tuple[str, RuleConfig]]:
        version = await self.store.version()
        if version != self._version:
            self.rules = await self.store.rule_configs()
            channels = await self.store.channels()
            self.rates = {c.id: int(c.config.get("rate_per_minute", 30)) for c in channels}
            self._version = version
        return self.rules

    def watching(self, trigger: Trigger) -> bool:
        return any(rule.on is trigger and rule.enabled for _, rule in self.rules)

    def rates_of(self, rule: RuleConfig) -> list[tuple[str, int]]:
        return [(cid, self.rates.get(cid, MAX_RATE)) for cid in rule.channels]


class Subscriber:
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        store: NotificationStore,
        consumer: str,
        *,
        block_ms: int = 1000,
        batch: int = 200,
        idle_ms: int = 60_000,
        probe_s: float = 5.0,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.store = store
        self.consumer = consumer
        self.rules = Rules(store)
        self.block_ms = block_ms
        self.batch = batch
        self.idle_ms = idle_ms
        self.probe_s = probe_s
        self.admitted = 0
        self.started_ms: int | None = None
        self._next_reclaim: dict[int, float] = {}

    # -- the log --------------------------------------------------------------------------

    async def ensure_group(self, partition: int) -> bool:
        """Make the group (at the events appended since this subscriber started) once the
        log exists: False while it does not (a new keyspace's first event is still to come;
        the log is never made here, which would make a fresh keyspace look old)."""
        if self.started_ms is None:
            seconds, micros = await self.redis.time()
            self.started_ms = int(seconds) * 1000 + int(micros) // 1000
        try:
            await self.redis.xgroup_create(
                self.keys.log(partition), LOG_GROUP, id=f"{self.started_ms - 1}-0"
            )
        except ResponseError as exc:
            if "BUSYGROUP" in str(exc):
                return True
            if "requires the key to exist" in str(exc):
                return False
            raise
        return True

    async def run(self, partition: int, stop: asyncio.Event) -> None:
        """Follow one partition's log until ``stop``; ride out Redis outages."""
        ready = False
        while not stop.is_set():
            try:
                ready = ready or await self.ensure_group(partition)
                if ready:
                    await self.step(partition)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.block_ms / 1000)
            except Exception as exc:
                ready = False  # a group deleted meanwhile is made again
                await ride_out(f"notifications, partition {partition}", exc, stop)

    async def step(self, partition: int) -> int:
        """Handle one batch: entries abandoned by a dead reader first, then new ones."""
        stream = self.keys.log(partition)
        entries: list[Any] = []
        now = time.monotonic()
        if now >= self._next_reclaim.get(partition, 0.0):
            self._next_reclaim[partition] = now + self.idle_ms / 4000
            claimed: Any = await self.redis.xautoclaim(
                stream, LOG_GROUP, self.consumer, self.idle_ms, "0-0", count=self.batch
            )
            entries = [e for e in claimed[1] if e[1]]
        if not entries:
            reply: Any = await self.redis.xreadgroup(
                LOG_GROUP, self.consumer, {stream: ">"}, count=self.batch, block=self.block_ms
            )
            entries = reply[0][1] if reply else []
        if not entries:
            return 0
        await self.rules.fresh()
        for entry_id, fields in entries:
            if fields:
                await self.handle(decode_entry(partition, entry_id, fields))
        await self.redis.xack(stream, LOG_GROUP, *[entry_id for entry_id, _ in entries])
        return len(entries)

    async def handle(self, event: StoredEvent) -> None:
        trigger = watched(event.type, event.data)
        if trigger is None or not self.rules.watching(trigger):
            return
        workflow_id = schedule_id = None
        if trigger in RUN_TRIGGERS:
            workflow_id, schedule_id = await self._run_ids(event)
        occurrence = occurrence_of(
            event.type,
            event.data,
            ident=f"{event.partition}:{event.position}",
            sid=event.sid,
            at_ms=event.at,
            workflow_id=workflow_id,
            schedule_id=schedule_id,
        )
        if occurrence is not None:
            await self.occurred(occurrence)

    async def _run_ids(self, event: StoredEvent) -> tuple[str | None, str | None]:
        """The run's workflow and schedule (None: a run no schedule made), from its record."""
        run_key = self.keys.run(event.partition, str(event.data.get("run_id", "")))
        kind, workflow_id = await self.redis.hmget(run_key, ["kind", "workflow_id"])
        schedule_id = None if _text(kind or b"") == "workflow" else event.sid
        return (_text(workflow_id) if workflow_id else None), schedule_id

    # -- incidents ------------------------------------------------------------------------

    async def occurred(self, occurrence: Occurrence) -> list[Admission]:
        """Admit an occurrence to every rule that watches it."""
        admitted = []
        for rule_id, rule in self.rules.rules:
            if matches(rule, occurrence, namespace_of(rule_id)):
                admitted.append(await self.admit(incident_of(rule_id, rule, occurrence), rule))
        return admitted

    async def admit(self, incident: Incident, rule: RuleConfig) -> Admission:
        occ = incident.occurrence
        told = summary(incident, rule.threshold + 1 if windowed(rule) else None)
        fields = {
            "rule": incident.rule_id,
            "trigger": str(occ.trigger),
            "incident": incident.key,
            "subject": occ.subject,
            "summary": told,
            "details": _json(occ.details),
            "at": str(occ.at_ms),
            "schedule_id": occ.schedule_id or "",
            "workflow_id": occ.workflow_id or "",
            "run_id": occ.run_id or "",
        }
        admission = await self.store.admit(incident, rule, self.rules.rates_of(rule), fields)
        if admission.outcome == "told":
            self.admitted += 1
            for decision in admission.decisions:
                log.info(
                    "notification %s: %s to %s (%s)",
                    incident.key,
                    decision.status,
                    decision.channel,
                    decision.reason or incident.rule_id,
                )
        return admission

    # -- the ticker's lag -----------------------------------------------------------------

    async def probe(self, stop: asyncio.Event) -> None:
        """Every ``probe_s``: is any partition's oldest due schedule overdue?"""
        while not stop.is_set():
            try:
                await self.probe_once()
            except Exception as exc:
                await ride_out("notifications, ticker probe", exc, stop, 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.probe_s)

    async def probe_once(self) -> int:
        rules = [r for r in await self.rules.fresh() if r[1].on is Trigger.TICKER_BEHIND]
        if not rules:
            return 0
        seconds, micros = await self.redis.time()
        now = int(seconds) * 1000 + int(micros) // 1000
        told = 0
        for p in range(self.keys.partitions):
            oldest = await self.redis.zrange(self.keys.due(p), 0, 0, withscores=True)
            due = int(oldest[0][1]) if oldest else None
            for rule_id, rule in rules:
                occurrence = lag_occurrence(p, due, now, rule.lag)
                if occurrence is not None and matches(rule, occurrence, namespace_of(rule_id)):
                    incident = incident_of(rule_id, rule, occurrence)
                    told += (await self.admit(incident, rule)).outcome == "told"
        return told


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()

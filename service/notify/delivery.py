"""The delivery loop: sends queued notifications, retries them with backoff, and records
each attempt's outcome.

Every worker process runs one, in the consumer group ``notifiers`` of the queue, so the
sends are spread over the pool and an entry a dead process held is reclaimed after
``idle_ms``. A failed attempt that a retry could help waits in ``retries`` for
``retry_delay_ms`` (doubling) and is queued again, up to ``max_attempts``; the record
then says ``failed`` with the last error. At most ``concurrency`` sends at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from service.domain.namespaces import split
from service.domain.notifications import retry_delay_ms, should_retry
from service.domain.timeutil import to_rfc3339
from service.notify.channels import Message, Senders
from service.notify.loops import ride_out
from service.store.notifications import ChannelSecretsUnprotected, NotificationStore
from service.store.secrets import SecretUnreadable
from service.worker.targets.base import AttemptResult

log = logging.getLogger(__name__)

REQUEUE_EVERY_S = 0.25
DONE = frozenset({"sent", "failed", "suppressed"})
PAYLOAD_FIELDS = ("rule", "trigger", "incident", "subject", "summary", "count")
IDS = ("schedule_id", "workflow_id", "run_id")


def message_of(record: dict[str, str]) -> Message:
    """What the channels say of a record (the webhook body, the mail's lines)."""
    payload: dict[str, Any] = {"id": record["id"]}
    payload |= {name: record.get(name, "") for name in PAYLOAD_FIELDS}
    payload["count"] = int(payload["count"] or 1)
    payload |= {name: record[name] for name in IDS if record.get(name)}
    for name in ("rule", "subject", "schedule_id", "workflow_id"):
        if name in payload:
            payload[name] = split(payload[name])[1]  # as the rule's namespace knows it
    payload["at"] = to_rfc3339(int(record.get("at") or record.get("created") or 0))
    payload["details"] = orjson.loads(record.get("details") or "{}")
    return Message(record["id"], record.get("summary", ""), payload)


class Delivery:
    def __init__(
        self,
        store: NotificationStore,
        senders: Senders,
        consumer: str,
        *,
        max_attempts: int = 5,
        retry_base_ms: int = 1000,
        concurrency: int = 8,
        idle_ms: int = 180_000,
        block_ms: int = 1000,
    ) -> None:
        self.store = store
        self.senders = senders
        self.consumer = consumer
        self.max_attempts = max_attempts
        self.retry_base_ms = retry_base_ms
        self.idle_ms = idle_ms
        self.block_ms = block_ms
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_requeue = self._next_reclaim = 0.0
        self.sent = 0

    async def run(self, stop: asyncio.Event) -> None:
        await self.store.ensure_group()
        try:
            while not stop.is_set():
                try:
                    await self.round()
                except Exception as exc:
                    await ride_out("notification delivery", exc, stop)
        finally:
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=10)
            for task in list(self._tasks):
                task.cancel()

    async def round(self) -> int:
        """Requeue due retries and reclaim abandoned entries (each now and then: a round
        trip a round would cost more than the sends), take new ones, start them."""
        now = time.monotonic()
        if now >= self._next_requeue:
            self._next_requeue = now + min(self.retry_base_ms / 2000, REQUEUE_EVERY_S)
            await self.store.requeue(self.senders.now_ms())
        free = self._concurrency - len(self._tasks)
        if free <= 0:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            return 0
        entries: list[tuple[str, str]] = []
        if now >= self._next_reclaim:
            self._next_reclaim = now + self.idle_ms / 4000
            entries = await self.store.reclaim(self.consumer, self.idle_ms, free)
        if not entries:
            block = min(self.block_ms, int(REQUEUE_EVERY_S * 1000))
            entries = await self.store.take(self.consumer, free, block)
        for entry_id, record_id in entries:
            task = asyncio.create_task(self.deliver(entry_id, record_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(entries)

    async def deliver(self, entry_id: str, record_id: str) -> None:
        async with self._slots:
            try:
                await self._deliver(entry_id, record_id)
            except Exception as exc:  # left pending: reclaimed and tried again
                log.warning("notification %s: %s", record_id, exc)

    async def _deliver(self, entry_id: str, record_id: str) -> None:
        record = await self.store.record(record_id)
        now = self.senders.now_ms()
        if record is None or record.get("status") in DONE:
            # trimmed from the records, or finished already (an entry queued twice, or
            # reclaimed from a worker that finished it meanwhile): nothing to send
            await self.store.finish(entry_id, record_id, "failed", 0, now_ms=now)
            return
        attempt = int(record.get("attempts") or 0) + 1
        result = await self._attempt(record)
        now = self.senders.now_ms()
        if result.ok:
            outcome, due = "sent", 0
            self.sent += 1
        elif should_retry(attempt, result.retryable, self.max_attempts):
            outcome, due = "retry", now + retry_delay_ms(attempt, self.retry_base_ms)
        else:
            outcome, due = "failed", 0
        await self.store.finish(
            entry_id,
            record_id,
            outcome,
            attempt,
            error=result.error or "",
            due_ms=due,
            now_ms=now,
            code=result.status,
        )
        if not result.ok:
            log.warning(
                "notification %s to channel %s, attempt %d: %s (%s)",
                record_id,
                record.get("channel"),
                attempt,
                result.error,
                outcome,
            )

    async def _attempt(self, record: dict[str, str]) -> AttemptResult:
        channel_id = record.get("channel", "")
        try:
            channel = await self.store.delivery_config(channel_id)
        except (SecretUnreadable, ChannelSecretsUnprotected, ValueError) as exc:
            return AttemptResult.failure(f"{exc}; nothing was sent", retryable=True)
        if channel is None:
            return AttemptResult.failure(f"channel {channel_id!r} was deleted", retryable=False)
        return await self.senders.send(channel, message_of(record))

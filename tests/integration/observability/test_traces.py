"""One trace from the API call that creates a schedule to the webhook its run sends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis

from service import telemetry
from service.clock import FixedClock
from service.commands import CommandService, ProjectionWaiter
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.ticker.ticker import Ticker
from service.worker.worker import Worker
from tests.integration.runs.target import local_target


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry.use_provider(provider)
    yield exporter
    telemetry.use_provider(None)
    provider.shutdown()


def one(found: list[ReadableSpan], name: str) -> ReadableSpan:
    matching = [s for s in found if s.name == name]
    assert len(matching) == 1, [s.name for s in found]
    return matching[0]


async def test_request_fire_run_and_webhook_form_one_linked_trace(
    api: TestClient,
    redis: Redis,
    keys: Keyspace,
    clock: FixedClock,
    spans: InMemorySpanExporter,
) -> None:
    async with local_target() as target:
        await api.put(
            "/v1/workflows/w", json={"target": {"type": "http", "url": target.url + "/ok"}}
        )
        r = await api.post(
            "/v1/schedules", json={"id": "s", "workflow_id": "w", "spec": {"cron": ["* * * * *"]}}
        )
        assert r.status == 201
        ticker = Ticker(redis, keys, clock=clock)
        assert await ticker.leases[0].acquire()
        clock.advance(60_000)
        await ticker.tick(0)
        worker = Worker(
            redis,
            keys,
            CommandService(EventStore(redis, keys), ProjectionWaiter(redis, keys)),
            idle_bound_ms=5000,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + 10
        while not target.calls["ok"]:
            assert time.monotonic() < deadline, "the webhook was not called"
            await asyncio.sleep(0.02)
        while worker.stats.succeeded < 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 15)

    found = list(spans.get_finished_spans())
    create = one(found, "POST /v1/schedules")
    assert create.kind is SpanKind.SERVER
    assert create.attributes["http.response.status_code"] == 201
    appends = [
        s
        for s in found
        if s.name == "cronstream.append" and s.context.trace_id == create.context.trace_id
    ]
    assert appends and appends[0].parent.span_id == create.context.span_id
    assert appends[0].attributes["cronstream.event_types"] == "ScheduleCreated"
    fire = one(found, "schedule.fire")
    assert fire.attributes["cronstream.schedule_id"] == "s"
    assert fire.attributes["cronstream.nominal_time"] == "2026-01-15T12:01:00Z"
    # the fire starts its own trace, linked to the command that last changed the schedule
    assert [link.context.trace_id for link in fire.links] == [create.context.trace_id]
    attempt = one(found, "run.attempt")
    assert attempt.parent.span_id == fire.context.span_id
    assert attempt.context.trace_id == fire.context.trace_id
    assert attempt.attributes["cronstream.run_id"] == fire.attributes["cronstream.run_id"]
    client = one(found, "POST")
    assert client.kind is SpanKind.CLIENT and client.parent.span_id == attempt.context.span_id
    assert client.attributes["http.response.status_code"] == 200
    sent = target.calls["ok"][0]["headers"]["traceparent"]
    assert sent.split("-")[1] == format(fire.context.trace_id, "032x")
    assert sent.split("-")[2] == format(client.context.span_id, "016x")
    batches = [s for s in found if s.name == "cronstream.project"]
    linked = {link.context.trace_id for s in batches for link in s.links}
    assert create.context.trace_id in linked and fire.context.trace_id in linked


async def test_no_spans_and_no_traceparent_when_tracing_is_off(
    api: TestClient, redis: Redis, keys: Keyspace
) -> None:
    assert not telemetry.tracing()
    await api.put("/v1/workflows/w", json={"target": {"type": "none"}})
    import orjson

    [(_eid, fields)] = await redis.xrange(keys.log(0))
    assert "traceparent" not in orjson.loads(fields[b"meta"])

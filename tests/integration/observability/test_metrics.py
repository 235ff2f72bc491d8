"""Prometheus metrics move with fires, runs, failures and retries."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from service.clock import FixedClock
from service.commands import CommandService, ProjectionWaiter
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.ticker.ticker import Ticker
from service.worker.worker import Worker
from tests.integration.runs.target import local_target


async def scrape(api: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await api.get("/metrics")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(await r.text()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(
    metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.parametrize("namespace", ["default", "acme"])
async def test_metrics_follow_fires_runs_failures_and_retries(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock, namespace: str
) -> None:
    """The fires, attempts, runs, schedules and breakers of a namespace's schedule carry
    its name; another namespace's counts do not move."""
    other = "acme" if namespace == "default" else "default"
    headers = {"Cronstream-Namespace": namespace}
    before = await scrape(api)
    async with local_target() as target:
        target.fail_first["flaky"] = 1
        await api.put(
            "/v1/workflows/w",
            json={
                "target": {"type": "http", "url": target.url + "/flaky"},
                "retry": {"max_attempts": 3, "initial_interval": "50ms"},
            },
            headers=headers,
        )
        await api.post(
            "/v1/schedules",
            json={
                "id": "s",
                "workflow_id": "w",
                "spec": {"cron": ["* * * * *"]},
                "policy": {"overlap": "skip"},
            },
            headers=headers,
        )
        ticker = Ticker(redis, keys, clock=clock)
        assert await ticker.leases[0].acquire()
        clock.advance(60_000)
        await ticker.tick(0)  # fired
        clock.advance(60_000)
        await ticker.tick(0)  # skipped: the first run has not finished
        clock.advance(10 * 60_000)
        await ticker.tick(0)  # latest of ten fires... skipped too, nine missed
        worker = Worker(
            redis, keys, CommandService(EventStore(redis, keys), ProjectionWaiter(redis, keys))
        )
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(stop))
        deadline = time.monotonic() + 10
        while worker.stats.succeeded < 1:
            assert time.monotonic() < deadline, "the run did not succeed"
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 15)
    after = await scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for ns, n in ((namespace, 1), (other, 0)):
        assert delta("cronstream_fires_total", outcome="fired", namespace=ns) == n
        assert delta("cronstream_fires_total", outcome="skipped", namespace=ns) == 2 * n
        assert delta("cronstream_fires_total", outcome="missed", namespace=ns) == 9 * n
        assert delta("cronstream_attempts_total", outcome="failed", namespace=ns) == n
        assert delta("cronstream_attempts_total", outcome="succeeded", namespace=ns) == n
        runs = delta("cronstream_runs_total", status="succeeded", trigger="schedule", namespace=ns)
        assert runs == n
        assert value(after, "cronstream_schedules", status="active", namespace=ns) == n
    assert delta("cronstream_fire_lateness_seconds_count") == 3  # one per decided time
    assert delta("cronstream_retries_total") == 1
    assert delta("cronstream_run_duration_seconds_count") == 2
    assert value(after, "cronstream_queue_depth", partition="0") >= 1
    assert value(after, "cronstream_queue_pending", partition="0") == 0
    assert value(after, "cronstream_lease_epoch", partition="0") == 1
    assert value(after, "cronstream_lease_held", partition="0") in (0, 1)
    assert (
        delta(
            "cronstream_http_request_duration_seconds_count",
            method="POST",
            route="/v1/schedules",
            status="201",
        )
        == 1
    )
    assert value(after, "cronstream_projection_lag_events", projection="views", partition="0") >= 0
    assert (
        value(
            after,
            "cronstream_breaker_state",
            namespace=namespace,
            host=f"127.0.0.1:{target.url.rsplit(':', 1)[1]}",
        )
        == 0
    )
    breakers = {labels for name, labels in after if name == "cronstream_breaker_state"}
    assert {dict(labels)["namespace"] for labels in breakers} == {namespace}

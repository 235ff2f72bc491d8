"""Webhook deliveries end to end: signed or not sent at all, verifiable with the
standardwebhooks library, and naming the fire they are for."""

from __future__ import annotations

import asyncio
import base64
import logging
import runpy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from standardwebhooks import WebhookVerificationError

from service.api.app import create_app
from service.clock import FixedClock
from service.commands import CommandService, ProjectionWaiter
from service.config import Settings
from service.domain.timeutil import to_rfc3339
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.ticker.ticker import Ticker
from service.worker.worker import Worker
from tests.integration.runs.target import Target, local_target
from tests.integration.runs.test_runs import eventually, run_of
from tests.integration.ticker.helpers import schedule_events

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "verify_webhook.py"
HOUR = 3_600_000
KEY = bytes(range(40, 72))  # 32 bytes: its base64 ends in one '='


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with local_target() as t:
        yield t


@pytest.fixture
async def live(redis: Redis, settings: Settings, keys: Keyspace) -> AsyncIterator[TestClient]:
    """The API with the real clock, and a worker, on the test Redis."""
    client = TestClient(TestServer(create_app(settings, redis), host="127.0.0.1"))
    await client.start_server()
    store, waiter = EventStore(redis, keys), ProjectionWaiter(redis, keys)
    commands = CommandService(store, waiter, wait_timeout_s=0)
    worker = Worker(redis, keys, commands, concurrency=4, idle_bound_ms=2000)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    yield client
    stop.set()
    await asyncio.wait_for(task, 20)
    await client.close()


async def hook_workflow(api: TestClient, url: str, **target: Any) -> None:
    body = {"target": {"type": "http", "url": url, **target}, "retry": {"max_attempts": 1}}
    r = await api.put("/v1/workflows/hook", json=body)
    assert r.status in (200, 201), await r.text()


async def hourly_schedule(api: TestClient) -> None:
    body = {"id": "hourly", "workflow_id": "hook", "spec": {"intervals": [{"every": "1h"}]}}
    # the trigger's run may still be running when the other fires come: they all run
    body |= {"input": {"report": "sales"}, "policy": {"overlap": "allow_all"}}
    r = await api.post("/v1/schedules", json=body)
    assert r.status == 201, await r.text()


async def run_now(api: TestClient) -> str:
    r = await api.post("/v1/workflows/hook/runs", json={"input": {"n": 1}})
    assert r.status == 201, await r.text()
    return str((await r.json())["run_id"])


async def test_a_signing_secret_missing_on_the_worker_fails_the_run_and_is_logged(
    live: TestClient,
    target: Target,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("CS_HOOK_SECRET", raising=False)
    await hook_workflow(live, target.url + "/ok", secret_env="CS_HOOK_SECRET")

    with caplog.at_level(logging.WARNING, logger="service.worker"):
        run_id = await run_now(live)
        run = await run_of(live, run_id, "succeeded", "failed")

    assert run["status"] == "failed"
    [attempt] = run["attempts"]
    assert "CS_HOOK_SECRET" in attempt["error"] and "not set" in attempt["error"]
    assert not target.calls["ok"]  # never sent unsigned
    # the worker says so as the attempt starts, before it records the outcome
    [record, *_] = [r for r in caplog.records if "CS_HOOK_SECRET" in r.getMessage()]
    assert record.name.startswith("service.worker")
    assert record.levelno >= logging.WARNING
    assert run_id in record.getMessage() and "hook" in record.getMessage()
    # nothing reached the host, so its circuit breaker counts nothing against it
    assert (await (await live.get("/v1/breakers")).json())["items"] == []


SECRETS = {
    "padded": "whsec_" + base64.b64encode(KEY).decode(),
    "unpadded": "whsec_" + base64.b64encode(KEY).decode().rstrip("="),
    "not prefixed": "a passphrase, used as its UTF-8 bytes",
}


@pytest.mark.parametrize("kind", list(SECRETS))
async def test_the_readme_example_verifies_deliveries_under_every_kind_of_secret(
    live: TestClient, target: Target, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    secret = SECRETS[kind]
    monkeypatch.setenv("CS_HOOK_SECRET", secret)  # what the workers have
    monkeypatch.setenv("CRONSTREAM_WEBHOOK_SECRET", secret)  # what the receiver has
    await hook_workflow(live, target.url + "/ok", secret_env="CS_HOOK_SECRET")
    for _ in range(3):
        await run_of(live, await run_now(live), "succeeded")
    verified = runpy.run_path(str(EXAMPLE))["verified"]

    for call in target.calls["ok"]:
        assert verified(call["body"], call["headers"]) == {"n": 1}
    call = target.calls["ok"][0]
    with pytest.raises(WebhookVerificationError):
        verified(call["body"].replace(b"1", b"2"), call["headers"])


def test_the_readme_shows_the_example_as_it_is() -> None:
    """The snippet in the docs is the file the test above runs, character for character."""
    example = EXAMPLE.read_text()
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    assert any(f"```python\n{example}```" in page.read_text() for page in docs if page.exists())


async def fires_delivered(
    live: TestClient, redis: Redis, keys: Keyspace, target: Target
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """A trigger, a backfill and a scheduled fire of the hourly schedule, delivered."""
    r = await live.post("/v1/schedules/hourly/trigger", json={})
    assert r.status in (200, 201), await r.text()
    mark = int(await redis.hget(keys.hwm(0), "hourly") or 0)
    last_hour = mark // HOUR * HOUR  # the hour before the schedule was made
    window = {"start": to_rfc3339(last_hour - 1000), "end": to_rfc3339(last_hour + 1)}
    r = await live.post("/v1/schedules/hourly/backfill", json=window)
    assert r.status == 200, await r.text()
    assert (await r.json())["fired"] == 1
    ticker = Ticker(redis, keys, clock=FixedClock(last_hour + HOUR + 1000))  # the next hour
    assert await ticker.leases[0].acquire()
    await ticker.tick(0)

    fired = [d for t, d in await schedule_events(redis, keys, "hourly") if t == "ScheduleFired"]
    assert sorted(d["trigger"] for d in fired) == ["api", "backfill", "schedule"]

    async def all_delivered() -> bool:
        return len(target.calls["ok"]) == 3

    await eventually(all_delivered)
    by_run = {call["headers"]["cronstream-run-id"]: call for call in target.calls["ok"]}
    return [(fire, by_run[fire["run_id"]]) for fire in fired]


async def test_deliveries_name_the_fire_in_headers_and_envelope(
    live: TestClient, redis: Redis, keys: Keyspace, target: Target
) -> None:
    await hook_workflow(live, target.url + "/ok", body="envelope")
    await hourly_schedule(live)

    for fire, call in await fires_delivered(live, redis, keys, target):
        headers, body = call["headers"], orjson.loads(call["body"])
        assert body == {
            "schedule_id": "hourly",
            "workflow_id": "hook",
            "fire_id": fire["fire_id"],
            "run_id": fire["run_id"],
            "nominal_time": fire["nominal_time"],
            "trigger": fire["trigger"],
            "attempt": 1,
            "input": {"report": "sales"},
        }
        assert headers["cronstream-schedule-id"] == "hourly"
        assert headers["cronstream-workflow-id"] == "hook"
        assert headers["cronstream-fire-id"] == fire["fire_id"]
        assert headers["cronstream-nominal-time"] == fire["nominal_time"]
        assert headers["cronstream-trigger"] == fire["trigger"]
        assert headers["cronstream-attempt"] == "1"
        assert headers["webhook-id"] == fire["run_id"]


async def test_the_default_body_stays_the_input_and_the_headers_name_the_fire(
    live: TestClient, redis: Redis, keys: Keyspace, target: Target
) -> None:
    await hook_workflow(live, target.url + "/ok")
    await hourly_schedule(live)

    for fire, call in await fires_delivered(live, redis, keys, target):
        assert orjson.loads(call["body"]) == {"report": "sales"}
        assert call["headers"]["cronstream-fire-id"] == fire["fire_id"]
        assert call["headers"]["cronstream-trigger"] == fire["trigger"]


async def test_the_body_option_is_checked_and_shown(live: TestClient) -> None:
    r = await live.put(
        "/v1/workflows/hook", json={"target": {"type": "http", "url": "http://x/", "body": "xml"}}
    )
    assert r.status == 422
    await hook_workflow(live, "http://127.0.0.1:9/hook", body="envelope")
    workflow = await (await live.get("/v1/workflows/hook")).json()
    assert workflow["target"]["body"] == "envelope"
    spec = await (await live.get("/openapi.json")).json()
    schema = orjson.dumps(spec).decode()
    assert '"envelope"' in schema

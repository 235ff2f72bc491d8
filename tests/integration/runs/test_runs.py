"""Runs end to end in one process: API, projector, worker and a local HTTP target."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.app import create_app
from service.commands import CommandService, ProjectionWaiter
from service.config import Settings
from service.domain.timeutil import parse_instant
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.worker.worker import Worker
from tests.integration.api.helpers import problem
from tests.integration.runs.target import Target, local_target

FAST_RETRY = {"max_attempts": 3, "initial_interval": "50ms", "max_interval": "200ms"}


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with local_target() as t:
        yield t


@pytest.fixture
async def live(redis: Redis, settings: Settings, keys: Keyspace) -> AsyncIterator[TestClient]:
    """The API with the real clock, and a worker, on the test Redis."""
    app = create_app(settings, redis)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    worker = Worker(
        redis,
        keys,
        CommandService(EventStore(redis, keys), ProjectionWaiter(redis, keys), wait_timeout_s=0),
        concurrency=8,
        idle_bound_ms=2000,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    yield client
    stop.set()
    await asyncio.wait_for(task, 20)
    await client.close()


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 10) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def run_of(api: TestClient, run_id: str, *statuses: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        r = await api.get(f"/v1/runs/{run_id}")
        if r.status != 200:
            return None
        body: dict[str, Any] = await r.json()
        return body if body["status"] in statuses else None

    result: dict[str, Any] = await eventually(check)
    return result


async def schedule_for(api: TestClient, url: str, sid: str = "s", **extra: Any) -> None:
    workflow = {
        "target": {"type": "http", "url": url},
        "retry": FAST_RETRY,
        "timeout": "1s",
        **extra.pop("workflow", {}),
    }
    r = await api.put(f"/v1/workflows/w-{sid}", json=workflow)
    assert r.status in (200, 201), await r.text()
    body = {
        "id": sid,
        "workflow_id": f"w-{sid}",
        "spec": {"cron": ["0 0 1 1 *"]},
        "input": {"n": 1},
        **extra,
    }
    r = await api.post("/v1/schedules", json=body)
    assert r.status == 201, await r.text()


async def trigger(api: TestClient, sid: str = "s", **body: Any) -> str:
    r = await api.post(f"/v1/schedules/{sid}/trigger", json=body)
    data = await r.json()
    assert r.status in (200, 201), data
    return str(data["run_id"])


async def test_a_run_calls_the_webhook_with_signed_standard_headers(
    live: TestClient, target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    monkeypatch.setenv("CS_TEST_SECRET", f"whsec_{secret}")
    hook = {"type": "http", "url": target.url + "/ok", "secret_env": "CS_TEST_SECRET"}
    await schedule_for(live, target.url + "/ok", workflow={"target": hook})
    run_id = await trigger(live)
    run = await run_of(live, run_id, "succeeded")
    assert [a["outcome"] for a in run["attempts"]] == ["succeeded"]
    assert run["attempts"][0]["status"] == 200
    assert run["trigger"]["type"] == "api" and run["schedule_id"] == "s"
    [call] = target.calls["ok"]
    headers, body = call["headers"], call["body"]
    assert headers["webhook-id"] == run_id
    signed = f"{run_id}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(
        hmac.new(base64.b64decode(secret), signed, hashlib.sha256).digest()
    ).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert body == b'{"n":1}'
    view = await (await live.get("/v1/schedules/s")).json()
    assert view["last_run_status"] == "succeeded" and view["info"]["running_runs"] == []
    page = await (await live.get("/v1/schedules/s/runs")).json()
    assert [r["id"] for r in page["items"]] == [run_id]


async def test_retries_with_backoff_until_success(live: TestClient, target: Target) -> None:
    await schedule_for(live, target.url + "/flaky")
    run_id = await trigger(live)
    run = await run_of(live, run_id, "succeeded")
    assert [a["outcome"] for a in run["attempts"]] == ["failed", "failed", "succeeded"]
    assert [a["status"] for a in run["attempts"]] == [500, 500, 200]
    assert run["attempts"][0]["body_excerpt"] == "not yet"
    ids = {c["headers"]["webhook-id"] for c in target.calls["flaky"]}
    assert ids == {run_id}  # the same id on every attempt


async def test_retry_after_is_honoured(live: TestClient, target: Target) -> None:
    await schedule_for(live, target.url + "/busy")
    run_id = await trigger(live)
    run = await run_of(live, run_id, "succeeded")
    first, second = run["attempts"]
    assert first["status"] == 429 and second["status"] == 200
    calls = target.calls["busy"]
    assert calls[1]["at"] - calls[0]["at"] >= 0.95  # Retry-After: 1, not the 50 ms backoff


async def test_410_fails_at_once_and_a_failed_scheduled_run_pauses_the_schedule(
    live: TestClient, target: Target, redis: Redis, keys: Keyspace
) -> None:
    from service.ticker.ticker import Ticker

    await schedule_for(
        live,
        target.url + "/gone",
        policy={"pause_on_failure": True},
        spec={"cron": ["* * * * * *"]},
    )
    run_id = await trigger(live)  # a manual run fails without pausing anything
    run = await run_of(live, run_id, "failed")
    assert len(run["attempts"]) == 1 and run["attempts"][0]["status"] == 410
    assert (await (await live.get("/v1/schedules/s")).json())["status"] == "active"
    ticker = Ticker(redis, keys)  # Redis's clock
    assert await ticker.leases[0].acquire()

    async def fired() -> bool:
        await ticker.tick(0)
        return ticker.stats.fired > 0

    await eventually(fired)

    async def paused() -> dict[str, Any] | None:
        view: dict[str, Any] = await (await live.get("/v1/schedules/s")).json()
        return view if view["status"] == "paused" else None

    view = await eventually(paused)
    scheduled = await (await live.get("/v1/runs", params={"trigger": "schedule"})).json()
    failed_run = scheduled["items"][0]["id"]
    assert view["note"] == f"paused after run {failed_run} failed"
    history = await (await live.get("/v1/schedules/s/history")).json()
    [paused] = [i for i in history["items"] if i["type"] == "SchedulePaused"]
    assert paused["data"]["cause"] == "run_failed" and paused["data"]["run_id"] == failed_run


async def test_a_hanging_target_times_out(live: TestClient, target: Target) -> None:
    await schedule_for(
        live,
        target.url + "/hang",
        workflow={"timeout": "300ms", "retry": {"max_attempts": 2, "initial_interval": "50ms"}},
    )
    run_id = await trigger(live)
    run = await run_of(live, run_id, "timedout")
    assert len(run["attempts"]) == 2
    assert all("timed out" in a["error"] for a in run["attempts"])


async def test_the_breaker_opens_after_consecutive_failures(
    live: TestClient, target: Target
) -> None:
    await schedule_for(live, target.url + "/down", workflow={"retry": {"max_attempts": 1}})
    for _ in range(5):
        run_id = await trigger(live)
        await run_of(live, run_id, "failed")
    run_id = await trigger(live)
    run = await run_of(live, run_id, "failed")
    assert run["attempts"][0]["error"].startswith("circuit open")
    assert len(target.calls["down"]) == 5  # the sixth never reached the host
    page = await (await live.get("/v1/breakers")).json()
    [breaker] = page["items"]
    assert breaker["host"].startswith("127.0.0.1") and breaker["state"] == "open"


async def test_each_namespace_has_its_own_breaker_per_host(
    live: TestClient, target: Target
) -> None:
    """acme's failures open acme's breaker only: default's calls to the same host still
    go out, and each namespace lists only its own breakers, by bare host."""
    acme = {"Cronstream-Namespace": "acme"}
    hook = {"target": {"type": "http", "url": target.url + "/down"}, "retry": {"max_attempts": 1}}
    for headers in (acme, {}):
        assert (await live.put("/v1/workflows/w", json=hook, headers=headers)).ok

    async def failed_attempt(headers: dict[str, str]) -> str:
        r = await live.post("/v1/workflows/w/runs", json={}, headers=headers)
        run_id = (await r.json())["run_id"]

        async def done() -> dict[str, Any] | None:
            run: dict[str, Any] = await (
                await live.get(f"/v1/runs/{run_id}", headers=headers)
            ).json()
            return run if run.get("status") == "failed" else None

        return str((await eventually(done))["attempts"][0]["error"])

    for _ in range(5):
        await failed_attempt(acme)
    assert (await failed_attempt(acme)).startswith("circuit open")
    assert not (await failed_attempt({})).startswith("circuit open")
    assert len(target.calls["down"]) == 6  # five of acme's, one of default's
    pages = [await (await live.get("/v1/breakers", headers=h)).json() for h in (acme, {})]
    [theirs], [mine] = (page["items"] for page in pages)
    assert theirs["host"] == mine["host"] and "/" not in mine["host"]
    assert (theirs["state"], mine["state"], mine["failures"]) == ("open", "closed", 1)


async def test_python_target_and_cancellation(live: TestClient) -> None:
    from tests.integration.runs import handlers

    handlers.reset()
    await live.put(
        "/v1/workflows/py",
        json={
            "target": {
                "type": "python",
                "handler": "tests.integration.runs.handlers:wait_for_cancel",
            }
        },
    )
    r = await live.post("/v1/workflows/py/runs", json={"input": {"x": 1}})
    assert r.status == 201
    run_id = (await r.json())["run_id"]
    await run_of(live, run_id, "running")
    await eventually(lambda: _true(handlers.started.is_set()))
    r = await live.post(f"/v1/runs/{run_id}/cancel", json={})
    assert r.status == 202
    run = await run_of(live, run_id, "cancelled")
    assert run["cancel_requested"] is True
    assert handlers.saw_cancel.is_set()
    await problem(await live.post(f"/v1/runs/{run_id}/cancel", json={}), 409)
    await problem(await live.get("/v1/runs/nope"), 404)


async def _true(value: bool) -> bool:
    return value


async def test_run_now_with_an_idempotency_key(live: TestClient, target: Target) -> None:
    await live.put(
        "/v1/workflows/w",
        json={
            "target": {"type": "http", "url": target.url + "/ok"},
            "input_schema": {"type": "object", "required": ["n"]},
        },
    )
    headers = {"Idempotency-Key": "run-1"}
    first = await live.post("/v1/workflows/w/runs", json={"input": {"n": 1}}, headers=headers)
    second = await live.post("/v1/workflows/w/runs", json={"input": {"n": 1}}, headers=headers)
    a, b = await first.json(), await second.json()
    assert first.status == 201 and second.status == 200
    assert a["run_id"] == b["run_id"] and b["duplicate"]
    run = await run_of(live, a["run_id"], "succeeded")
    assert run["trigger"]["type"] == "api" and run["schedule_id"] is None
    err = await problem(await live.post("/v1/workflows/w/runs", json={"input": {}}), 422)
    assert err["errors"][0]["field"] == "input"
    await problem(await live.post("/v1/workflows/nope/runs", json={}), 404)
    page = await (await live.get("/v1/runs", params={"workflow_id": "w"})).json()
    assert [r["id"] for r in page["items"]] == [a["run_id"]]


async def test_run_history_filters_and_pages_newest_first(live: TestClient, target: Target) -> None:
    await schedule_for(live, target.url + "/ok")
    ids = []
    for _ in range(5):
        ids.append(await trigger(live))
        await run_of(live, ids[-1], "succeeded")
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": "2", "schedule_id": "s", **({"cursor": cursor} if cursor else {})}
        page = await (await live.get("/v1/runs", params=params)).json()
        seen += [r["id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    page = await (
        await live.get("/v1/runs", params={"status": "succeeded", "trigger": "api"})
    ).json()
    assert len(page["items"]) == 5
    err = await problem(await live.get("/v1/runs", params={"status": "nope"}), 422)
    assert err["errors"][0]["field"] == "status"
    err = await problem(await live.get("/v1/runs", params={"trigger": "nope"}), 422)
    assert err["errors"][0]["field"] == "trigger"


@pytest.mark.parametrize(
    "overlap", ["skip", "buffer_one", "cancel_other", "terminate_other", "allow_all"]
)
async def test_overlap_policies_end_to_end(live: TestClient, target: Target, overlap: str) -> None:
    await schedule_for(live, target.url + "/slow", policy={"overlap": overlap})
    first = await trigger(live)
    await run_of(live, first, "running")
    await eventually(lambda: _true(target.in_flight["slow"] == 1))
    r = await live.post("/v1/schedules/s/trigger", json={})
    second = (await r.json())["run_id"]
    if overlap == "skip":
        assert second is None and (await r.json())["skipped"] == 1
        target.release.set()
        await run_of(live, first, "succeeded")
    elif overlap == "buffer_one":
        await asyncio.sleep(0)  # nothing to wait for: the held run must not start
        assert target.in_flight["slow"] == 1
        target.release.set()
        await run_of(live, first, "succeeded")
        await run_of(live, second, "succeeded")
    elif overlap in ("cancel_other", "terminate_other"):
        old = await run_of(live, first, "cancelled")
        new = await run_of(live, second, "running", "succeeded")
        assert parse_instant(old["finished_at"]) <= parse_instant(new["started_at"])
        target.release.set()
        await run_of(live, second, "succeeded")
    else:
        await eventually(lambda: _true(target.in_flight["slow"] == 2))
        target.release.set()
        await run_of(live, second, "succeeded")
    assert target.max_in_flight["slow"] == (2 if overlap == "allow_all" else 1)

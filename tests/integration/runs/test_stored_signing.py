"""Stored signing secrets end to end: made once through the API, kept encrypted outside
the log, every live one signing each delivery, and a worker that cannot read them
sending nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis
from standardwebhooks import Webhook, WebhookVerificationError

from service.api.app import create_app
from service.commands import CommandService, ProjectionWaiter
from service.config import SECRET_KEY_VAR, Settings
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.store.secrets import generate_key
from service.worker.worker import Worker
from tests.integration.runs.target import Target, local_target
from tests.integration.runs.test_runs import run_of

KEY = generate_key()
SECRETS = "/v1/workflows/hook/signing-secrets"


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    async with local_target() as t:
        yield t


@pytest.fixture
async def live(
    redis: Redis, settings: Settings, keys: Keyspace, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TestClient]:
    """The API (with a secret key) and a worker that reads the key from its environment."""
    monkeypatch.setenv(SECRET_KEY_VAR, KEY)
    app = create_app(replace(settings, secret_key=KEY), redis)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    store, waiter = EventStore(redis, keys), ProjectionWaiter(redis, keys)
    worker = Worker(redis, keys, CommandService(store, waiter, wait_timeout_s=0), concurrency=4)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    yield client
    stop.set()
    await asyncio.wait_for(task, 20)
    await client.close()


async def stored_workflow(api: TestClient, url: str) -> None:
    target = {"type": "http", "url": url, "signing": "stored"}
    body = {"target": target, "retry": {"max_attempts": 1}}
    r = await api.put("/v1/workflows/hook", json=body)
    assert r.status in (200, 201), await r.text()


async def made(api: TestClient, path: str = SECRETS, body: Any = None) -> dict[str, Any]:
    r = await api.post(path, json=body)
    assert r.status == 201, await r.text()
    assert r.headers["Cache-Control"] == "no-store"
    answer: dict[str, Any] = await r.json()
    return answer


async def delivered(api: TestClient, target: Target) -> dict[str, Any]:
    r = await api.post("/v1/workflows/hook/runs", json={"input": {"n": 1}})
    assert r.status == 201, await r.text()
    run = await run_of(api, (await r.json())["run_id"], "succeeded", "failed")
    assert run["status"] == "succeeded", run
    call: dict[str, Any] = target.calls["ok"][-1]
    return call


def verifies(secret: str, call: dict[str, Any]) -> bool:
    try:
        Webhook(secret).verify(call["body"], call["headers"])
    except WebhookVerificationError:
        return False
    return True


async def test_a_made_secret_signs_deliveries_and_is_listed_without_its_value(
    live: TestClient, target: Target, redis: Redis
) -> None:
    await stored_workflow(live, target.url + "/ok")
    first = await made(live)
    assert first["secret"].startswith("whsec_") and first["id"].startswith("sec_")

    call = await delivered(live, target)
    assert verifies(first["secret"], call)
    assert not verifies("whsec_" + "A" * 43 + "=", call)
    listing = await (await live.get(SECRETS)).text()
    assert first["id"] in listing and first["secret"] not in listing
    # encrypted at rest: the hash holds neither the secret nor its key bytes
    raw = await redis.hgetall(Keyspace().signing_secrets(0, "hook"))
    assert list(raw) == [first["id"].encode()]
    assert first["secret"].removeprefix("whsec_").encode() not in b"".join(raw.values())


async def test_a_rotation_signs_with_both_until_the_old_one_is_revoked(
    live: TestClient, target: Target
) -> None:
    await stored_workflow(live, target.url + "/ok")
    old = await made(live)
    new = await made(live, SECRETS + "/rotate", {"grace": "1h"})
    listed = (await (await live.get(SECRETS)).json())["items"]
    # the old one ends with the grace; the new one lives until rotated or revoked
    ending = {s["id"]: s["expires_at"] is not None for s in listed}
    assert ending == {old["id"]: True, new["id"]: False}

    call = await delivered(live, target)
    assert len(call["headers"]["webhook-signature"].split(" ")) == 2
    assert verifies(old["secret"], call) and verifies(new["secret"], call)

    assert (await live.delete(f"{SECRETS}/{old['id']}")).status == 204
    call = await delivered(live, target)
    assert verifies(new["secret"], call) and not verifies(old["secret"], call)
    again = await live.delete(f"{SECRETS}/{old['id']}")
    assert again.status == 404 and old["secret"] not in await again.text()


async def test_a_rotation_without_grace_ends_the_old_secret_at_once(
    live: TestClient, target: Target
) -> None:
    await stored_workflow(live, target.url + "/ok")
    old = await made(live)
    new = await made(live, SECRETS + "/rotate", {"grace": 0})
    call = await delivered(live, target)
    assert call["headers"]["webhook-signature"].count("v1,") == 1
    assert verifies(new["secret"], call) and not verifies(old["secret"], call)


async def test_create_twice_says_to_rotate_and_live_secrets_are_bounded(live: TestClient) -> None:
    r = await live.put("/v1/workflows/hook", json={"target": {"type": "none"}})
    assert r.status == 201
    await made(live)
    twice = await live.post(SECRETS)
    assert twice.status == 409 and "rotate" in (await twice.json())["detail"]
    for _ in range(2):
        await made(live, SECRETS + "/rotate")
    full = await live.post(SECRETS + "/rotate")
    assert full.status == 409 and "revoke one first" in (await full.json())["detail"]
    missing = await live.post("/v1/workflows/nope/signing-secrets")
    assert missing.status == 404


async def test_without_a_secret_key_none_can_be_made(api: TestClient) -> None:
    assert (await api.put("/v1/workflows/hook", json={"target": {"type": "none"}})).status == 201
    r = await api.post(SECRETS)
    assert r.status == 409, await r.text()
    assert r.content_type == "application/problem+json"
    assert SECRET_KEY_VAR in (await r.json())["detail"]
    assert (await (await api.get(SECRETS)).json())["items"] == []


@pytest.mark.parametrize("worker_key", [None, generate_key()], ids=["no key", "another key"])
async def test_a_worker_that_cannot_decrypt_sends_nothing(
    live: TestClient, target: Target, monkeypatch: pytest.MonkeyPatch, worker_key: str | None
) -> None:
    await stored_workflow(live, target.url + "/ok")
    secret = await made(live)
    if worker_key is None:
        monkeypatch.delenv(SECRET_KEY_VAR)
    else:
        monkeypatch.setenv(SECRET_KEY_VAR, worker_key)
    r = await live.post("/v1/workflows/hook/runs", json={"input": {}})
    run = await run_of(live, (await r.json())["run_id"], "succeeded", "failed")
    assert run["status"] == "failed"
    [attempt] = run["attempts"]
    assert "nothing was sent" in attempt["error"] and SECRET_KEY_VAR in attempt["error"]
    assert secret["secret"] not in attempt["error"]
    assert not target.calls["ok"]


async def test_a_stored_workflow_without_a_live_secret_sends_nothing(
    live: TestClient, target: Target
) -> None:
    await stored_workflow(live, target.url + "/ok")
    r = await live.post("/v1/workflows/hook/runs", json={"input": {}})
    run = await run_of(live, (await r.json())["run_id"], "succeeded", "failed")
    assert "no live stored signing secret" in run["attempts"][0]["error"]
    assert not target.calls["ok"]


async def test_signing_stored_and_secret_env_are_one_or_the_other(api: TestClient) -> None:
    both = {"type": "http", "url": "http://127.0.0.1:9/x", "signing": "stored", "secret_env": "S"}
    r = await api.put("/v1/workflows/w", json={"target": both})
    assert r.status == 422 and "choose one" in await r.text()
    env_alone = {"type": "http", "url": "http://127.0.0.1:9/x", "signing": "env"}
    r = await api.put("/v1/workflows/w", json={"target": env_alone})
    assert r.status == 422 and "secret_env" in await r.text()


async def test_a_deleted_workflow_takes_its_secrets_along(live: TestClient, target: Target) -> None:
    await stored_workflow(live, target.url + "/ok")
    await made(live)
    assert (await live.delete("/v1/workflows/hook")).status == 204
    await stored_workflow(live, target.url + "/ok")  # the same id, defined again
    listing = await (await live.get(SECRETS)).json()
    assert listing["items"] == []
    second = await made(live)  # not "rotate instead": none is live
    assert verifies(second["secret"], await delivered(live, target))

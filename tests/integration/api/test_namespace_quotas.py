"""A namespace's quota, kept in Redis, is enforced when a schedule is created or changed:
422 naming the field past a limit, 409 past the maximum of schedules; nothing appended."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.store.keys import Keyspace
from service.store.namespaces import NamespaceQuotas
from tests.integration.api.helpers import log_length, problem

EVERY_5M = {"cron": ["*/5 * * * *"]}
EVERY_MINUTE = {"cron": ["* * * * *"]}
WORKFLOW = {"target": {"type": "none"}}


def body(ident: str, spec: dict[str, Any], catchup_max: int = 5) -> dict[str, Any]:
    return {
        "id": ident,
        "workflow_id": "scan",
        "spec": spec,
        "policy": {"catchup_max": catchup_max},
    }


@pytest.fixture
async def limited(api: TestClient, redis: Redis, keys: Keyspace) -> TestClient:
    assert (await api.put("/v1/workflows/scan", json={"target": {"type": "none"}})).ok
    changes = {"max_schedules": 2, "min_interval_ms": 300_000, "max_catchup": 10}
    await NamespaceQuotas(redis, keys).set("default", changes)
    return api


async def test_a_spec_firing_more_often_than_the_minimum_is_refused(limited: TestClient) -> None:
    before = await log_length(limited)
    refused = await problem(await limited.post("/v1/schedules", json=body("a", EVERY_MINUTE)), 422)
    assert [e["field"] for e in refused["errors"]] == ["spec"]
    assert "namespace default" in refused["errors"][0]["message"]
    assert await log_length(limited) == before
    assert (await limited.post("/v1/schedules", json=body("a", EVERY_5M))).status == 201
    patched = await limited.patch("/v1/schedules/a", json={"spec": EVERY_MINUTE})
    assert [e["field"] for e in (await problem(patched, 422))["errors"]] == ["spec"]
    assert (await (await limited.get("/v1/schedules/a")).json())["spec"]["cron"] == ["*/5 * * * *"]


async def test_a_catchup_burst_past_the_maximum_is_refused(limited: TestClient) -> None:
    answer = await limited.post("/v1/schedules", json=body("a", EVERY_5M, catchup_max=11))
    assert [e["field"] for e in (await problem(answer, 422))["errors"]] == ["policy.catchup_max"]
    assert (await limited.post("/v1/schedules", json=body("a", EVERY_5M, 10))).status == 201
    patched = await limited.patch("/v1/schedules/a", json={"policy": {"catchup_max": 50}})
    await problem(patched, 422)


async def test_a_namespace_at_its_maximum_of_schedules_takes_no_more(
    limited: TestClient, redis: Redis, keys: Keyspace
) -> None:
    for ident in ("a", "b"):
        assert (await limited.post("/v1/schedules", json=body(ident, EVERY_5M))).status == 201
    before = await log_length(limited)
    full = await problem(await limited.post("/v1/schedules", json=body("c", EVERY_5M)), 409)
    assert "maximum is 2" in full["detail"]
    assert await log_length(limited) == before
    assert (await limited.delete("/v1/schedules/a")).status == 204
    assert (await limited.post("/v1/schedules", json=body("c", EVERY_5M))).status == 201
    await NamespaceQuotas(redis, keys).set("default", {"max_schedules": None})
    assert (await limited.post("/v1/schedules", json=body("d", EVERY_5M))).status == 201


async def test_without_a_quota_nothing_is_limited(api: TestClient) -> None:
    assert (await api.put("/v1/workflows/scan", json={"target": {"type": "none"}})).ok
    made = await api.post("/v1/schedules", json=body("a", EVERY_MINUTE, catchup_max=10_000))
    assert made.status == 201, await made.text()


async def test_each_namespace_counts_only_its_own_schedules(
    limited: TestClient, redis: Redis, keys: Keyspace
) -> None:
    """default holds at most 2: schedules of other namespaces, around its ids in the
    views' indexes, neither fill it nor are held to it."""
    acme, zeta = {"Cronstream-Namespace": "acme"}, {"Cronstream-Namespace": "zeta"}
    await NamespaceQuotas(redis, keys).set("acme", {"max_schedules": 1})
    for headers in (acme, zeta):
        assert (await limited.put("/v1/workflows/scan", json=WORKFLOW, headers=headers)).ok
    assert (await limited.post("/v1/schedules", json=body("a", EVERY_5M), headers=acme)).ok
    for ident in ("a", "b", "c"):
        made = await limited.post("/v1/schedules", json=body(ident, EVERY_5M), headers=zeta)
        assert made.status == 201, await made.text()
    for ident in ("a", "b"):
        assert (await limited.post("/v1/schedules", json=body(ident, EVERY_5M))).status == 201
    await problem(await limited.post("/v1/schedules", json=body("c", EVERY_5M)), 409)
    full = await limited.post("/v1/schedules", json=body("b", EVERY_5M), headers=acme)
    assert "namespace acme holds 1 schedules" in (await problem(full, 409))["detail"]

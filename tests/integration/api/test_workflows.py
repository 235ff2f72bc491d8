"""Workflow endpoints."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from service.api.models import WorkflowPage, WorkflowView
from tests.integration.api.helpers import create_schedule, log_length, problem, put_workflow


async def test_put_creates_then_replaces(api: TestClient) -> None:
    body = {
        "name": "Billing",
        "target": {
            "type": "http",
            "url": "http://127.0.0.1:9/hook",
            "method": "POST",
            "headers": {"X-Team": "billing"},
            "timeout": "30s",
        },
        "input_schema": {"type": "object"},
        "retry": {"max_attempts": 5, "initial_interval": "2s", "backoff": 3},
    }
    r = await api.put("/v1/workflows/bill", json=body)
    created = await r.json()
    assert r.status == 201, created
    WorkflowView.model_validate(created)
    assert created["retry"] == {
        "max_attempts": 5,
        "initial_interval": "2s",
        "max_interval": "5m",
        "backoff": 3.0,
    }
    assert created["target"]["timeout"] == "30s"
    assert r.headers["ETag"] == '"1"'
    same = await api.put("/v1/workflows/bill", json=body)
    assert same.status == 200 and (await same.json())["version"] == 1
    changed = await api.put(
        "/v1/workflows/bill", json={**body, "name": "Billing v2"}, headers={"If-Match": '"1"'}
    )
    assert changed.status == 200 and (await changed.json())["version"] == 2
    stale = await api.put(
        "/v1/workflows/bill", json={**body, "name": "v3"}, headers={"If-Match": '"1"'}
    )
    await problem(stale, 412)
    r = await api.get("/v1/workflows/bill")
    assert (await r.json())["name"] == "Billing v2"


async def test_targets_and_their_errors(api: TestClient) -> None:
    await put_workflow(api, "py", target={"type": "python", "handler": "jobs.billing:run"})
    await put_workflow(api, "none", target={"type": "none"})
    before = await log_length(api)
    cases = [
        ({"target": {"type": "ftp"}}, "target"),
        ({"target": {"type": "http", "url": "not a url"}}, "target.url"),
        ({"target": {"type": "python", "handler": "no-colon"}}, "target.handler"),
        ({"target": {"type": "none"}, "input_schema": {"type": "nonsense"}}, "input_schema"),
        ({"target": {"type": "none"}, "retry": {"max_attempts": 0}}, "retry.max_attempts"),
        ({"target": {"type": "none"}, "timeout": "forever"}, "timeout"),
        ({"target": {"type": "none"}, "id": "other"}, "id"),
        ({}, "target"),
    ]
    for body, field in cases:
        err = await problem(await api.put("/v1/workflows/w1", json=body), 422)
        assert err["errors"][0]["field"] == field, (body, err)
    err = await problem(
        await api.put("/v1/workflows/bad id", json={"target": {"type": "none"}}), 422
    )
    assert err["errors"][0]["field"] == "id"
    assert await log_length(api) == before


async def test_list_and_delete(api: TestClient) -> None:
    for wid in ("c", "a", "b"):
        await put_workflow(api, wid)
    r = await api.get("/v1/workflows", params={"limit": "2"})
    page = await r.json()
    WorkflowPage.model_validate(page)
    assert [w["id"] for w in page["items"]] == ["a", "b"] and page["next_cursor"] == "b"
    r = await api.get("/v1/workflows", params={"cursor": "b"})
    page = await r.json()
    assert [w["id"] for w in page["items"]] == ["c"] and page["next_cursor"] is None
    assert (await api.delete("/v1/workflows/a")).status == 204
    await problem(await api.get("/v1/workflows/a"), 404)
    await problem(await api.delete("/v1/workflows/a"), 404)
    r = await api.get("/v1/workflows")
    assert [w["id"] for w in (await r.json())["items"]] == ["b", "c"]


async def test_a_workflow_in_use_cannot_be_deleted(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    before = await log_length(api)
    err = await problem(await api.delete("/v1/workflows/scan"), 409)
    assert "nightly" in err["detail"]
    assert await log_length(api) == before
    await api.delete("/v1/schedules/nightly")
    assert (await api.delete("/v1/workflows/scan")).status == 204

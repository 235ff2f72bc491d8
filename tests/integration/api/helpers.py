from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

WORKFLOW: dict[str, Any] = {"name": "scan", "target": {"type": "none"}}
SPEC: dict[str, Any] = {"cron": ["0 2 * * *"], "timezone": "Europe/Berlin"}


async def put_workflow(api: TestClient, wid: str = "scan", **extra: Any) -> dict[str, Any]:
    r = await api.put(f"/v1/workflows/{wid}", json={**WORKFLOW, **extra})
    assert r.status in (200, 201), await r.text()
    body: dict[str, Any] = await r.json()
    return body


async def create_schedule(api: TestClient, sid: str = "nightly", **extra: Any) -> dict[str, Any]:
    body = {"id": sid, "workflow_id": "scan", "spec": SPEC, **extra}
    r = await api.post("/v1/schedules", json=body)
    assert r.status == 201, await r.text()
    created: dict[str, Any] = await r.json()
    return created


async def log_length(api: TestClient) -> int:
    from service.api.context import KEYS, REDIS

    app = api.server.app
    assert app is not None
    keys = app[KEYS]
    total = 0
    for p in range(keys.partitions):
        total += int(await app[REDIS].xlen(keys.log(p)))
    return total


async def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = await response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body

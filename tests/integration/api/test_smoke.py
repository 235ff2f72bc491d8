from __future__ import annotations

from aiohttp.test_utils import TestClient

WORKFLOW = {"name": "scan", "target": {"type": "none"}}


async def test_create_and_get_schedule(api: TestClient) -> None:
    r = await api.put("/v1/workflows/scan", json=WORKFLOW)
    assert r.status == 201, await r.text()
    r = await api.post(
        "/v1/schedules",
        json={
            "id": "nightly",
            "workflow_id": "scan",
            "spec": {"cron": ["0 2 * * *"], "timezone": "Europe/Berlin"},
        },
    )
    body = await r.json()
    assert r.status == 201, body
    assert body["id"] == "nightly"
    assert body["next_run_at"] == "2026-01-16T01:00:00Z"
    assert r.headers["ETag"] == '"1"'
    r = await api.get("/v1/schedules/nightly")
    assert (await r.json())["version"] == 1

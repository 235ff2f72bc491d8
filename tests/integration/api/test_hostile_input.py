"""Odd and hostile input gets a 4xx problem, never a 500, and nothing is appended."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.integration.api.helpers import SPEC, log_length, put_workflow

NESTED: object = 1
for _ in range(200):
    NESTED = [NESTED]

CASES = [
    ("GET", "/v1/events?after=99999999999999999999999-0", None),
    ("GET", "/v1/events?after=-1--1", None),
    ("GET", "/v1/events/stream?after=99999999999999999999999-0", None),
    ("GET", "/v1/events/stream?after=x&type=" + "A," * 500, None),
    ("GET", "/v1/schedules/nightly?at=yesterday", None),
    ("GET", "/v1/schedules/nightly?position=1-2-3", None),
    ("GET", "/v1/schedules/nightly/history?cursor=-1", None),
    ("GET", "/v1/schedules?cursor=%00%ff[(", None),
    ("GET", "/v1/schedules?limit=99999999999999999999", None),
    ("GET", "/v1/schedules/nightly/next-runs?count=-5", None),
    ("GET", "/v1/schedules/nightly/fires?from=0&to=1", None),
    ("GET", "/v1/runs?cursor=zzz", None),
    (
        "POST",
        "/v1/schedules",
        {"workflow_id": "scan", "spec": {"cron": ["0 2 * * *"], "jitter": "99999999999d"}},
    ),
    ("POST", "/v1/schedules", {"workflow_id": "scan", "spec": {"intervals": [{"every": 1e300}]}}),
    ("POST", "/v1/schedules", {"workflow_id": "scan", "spec": SPEC, "max_actions": 10**40}),
    ("POST", "/v1/schedules", {"workflow_id": "scan", "spec": {"cron": ["* * * * * * * *"]}}),
    ("POST", "/v1/schedules", {"workflow_id": "scan", "spec": {"cron": ["\u0000 2 * * *"]}}),
    ("POST", "/v1/schedules", {"workflow_id": "scan", "spec": {"cron": [""]}}),
    ("POST", "/v1/schedules", {"workflow_id": "scan", "spec": {"cron": "0 2 * * *"}}),
    (
        "POST",
        "/v1/schedules",
        {
            "workflow_id": "scan",
            "spec": {
                "cron": ["0 2 * * *"],
                "start_at": "9999-12-31T23:59:59Z",
                "end_at": "1970-01-01T00:00:00Z",
            },
        },
    ),
    ("POST", "/v1/schedules", {"workflow_id": ["scan"], "spec": SPEC}),
    ("POST", "/v1/schedules", {"workflow_id": "scan", "spec": SPEC, "tags": "x"}),
    ("POST", "/v1/schedules", {"workflow_id": "scan", "spec": SPEC, "input": {"a": NESTED}}),
    ("POST", "/v1/specs/preview", {"spec": {"cron": ["0 0 29 2 *"]}, "count": 1000}),
    (
        "POST",
        "/v1/specs/preview",
        {"spec": {"cron": ["0 2 * * *"]}, "after": "0001-01-01T00:00:00Z"},
    ),
    (
        "POST",
        "/v1/schedules/nightly/backfill",
        {"start": "0001-01-01T00:00:00Z", "end": "9999-01-01T00:00:00Z"},
    ),
    ("PATCH", "/v1/schedules/nightly", {"spec": None}),
    ("PATCH", "/v1/schedules/nightly", {"policy": {"overlap": None, "catchup_max": -1}}),
    ("PUT", "/v1/workflows/w2", {"target": {"type": "http", "url": "http://" + "a" * 3000}}),
    ("PUT", "/v1/workflows/w2", {"target": {"type": "none"}, "input_schema": {"$ref": "#/x"}}),
    ("POST", "/v1/runs/nope/cancel", {"terminate": "yes"}),
]


@pytest.mark.parametrize(("method", "path", "body"), CASES)
async def test_hostile_input_is_a_client_error(
    api: TestClient, method: str, path: str, body: object
) -> None:
    await put_workflow(api)
    await api.post("/v1/schedules", json={"id": "nightly", "workflow_id": "scan", "spec": SPEC})
    before = await log_length(api)
    r = await api.request(method, path, json=body)
    text = await r.text()
    assert r.status < 500, (r.status, text)
    if r.status >= 400:
        assert r.headers["Content-Type"].startswith("application/problem+json"), text
        assert await log_length(api) == before

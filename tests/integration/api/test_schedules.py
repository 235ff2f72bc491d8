"""Schedule endpoints against a real Redis, through the HTTP API."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from service.api.models import HistoryPage, SchedulePage, ScheduleView
from tests.integration.api.helpers import (
    SPEC,
    create_schedule,
    log_length,
    problem,
    put_workflow,
)


async def test_create_returns_the_view_with_next_runs(api: TestClient) -> None:
    await put_workflow(api)
    r = await api.post(
        "/v1/schedules",
        json={
            "id": "nightly",
            "name": "Nightly scan",
            "workflow_id": "scan",
            "spec": SPEC,
            "tags": ["team-a", "prod"],
            "input": {"depth": 2},
            "policy": {"catchup_window": "2h", "overlap": "buffer_one"},
        },
    )
    body = await r.json()
    assert r.status == 201, body
    ScheduleView.model_validate(body)
    assert r.headers["Location"] == "/v1/schedules/nightly"
    assert r.headers["ETag"] == '"1"'
    assert body["status"] == "active" and body["paused"] is False
    assert body["tags"] == ["prod", "team-a"]
    assert body["policy"]["catchup_window"] == "2h"
    assert body["policy"]["overlap"] == "buffer_one"
    # NOW is 2026-01-15T12:00Z; 02:00 Berlin (UTC+1 in winter) is 01:00Z
    assert body["next_run_at"] == "2026-01-16T01:00:00Z"
    assert body["next_run_times"][:2] == ["2026-01-16T01:00:00Z", "2026-01-17T01:00:00Z"]
    assert body["spec"]["description"]


async def test_create_without_id_generates_one(api: TestClient) -> None:
    await put_workflow(api)
    r = await api.post("/v1/schedules", json={"workflow_id": "scan", "spec": SPEC})
    body = await r.json()
    assert r.status == 201
    assert body["id"].startswith("sch_")
    r = await api.get(f"/v1/schedules/{body['id']}")
    assert r.status == 200


async def test_create_twice_is_a_conflict_and_appends_nothing(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    before = await log_length(api)
    r = await api.post("/v1/schedules", json={"id": "nightly", "workflow_id": "scan", "spec": SPEC})
    await problem(r, 409)
    assert await log_length(api) == before


async def test_idempotency_key_returns_the_first_response(api: TestClient) -> None:
    await put_workflow(api)
    body = {"workflow_id": "scan", "spec": SPEC}
    headers = {"Idempotency-Key": "create-nightly-1"}
    first = await api.post("/v1/schedules", json=body, headers=headers)
    assert first.status == 201
    first_body = await first.json()
    before = await log_length(api)
    second = await api.post("/v1/schedules", json=body, headers=headers)
    assert second.status == 201
    assert await second.json() == first_body
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await log_length(api) == before
    reused = await api.post("/v1/schedules", json={**body, "name": "other"}, headers=headers)
    err = await problem(reused, 422)
    assert "Idempotency-Key" in err["detail"]
    assert await log_length(api) == before


async def test_list_filters_and_paginates_in_stable_order(api: TestClient) -> None:
    await put_workflow(api)
    await put_workflow(api, "bill")
    for i in range(7):
        await create_schedule(api, f"s{i}", tags=["even"] if i % 2 == 0 else ["odd"])
    await create_schedule(api, "b1", workflow_id="bill")
    await api.post("/v1/schedules/s3/pause", json={"note": "holiday"})

    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        r = await api.get("/v1/schedules", params=params)
        page = await r.json()
        SchedulePage.model_validate(page)
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(["b1", *[f"s{i}" for i in range(7)]])

    async def ids(**params: str) -> list[str]:
        r = await api.get("/v1/schedules", params=params)
        assert r.status == 200
        return [item["id"] for item in (await r.json())["items"]]

    assert await ids(workflow_id="bill") == ["b1"]
    assert await ids(tag="even") == ["s0", "s2", "s4", "s6"]
    assert await ids(status="paused") == ["s3"]
    assert await ids(status="active", tag="odd") == ["s1", "s5"]
    assert await ids(workflow_id="scan", tag="odd", status="paused") == ["s3"]


async def test_list_rejects_bad_filters(api: TestClient) -> None:
    err = await problem(await api.get("/v1/schedules", params={"status": "sleeping"}), 422)
    assert err["errors"][0]["field"] == "status"
    err = await problem(await api.get("/v1/schedules", params={"limit": "0"}), 422)
    assert err["errors"][0]["field"] == "limit"
    err = await problem(await api.get("/v1/schedules", params={"limit": "x"}), 422)
    assert err["errors"][0]["field"] == "limit"


async def test_patch_merges_and_checks_if_match(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api, tags=["a"])
    r = await api.patch(
        "/v1/schedules/nightly",
        json={"spec": {"cron": ["30 3 * * *"]}, "name": "renamed"},
        headers={"If-Match": '"1"'},
    )
    body = await r.json()
    assert r.status == 200, body
    assert body["spec"]["cron"] == ["30 3 * * *"]
    assert body["spec"]["timezone"] == "Europe/Berlin"  # merge patch keeps siblings
    assert body["name"] == "renamed" and body["version"] == 2
    assert r.headers["ETag"] == '"2"'
    before = await log_length(api)
    stale = await api.patch(
        "/v1/schedules/nightly", json={"name": "x"}, headers={"If-Match": '"1"'}
    )
    err = await problem(stale, 412)
    assert err["current_version"] == 2
    assert await log_length(api) == before
    # null removes a field (back to its default)
    r = await api.patch("/v1/schedules/nightly", json={"tags": None})
    assert (await r.json())["tags"] == []


async def test_patch_that_changes_nothing_appends_nothing(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    before = await log_length(api)
    r = await api.patch("/v1/schedules/nightly", json={"spec": SPEC})
    assert r.status == 200
    assert (await r.json())["version"] == 1
    assert await log_length(api) == before


async def test_patch_errors_name_the_field(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    before = await log_length(api)
    cases = [
        ({"spec": {"timezone": "Mars/Olympus"}}, "spec.timezone", "Mars/Olympus"),
        ({"spec": {"cron": ["61 * * * *"]}}, "spec.cron.0", "minute"),
        ({"paused": True}, "paused", "pause"),
        ({"id": "other"}, "id", "cannot change"),
        ({"colour": "red"}, "colour", "not permitted"),
        ({"workflow_id": "nope"}, "workflow_id", "does not exist"),
        ({"max_actions": 0}, "max_actions", "greater than or equal to 1"),
    ]
    for patch, field, words in cases:
        err = await problem(await api.patch("/v1/schedules/nightly", json=patch), 422)
        assert err["errors"][0]["field"] == field, (patch, err)
        assert words in err["errors"][0]["message"], (patch, err)
    await problem(await api.patch("/v1/schedules/missing", json={"name": "x"}), 404)
    assert await log_length(api) == before


async def test_pause_resume_with_note_and_history(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    r = await api.post(
        "/v1/schedules/nightly/pause", json={"note": "maintenance"}, headers={"X-Actor": "alice"}
    )
    body = await r.json()
    assert body["status"] == "paused" and body["note"] == "maintenance"
    assert body["next_run_at"] is None
    again = await api.post("/v1/schedules/nightly/pause")  # pausing a paused schedule: no event
    assert (await again.json())["version"] == 2
    r = await api.post("/v1/schedules/nightly/resume", json={"note": "done"})
    assert (await r.json())["status"] == "active"
    r = await api.get("/v1/schedules/nightly/history")
    page = await r.json()
    HistoryPage.model_validate(page)
    assert [i["type"] for i in page["items"]] == [
        "ScheduleCreated",
        "SchedulePaused",
        "ScheduleResumed",
    ]
    paused = page["items"][1]
    assert paused["actor"] == "alice" and paused["v"] == 2
    assert paused["data"] == {"note": "maintenance", "cause": "manual", "run_id": None}
    assert paused["at"].endswith("Z")


async def test_history_paginates(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    for i in range(4):
        await api.patch("/v1/schedules/nightly", json={"name": f"n{i}"})
    r = await api.get("/v1/schedules/nightly/history", params={"limit": "3"})
    page = await r.json()
    assert len(page["items"]) == 3 and page["next_cursor"] == "3"
    r = await api.get("/v1/schedules/nightly/history", params={"cursor": "3", "limit": "3"})
    page = await r.json()
    assert [i["data"]["schedule"]["name"] for i in page["items"]] == ["n2", "n3"]
    assert page["next_cursor"] is None
    assert page["items"][0]["data"]["changed"] == ["name"]


async def test_delete_then_404_and_recreate(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    r = await api.delete("/v1/schedules/nightly")
    assert r.status == 204
    await problem(await api.get("/v1/schedules/nightly"), 404)
    await problem(await api.delete("/v1/schedules/nightly"), 404)
    r = await api.get("/v1/schedules")
    assert (await r.json())["items"] == []
    history = await (await api.get("/v1/schedules/nightly/history")).json()
    assert history["items"][-1]["type"] == "ScheduleDeleted"
    again = await create_schedule(api)
    assert again["version"] == 3  # versions keep counting across a re-create


async def test_next_runs(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    r = await api.get(
        "/v1/schedules/nightly/next-runs", params={"count": "3", "after": "2026-03-28T00:00:00Z"}
    )
    body = await r.json()
    assert r.status == 200, body
    # Berlin moves to summer time on 2026-03-29: 02:00 does not exist that night
    assert [t["nominal"] for t in body["times"]] == [
        "2026-03-28T01:00:00Z",
        "2026-03-29T01:00:00Z",
        "2026-03-30T00:00:00Z",
    ]
    err = await problem(
        await api.get("/v1/schedules/nightly/next-runs", params={"after": "yesterday"}), 422
    )
    assert err["errors"][0]["field"] == "after"
    await problem(await api.get("/v1/schedules/nope/next-runs"), 404)


async def test_bad_input_is_rejected_with_the_field_and_nothing_appended(api: TestClient) -> None:
    await put_workflow(
        api,
        "typed",
        input_schema={
            "type": "object",
            "properties": {"depth": {"type": "integer"}},
            "required": ["depth"],
        },
    )
    before = await log_length(api)
    base = {"workflow_id": "typed", "spec": SPEC, "input": {"depth": 1}}
    cases = [
        ({**base, "spec": {"cron": ["0 2 * * *"], "timezone": "Mars/Olympus"}}, "spec.timezone"),
        ({**base, "spec": {"cron": ["0 25 * * *"]}}, "spec.cron.0"),
        ({**base, "spec": {}}, "spec"),
        ({**base, "unknown": 1}, "unknown"),
        ({**base, "input": {"depth": "deep"}}, "input.depth"),
        ({**base, "input": {}}, "input"),
        ({**base, "workflow_id": "ghost"}, "workflow_id"),
        ({**base, "policy": {"overlap": "sometimes"}}, "policy.overlap"),
        ({**base, "policy": {"catchup_window": "soon"}}, "policy.catchup_window"),
        ({**base, "id": "no spaces"}, "id"),
        ({**base, "tags": ["bad tag"]}, "tags"),
        ({"spec": SPEC}, "workflow_id"),
    ]
    for body, field in cases:
        err = await problem(await api.post("/v1/schedules", json=body), 422)
        assert err["errors"][0]["field"] == field, (body, err)
    malformed = await api.post(
        "/v1/schedules", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    err = await problem(malformed, 422)
    assert err["errors"][0]["field"] == "body" and "malformed JSON" in err["detail"]
    err = await problem(await api.post("/v1/schedules", json=[1, 2]), 422)
    assert err["errors"][0]["field"] == "body"
    huge = {**base, "description": "x" * (300 * 1024)}
    err = await problem(await api.post("/v1/schedules", json=huge), 413)
    assert "262144" in err["detail"]
    assert await log_length(api) == before


async def test_bad_headers_are_rejected(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    err = await problem(
        await api.patch("/v1/schedules/nightly", json={"name": "x"}, headers={"If-Match": "abc"}),
        422,
    )
    assert err["errors"][0]["field"] == "If-Match"
    err = await problem(
        await api.post(
            "/v1/schedules",
            json={"workflow_id": "scan", "spec": SPEC},
            headers={"Idempotency-Key": "k" * 300},
        ),
        422,
    )
    assert err["errors"][0]["field"] == "Idempotency-Key"


async def test_unknown_ids_are_404_problems(api: TestClient) -> None:
    for method, path in [
        ("GET", "/v1/schedules/nope"),
        ("DELETE", "/v1/schedules/nope"),
        ("POST", "/v1/schedules/nope/pause"),
        ("POST", "/v1/schedules/nope/resume"),
        ("GET", "/v1/schedules/nope/history"),
        ("GET", "/v1/schedules/..%2f/history"),
        ("GET", "/v1/nothing-here"),
    ]:
        await problem(await api.request(method, path), 404)


async def test_concurrent_patches_with_the_same_if_match_one_wins(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    results = await asyncio.gather(
        *[
            api.patch(
                "/v1/schedules/nightly", json={"name": f"writer-{i}"}, headers={"If-Match": '"1"'}
            )
            for i in range(8)
        ]
    )
    statuses = sorted(r.status for r in results)
    assert statuses == [200] + [412] * 7
    history = await (await api.get("/v1/schedules/nightly/history")).json()
    assert len(history["items"]) == 2

"""Ids of namespaces other than ``default`` at the API's edge.

A client names resources by bare ids; the API keeps them as ``NS/ID`` outside
``default`` and shows the bare id back, so the same id lives in two namespaces, and a
resource of another namespace answers exactly like a missing one. Without tokens,
any namespace may be named.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from tests.integration.api.helpers import SPEC, WORKFLOW
from tests.integration.api.test_stream import next_message

HEADER = "Cronstream-Namespace"
IN_ACME = {HEADER: "acme"}


async def seed(api: TestClient, headers: dict[str, str], name: str) -> dict[str, Any]:
    r = await api.put("/v1/workflows/scan", json={**WORKFLOW, "name": name}, headers=headers)
    assert r.status == 201, await r.text()
    body = {"id": "nightly", "workflow_id": "scan", "spec": SPEC, "name": name}
    r = await api.post("/v1/schedules", json=body, headers=headers)
    assert r.status == 201, await r.text()
    schedule: dict[str, Any] = await r.json()
    r = await api.post("/v1/schedules/nightly/trigger", json={}, headers=headers)
    assert r.status == 201, await r.text()
    schedule["run_id"] = (await r.json())["run_id"]
    return schedule


async def test_the_same_ids_live_in_two_namespaces_apart(api: TestClient) -> None:
    mine = await seed(api, {}, "mine")
    theirs = await seed(api, IN_ACME, "theirs")
    assert theirs["id"] == "nightly" and theirs["workflow_id"] == "scan"
    for headers, name in (({}, "mine"), (IN_ACME, "theirs")):
        for path in ("/v1/schedules/nightly", "/v1/workflows/scan"):
            r = await api.get(path, headers=headers)
            assert r.status == 200 and (await r.json())["name"] == name
    r = await api.get(f"/v1/runs/{theirs['run_id']}", headers=IN_ACME)
    run = await r.json()
    assert (run["schedule_id"], run["workflow_id"]) == ("nightly", "scan")
    assert (await api.get(f"/v1/runs/{mine['run_id']}", headers=IN_ACME)).status == 404
    assert (await api.get(f"/v1/runs/{theirs['run_id']}")).status == 404


async def test_lists_show_only_the_namespace_s_own(api: TestClient) -> None:
    mine = await seed(api, {}, "mine")
    theirs = await seed(api, IN_ACME, "theirs")
    for headers, seeded in (({}, mine), (IN_ACME, theirs)):
        for path in ("/v1/schedules", "/v1/workflows"):
            items = (await (await api.get(path, headers=headers)).json())["items"]
            assert [i["name"] for i in items] == [seeded["name"]]
        for path in ("/v1/runs", "/v1/schedules/nightly/runs", "/v1/runs?workflow_id=scan"):
            items = (await (await api.get(path, headers=headers)).json())["items"]
            assert [i["id"] for i in items] == [seeded["run_id"]], path


async def test_another_namespace_s_resource_answers_as_a_missing_one(api: TestClient) -> None:
    theirs = await seed(api, IN_ACME, "theirs")
    missing = {
        ("GET", "/v1/schedules/nightly"),
        ("GET", "/v1/schedules/nightly/next-runs"),
        ("GET", "/v1/schedules/nightly/history"),
        ("POST", "/v1/schedules/nightly/pause"),
        ("DELETE", "/v1/schedules/nightly"),
        ("GET", "/v1/workflows/scan"),
        ("DELETE", "/v1/workflows/scan"),
        ("POST", "/v1/workflows/scan/runs"),
        ("POST", f"/v1/runs/{theirs['run_id']}/cancel"),
        ("POST", f"/v1/runs/{theirs['run_id']}/retry"),
    }
    for method, path in sorted(missing):
        r = await api.request(method, path)
        text = await r.text()
        assert r.status == 404, (method, path, text)
        assert "acme" not in text and "theirs" not in text, text
    r = await api.get("/v1/schedules/nightly", headers=IN_ACME)
    assert r.status == 200 and (await r.json())["status"] == "active"


async def test_a_schedule_names_a_workflow_of_its_own_namespace(api: TestClient) -> None:
    r = await api.put("/v1/workflows/scan", json=WORKFLOW)
    assert r.status == 201
    body = {"id": "nightly", "workflow_id": "scan", "spec": SPEC}
    r = await api.post("/v1/schedules", json=body, headers=IN_ACME)
    assert r.status == 422, await r.text()
    r = await api.post("/v1/schedules", json={**body, "workflow_id": "acme/scan"})
    assert r.status == 422, await r.text()
    await seed(api, IN_ACME, "theirs")
    r = await api.patch("/v1/schedules/nightly", json={"name": "renamed"}, headers=IN_ACME)
    assert r.status == 200, await r.text()
    assert (await r.json())["workflow_id"] == "scan"


async def test_pages_of_a_list_skip_other_namespaces_ids_around_their_own(
    api: TestClient,
) -> None:
    # ids that sort next to acme's (acme/...): before the separator, after it, equal
    mine = ["acme", "acme-1", "acme.x", "acme0", "zed"]
    for headers, ids in (({}, mine), (IN_ACME, ["a", "acme", "b"])):
        r = await api.put("/v1/workflows/scan", json=WORKFLOW, headers=headers)
        assert r.status == 201
        for sid in ids:
            body = {"id": sid, "workflow_id": "scan", "spec": SPEC}
            r = await api.post("/v1/schedules", json=body, headers=headers)
            assert r.status == 201, await r.text()
    for headers, ids in (({}, mine), (IN_ACME, ["a", "acme", "b"])):
        seen: list[str] = []
        cursor = ""
        for _ in range(10):
            page = await (await api.get(f"/v1/schedules?limit=2{cursor}", headers=headers)).json()
            seen += [i["id"] for i in page["items"]]
            if page["next_cursor"] is None:
                break
            cursor = f"&cursor={page['next_cursor']}"
        assert seen == sorted(ids)


async def test_the_feed_and_the_stream_show_only_the_namespace_s_events(
    api: TestClient,
) -> None:
    await seed(api, {}, "mine")
    theirs = await seed(api, IN_ACME, "theirs")
    r = await api.get("/v1/events", params={"limit": "1000"}, headers=IN_ACME)
    page = await r.json()
    sids = {item["sid"] for item in page["items"]}
    assert sids == {"scan", "nightly"}, sids
    assert "mine" not in await r.text()
    everything = await (await api.get("/v1/events", params={"limit": "1000"})).json()
    assert len(everything["items"]) == len(page["items"])  # the same, in default
    assert theirs["run_id"] not in str(everything)
    # a page of few wanted events among many others still moves the cursor to the end
    small = await (await api.get("/v1/events", params={"limit": "1"}, headers=IN_ACME)).json()
    assert small["items"][0]["position"] == page["items"][0]["position"]
    assert page["next"] == everything["next"]
    resp = await api.get("/v1/events/stream", params={"schedule": "nightly"}, headers=IN_ACME)
    try:
        assert resp.status == 200
        first = await next_message(resp)
        data = orjson.loads(first["data"])
        assert (data["sid"], data["data"]["schedule"]["name"]) == ("nightly", "theirs")
    finally:
        resp.close()

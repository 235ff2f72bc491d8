"""/openapi.json validates and says what the API does; /docs lets a person try it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from tests.integration.api.helpers import SPEC, create_schedule, log_length, problem, put_workflow


async def document(api: TestClient) -> dict[str, Any]:
    r = await api.get("/openapi.json")
    assert r.status == 200
    doc: dict[str, Any] = await r.json()
    return doc


def param(doc: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    for p in doc["paths"][path][method]["parameters"]:
        if p["name"] == name:
            schema: dict[str, Any] = p["schema"]
            return schema
    raise AssertionError(f"{method} {path} has no parameter {name}")


async def test_the_served_document_validates(api: TestClient) -> None:
    validate(await document(api))


async def test_duration_defaults_are_written_as_durations(api: TestClient) -> None:
    schemas = (await document(api))["components"]["schemas"]
    retry = schemas["RetryPolicy-Input"]["properties"]
    assert retry["initial_interval"]["default"] == "1s"
    assert retry["max_interval"]["default"] == "5m"
    assert schemas["SchedulePolicy-Input"]["properties"]["catchup_window"]["default"] == "365d"
    assert schemas["Spec"]["properties"]["jitter"]["default"] == "0s"


async def test_every_operation_documents_its_answers(api: TestClient) -> None:
    doc = await document(api)
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            assert "default" not in op["responses"], (method, path)
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    assert "application/problem+json" in answer["content"], (method, path, status)
    responses = doc["paths"]["/v1/schedules/{id}/trigger"]["post"]["responses"]
    assert {"200", "201", "404", "422", "503"} <= set(responses)
    assert {"200", "201"} <= set(doc["paths"]["/v1/workflows/{id}/runs"]["post"]["responses"])
    assert {"200", "201", "412"} <= set(doc["paths"]["/v1/workflows/{id}"]["put"]["responses"])
    assert {"202", "404", "412"} <= set(doc["paths"]["/v1/schedules/{id}"]["patch"]["responses"])
    assert "409" in doc["paths"]["/v1/workflows/{id}"]["delete"]["responses"]
    stream = doc["paths"]["/v1/events/stream"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]


async def test_the_statuses_answered_are_the_documented_ones(api: TestClient) -> None:
    doc = await document(api)
    put = await api.put("/v1/workflows/scan", json={"name": "scan", "target": {"type": "none"}})
    assert put.status == 201 and "201" in doc["paths"]["/v1/workflows/{id}"]["put"]["responses"]
    await create_schedule(api)
    fired = await api.post("/v1/schedules/nightly/trigger", json={})
    assert fired.status == 201
    assert "201" in doc["paths"]["/v1/schedules/{id}/trigger"]["post"]["responses"]
    key = {"Idempotency-Key": "run-once"}
    first = await api.post("/v1/workflows/scan/runs", json={}, headers=key)
    again = await api.post("/v1/workflows/scan/runs", json={}, headers=key)
    assert (first.status, again.status) == (201, 200)
    assert (await again.json())["duplicate"] is True
    assert "200" in doc["paths"]["/v1/workflows/{id}/runs"]["post"]["responses"]


async def test_a_method_a_path_lacks_answers_405_with_allow(api: TestClient) -> None:
    r = await api.put("/v1/schedules", json={})
    await problem(r, 405)
    assert set(re.split(r",\s*", r.headers["Allow"])) == {"GET", "POST"}
    r = await api.post("/v1/schedules/nightly")
    await problem(r, 405)
    assert set(re.split(r",\s*", r.headers["Allow"])) == {"GET", "PATCH", "DELETE"}


async def test_the_patch_body_is_a_merge_patch_with_every_member_optional(
    api: TestClient,
) -> None:
    doc = await document(api)
    body = doc["paths"]["/v1/schedules/{id}"]["patch"]["requestBody"]["content"]
    assert set(body) == {"application/merge-patch+json", "application/json"}
    ref = body["application/merge-patch+json"]["schema"]["$ref"]
    patch = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert "required" not in patch
    assert {"workflow_id", "spec", "policy", "name"} <= set(patch["properties"])
    for member in patch["properties"].values():
        assert {"type": "null"} in member["anyOf"]  # null removes a member
    spec_ref = patch["properties"]["spec"]["anyOf"][0]["$ref"]
    assert "required" not in doc["components"]["schemas"][spec_ref.rsplit("/", 1)[-1]]
    # and the API takes such a patch, sent as merge-patch
    await put_workflow(api)
    await create_schedule(api)
    r = await api.patch(
        "/v1/schedules/nightly",
        data=b'{"name": "renamed", "spec": {"timezone": "UTC"}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status == 200, await r.text()
    changed = await r.json()
    assert (changed["name"], changed["spec"]["timezone"]) == ("renamed", "UTC")


async def test_parameters_carry_the_limits_the_api_enforces(api: TestClient) -> None:
    doc = await document(api)
    limit = param(doc, "/v1/schedules", "get", "limit")
    assert (limit["type"], limit["minimum"], limit["maximum"]) == ("integer", 1, 500)
    assert param(doc, "/v1/events", "get", "limit")["maximum"] == 1000
    key = param(doc, "/v1/schedules", "post", "Idempotency-Key")
    assert (key["minLength"], key["maxLength"]) == (1, 255)
    if_match = param(doc, "/v1/schedules/{id}", "patch", "If-Match")
    assert re.fullmatch(if_match["pattern"], '"3"') and not re.fullmatch(if_match["pattern"], "3x")
    assert param(doc, "/v1/schedules/{id}/fires", "get", "from")["format"] == "date-time"
    assert param(doc, "/v1/schedules/{id}", "get", "at")["format"] == "date-time"
    assert param(doc, "/v1/schedules/{id}", "get", "id")["pattern"].startswith("^[A-Za-z0-9]")
    assert param(doc, "/v1/runs", "get", "status")["enum"][0] == "buffered"
    # and the API holds to them
    await put_workflow(api)
    await create_schedule(api)
    for path, field in [
        ("/v1/schedules?limit=501", "limit"),
        ("/v1/schedules?limit=+5", "limit"),
        ("/v1/runs?status=", "status"),
        ("/v1/schedules?cursor=%00", "cursor"),
        ("/v1/events?after=1-2.3-4", "after"),
    ]:
        body = await problem(await api.get(path), 422)
        assert body["errors"][0]["field"] == field, path
    body = await problem(
        await api.patch("/v1/schedules/nightly", json={"name": "x"}, headers={"If-Match": "3x"}),
        422,
    )
    assert body["errors"][0]["field"] == "If-Match"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/schedules/nightly/backfill", {"start": 0, "end": "2026-01-02T00:00:00Z"}, "start"),
        ("/v1/schedules/nightly/backfill", {"start": "2026-01-01T00:00:00Z", "end": 1e12}, "end"),
        ("/v1/specs/preview", {"spec": SPEC, "after": 1_768_478_400_000}, "after"),
        (
            "/v1/schedules",
            {"id": "other", "workflow_id": "scan", "spec": {**SPEC, "start_at": 0}},
            "spec.start_at",
        ),
    ],
)
async def test_instants_in_bodies_are_rfc3339_strings_only(
    api: TestClient, path: str, body: dict[str, Any], field: str
) -> None:
    await put_workflow(api)
    await create_schedule(api)
    before = await log_length(api)
    found = await problem(await api.post(path, json=body), 422)
    assert [e["field"] for e in found["errors"]] == [field]
    assert "RFC 3339" in found["errors"][0]["message"]
    assert await log_length(api) == before


async def test_a_patch_cannot_give_an_instant_as_a_number(api: TestClient) -> None:
    await put_workflow(api)
    await create_schedule(api)
    found = await problem(
        await api.patch("/v1/schedules/nightly", json={"spec": {"end_at": 4_000_000_000_000}}),
        422,
    )
    assert [e["field"] for e in found["errors"]] == ["spec.end_at"]


async def test_the_docs_page_lists_operations_from_the_document(api: TestClient) -> None:
    r = await api.get("/docs")
    assert r.status == 200
    assert r.content_type == "text/html"
    page = await r.text()
    assert 'href="/openapi.json"' in page
    assert 'fetch("/openapi.json")' in page  # the operations come from the document
    assert "fetch(url, init)" in page  # and the form sends the request
    # everything it loads is on this server: no external script, style or fetch
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert not re.search(r"""fetch\(["']https?:""", page)


async def test_every_v1_operation_takes_the_namespace_header(api: TestClient) -> None:
    doc = await (await api.get("/openapi.json")).json()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            headers = {p["name"]: p for p in op["parameters"] if p["in"] == "header"}
            named = "Cronstream-Namespace" in headers
            assert named == path.startswith("/v1"), f"{method} {path}"
            if named:
                schema = headers["Cronstream-Namespace"]["schema"]
                assert re.fullmatch(schema["pattern"].strip("^$"), "team-a")
                assert not re.fullmatch(schema["pattern"].strip("^$"), "a/b")
                assert "422" in op["responses"], f"{method} {path}"

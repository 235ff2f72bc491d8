"""Namespaces on the API: a token acts only in its own namespaces.

Every /v1 route, called with a token that is not for the namespace the request acts
in, answers 403 before the handler runs: nothing about the resource in the body,
nothing appended. A token for another namespace acts in that one: another
namespace's resource answers exactly as a missing one (404), and its lists hold none
of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.routing import Route
from service.clock import FixedClock
from service.config import Settings
from service.domain.tokens import Scope
from tests.integration.api.helpers import SPEC, log_length, problem
from tests.integration.api.test_auth import V1, Secured, secured_app
from tests.tokens import bearer

HEADER = "Cronstream-Namespace"


@pytest.fixture
async def seeded(redis: Redis, settings: Settings, clock: FixedClock) -> AsyncIterator[Secured]:
    """A workflow ``scan``, a schedule ``nightly`` and one run of it, in ``default``."""
    client = TestClient(TestServer(secured_app(settings, redis, clock), host="127.0.0.1"))
    await client.start_server()
    secured = Secured(client, redis, clock)
    admin = bearer(await secured.token(Scope.ADMIN))
    assert (
        await client.put("/v1/workflows/scan", json={"target": {"type": "none"}}, headers=admin)
    ).ok
    body = {"id": "nightly", "workflow_id": "scan", "spec": SPEC}
    assert (await client.post("/v1/schedules", json=body, headers=admin)).status == 201
    fired = await client.post("/v1/schedules/nightly/trigger", json={}, headers=admin)
    assert fired.status == 201, await fired.text()
    secured.run_id = (await fired.json())["run_id"]
    yield secured
    await client.close()


async def refused(seeded: Secured, r: Route, headers: dict[str, str]) -> None:
    before = await log_length(seeded.client)
    status, text = await seeded.status(r, headers)
    assert status == 403, text
    assert not any(s in text for s in ("nightly", "scan", seeded.run_id)), text
    assert await log_length(seeded.client) == before


@pytest.mark.parametrize("r", V1, ids=lambda r: f"{r.method} {r.path}")
async def test_each_route_refuses_a_namespace_the_token_is_not_for(
    seeded: Secured, r: Route
) -> None:
    default = bearer(await seeded.token(Scope.ADMIN))
    await refused(seeded, r, {**default, HEADER: "team-a"})
    elsewhere = bearer(await seeded.token(Scope.ADMIN, namespaces=("team-a",)))
    await refused(seeded, r, {**elsewhere, HEADER: "default"})
    both = bearer(await seeded.token(Scope.ADMIN, namespaces=("team-a", "default")))
    status, text = await seeded.status(r, both)
    assert status not in (401, 403, 429), text
    status, text = await seeded.status(r, {**both, HEADER: "default"})
    assert status not in (401, 403, 429), text


# the routes that name one of default's seeded resources by its id in the path
KINDS = ("schedules", "workflows", "runs")
NAMED = [
    r
    for r in V1
    if "{id}" in r.path
    and r.path.split("/")[2] in KINDS
    and (r.method, r.path) != ("PUT", "/v1/workflows/{id}")
]
LISTS = [r for r in V1 if "{id}" not in r.path and r.method == "GET"]


async def answer(seeded: Secured, r: Route, ident: str, headers: dict[str, str]) -> str:
    _, body, query = seeded.call(r)
    named = r.path.replace("{id}", ident).replace("{secret_id}", "x")
    async with seeded.client.request(
        r.method, named, json=body, params=query, headers=headers
    ) as reply:
        return f"{reply.status} {await reply.text()}"


@pytest.mark.parametrize("r", NAMED, ids=lambda r: f"{r.method} {r.path}")
async def test_another_namespace_s_resource_answers_as_a_missing_one(
    seeded: Secured, r: Route
) -> None:
    """A token for team-a only, naming default's schedule, workflow or run: the very
    answer an id that exists nowhere gets (404; a list of a schedule's runs is an empty
    page, as for a deleted schedule), and nothing appended."""
    token = bearer(await seeded.token(Scope.ADMIN, namespaces=("team-a",)))
    ident = {"schedules": "nightly", "workflows": "scan", "runs": seeded.run_id}[
        r.path.split("/")[2]
    ]
    before = await log_length(seeded.client)
    theirs = await answer(seeded, r, ident, token)
    empty = '200 {"items":[],"next_cursor":null}'
    assert theirs.startswith("404 ") or theirs == empty, theirs
    absent = await answer(seeded, r, "absent0", token)
    assert theirs == absent.replace("absent0", ident)
    assert await log_length(seeded.client) == before


@pytest.mark.parametrize("r", LISTS, ids=lambda r: f"{r.method} {r.path}")
async def test_another_namespace_s_lists_hold_none_of_default_s(seeded: Secured, r: Route) -> None:
    token = bearer(await seeded.token(Scope.ADMIN, namespaces=("team-a",)))
    path, _, query = seeded.call(r)
    async with seeded.client.get(path, params=query, headers=token) as reply:
        if r.path == "/v1/events/stream":
            assert reply.status == 200
            return  # what the stream shows is covered by test_namespace_ids
        text = await reply.text()
    assert reply.status == 200, text
    assert not any(s in text for s in ("nightly", "scan", seeded.run_id)), text


async def test_a_token_for_the_default_namespace_reads_what_was_stored_without_one(
    seeded: Secured,
) -> None:
    token = bearer(await seeded.token(Scope.SCHEDULES_READ))
    for headers in (token, {**token, HEADER: "default"}):
        r = await seeded.client.get("/v1/schedules/nightly", headers=headers)
        assert r.status == 200 and (await r.json())["id"] == "nightly"


async def test_the_refusal_says_why_and_which_header_chooses(seeded: Secured) -> None:
    token = bearer(await seeded.token(Scope.ADMIN, namespaces=("team-a", "team-b")))
    body = await problem(await seeded.client.get("/v1/schedules", headers=token), 403)
    assert HEADER in body["detail"]
    named = {**token, HEADER: "team-c"}
    body = await problem(await seeded.client.get("/v1/schedules", headers=named), 403)
    assert body["detail"] == "this token is not for namespace team-c"


@pytest.mark.parametrize("value", ["a/b", "-x", "x" * 129])
async def test_a_header_that_names_no_namespace_is_a_422_naming_it(
    seeded: Secured, value: str
) -> None:
    token = bearer(await seeded.token(Scope.ADMIN))
    r = await seeded.client.get("/v1/schedules", headers={**token, HEADER: value})
    body = await problem(r, 422)
    assert body["errors"][0]["field"] == HEADER


async def test_without_tokens_any_namespace_may_be_named(api: TestClient) -> None:
    """Under --insecure-dev: the default one works as before; in another, default's
    schedule is one that does not exist, named by its bare id."""
    assert (await api.put("/v1/workflows/scan", json={"target": {"type": "none"}})).ok
    body: dict[str, Any] = {"id": "nightly", "workflow_id": "scan", "spec": SPEC}
    made = await api.post("/v1/schedules", json=body, headers={HEADER: "default"})
    assert made.status == 201, await made.text()
    assert (await api.get("/v1/schedules/nightly")).status == 200
    other = await api.get("/v1/schedules/nightly", headers={HEADER: "team-a"})
    assert (await problem(other, 404))["detail"] == "schedule 'nightly' does not exist"
    bad = await api.get("/v1/schedules", headers={HEADER: "a/b"})
    assert (await problem(bad, 422))["errors"][0]["field"] == HEADER

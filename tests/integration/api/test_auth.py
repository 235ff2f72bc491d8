"""Bearer tokens on the API: every /v1 route asks for a token with its scope.

Refusals (401 without a valid token, 403 without the scope, 429 past the rate) come
before the handler: they say nothing about the resource asked for and append nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api import stream
from service.api.app import create_app, metrics_app
from service.api.auth import TOKENS
from service.api.routing import ROUTES, Route
from service.clock import FixedClock
from service.config import Settings
from service.domain.tokens import (
    DEFAULT_RATE,
    PREFIX,
    Rate,
    Scope,
    token_from_body,
    token_hash,
    token_id,
)
from service.store.keys import Keyspace
from service.store.tokens import Admitted, TokenStore, new_token
from tests.integration.api.helpers import SPEC, log_length, problem
from tests.tokens import bearer, make_token

V1 = [r for r in ROUTES if r.path.startswith("/v1")]
OPEN = {"/healthz", "/readyz", "/openapi.json", "/docs"}
WINDOW = {"start": "2026-01-14T00:00:00Z", "end": "2026-01-14T03:00:00Z"}
FIRES = {"from": "2026-01-14T00:00:00Z", "to": "2026-01-14T03:00:00Z"}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/schedules"): {"id": "other", "workflow_id": "scan", "spec": SPEC},
    ("PATCH", "/v1/schedules/{id}"): {"name": "renamed"},
    ("PUT", "/v1/workflows/{id}"): {"target": {"type": "none"}},
    ("POST", "/v1/schedules/{id}/backfill"): WINDOW,
    ("POST", "/v1/specs/preview"): {"spec": SPEC},
}


@dataclass
class Secured:
    client: TestClient
    redis: Redis
    clock: FixedClock
    run_id: str = ""

    async def token(self, *scopes: Scope, **extra: Any) -> str:
        return await make_token(self.redis, *scopes, now_ms=self.clock.now_ms(), **extra)

    def call(self, r: Route) -> tuple[str, Any, dict[str, str]]:
        """A request to ``r`` about the seeded schedule, workflow or run."""
        ident = {"schedules": "nightly", "workflows": "scan", "runs": self.run_id}
        path = r.path.replace("{id}", ident.get(r.path.split("/")[2], "x"))
        path = re.sub(r"\{[a-z_]+\}", "x", path)  # other path parameters
        query = FIRES if r.path.endswith("/fires") else {}
        return path, BODIES.get((r.method, r.path), {} if r.method == "POST" else None), query

    async def status(self, r: Route, headers: dict[str, str]) -> tuple[int, str]:
        path, body, query = self.call(r)
        async with self.client.request(
            r.method, path, json=body, params=query, headers=headers
        ) as answer:
            # the event stream stays open: only a refusal's body is read
            text = "" if answer.status < 400 else await answer.text()
            return answer.status, text


def secured_app(settings: Settings, redis: Redis, clock: FixedClock, **extra: Any) -> Any:
    return create_app(replace(settings, auth=True, **extra), redis, clock=clock, projector=True)


@pytest.fixture
async def secured(redis: Redis, settings: Settings, clock: FixedClock) -> AsyncIterator[Secured]:
    client = TestClient(TestServer(secured_app(settings, redis, clock), host="127.0.0.1"))
    await client.start_server()
    yield Secured(client, redis, clock)
    await client.close()


@pytest.fixture
async def seeded(secured: Secured) -> Secured:
    """A workflow ``scan``, a schedule ``nightly`` and one run of it."""
    admin = bearer(await secured.token(Scope.ADMIN))
    c = secured.client
    assert (await c.put("/v1/workflows/scan", json={"target": {"type": "none"}}, headers=admin)).ok
    body = {"id": "nightly", "workflow_id": "scan", "spec": SPEC}
    assert (await c.post("/v1/schedules", json=body, headers=admin)).status == 201
    fired = await c.post("/v1/schedules/nightly/trigger", json={}, headers=admin)
    assert fired.status == 201, await fired.text()
    secured.run_id = (await fired.json())["run_id"]
    return secured


def unscoped(routes: list[Route]) -> list[str]:
    return [f"{r.method} {r.path}" for r in routes if r.path.startswith("/v1") and r.scope is None]


def test_every_v1_route_declares_a_scope() -> None:
    assert V1 and unscoped(ROUTES) == []
    assert {r.path for r in ROUTES if r.scope is None} == OPEN


def test_a_v1_route_without_a_scope_is_found() -> None:
    bare = replace(V1[0], path="/v1/new", scope=None)
    assert unscoped([*V1, bare]) == ["GET /v1/new"]


@pytest.mark.parametrize("r", V1, ids=lambda r: f"{r.method} {r.path}")
async def test_each_route_needs_a_token_with_its_scope(seeded: Secured, r: Route) -> None:
    assert r.scope is not None
    secrets = ("nightly", "scan", seeded.run_id)
    before = await log_length(seeded.client)
    status, text = await seeded.status(r, {})
    assert status == 401, text
    assert not any(s in text for s in secrets), text
    others = [s for s in Scope if s not in (r.scope, Scope.ADMIN)]
    status, text = await seeded.status(r, bearer(await seeded.token(*others)))
    assert status == 403, text
    assert not any(s in text for s in secrets), text
    assert await log_length(seeded.client) == before
    exact = await seeded.status(r, bearer(await seeded.token(r.scope)))
    admin = await seeded.status(r, bearer(await seeded.token(Scope.ADMIN)))
    assert exact[0] not in (401, 403, 429) and admin[0] not in (401, 403, 429), (exact, admin)


async def test_no_token_is_a_problem_with_a_bearer_challenge(secured: Secured) -> None:
    r = await secured.client.get("/v1/schedules/nightly")
    body = await problem(r, 401)
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="cronstream"'
    assert "Bearer" in body["detail"]
    assert "RateLimit-Limit" not in r.headers


async def test_a_wrong_scope_is_the_same_answer_for_any_resource(seeded: Secured) -> None:
    reader = bearer(await seeded.token(Scope.RUNS_READ))
    there = await seeded.client.get("/v1/schedules/nightly", headers=reader)
    missing = await seeded.client.get("/v1/schedules/missing", headers=reader)
    assert (await problem(there, 403)) == (await problem(missing, 403))
    assert 'error="insufficient_scope", scope="schedules:read"' in there.headers["WWW-Authenticate"]


def _typo(token: str) -> str:
    i = len(PREFIX) + 5
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


async def _refused(secured: Secured, token_or_header: str) -> dict[str, Any]:
    header = token_or_header if " " in token_or_header else f"Bearer {token_or_header}"
    r = await secured.client.get("/v1/schedules", headers={"Authorization": header})
    body = await problem(r, 401)
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    return body


async def test_invalid_tokens_are_refused_with_why(secured: Secured, redis: Redis) -> None:
    valid = await secured.token(Scope.ADMIN)
    revoked = await secured.token(Scope.ADMIN)
    assert (await TokenStore(redis, Keyspace()).revoke(_id(revoked)))[0] == "revoked"
    expiring = await secured.token(Scope.ADMIN, lifetime_ms=60_000)
    cases = {
        "Basic dXNlcjpwdw==": "Bearer <token>",
        "nope": f"starts with {PREFIX}",
        PREFIX + "short": "characters",
        _typo(valid): "checksum",
        token_from_body("x" * 30): "not known",
        revoked: "revoked",
    }
    for sent, why in cases.items():
        assert why in (await _refused(secured, sent))["detail"], sent
    ok = await secured.client.get("/v1/schedules", headers=bearer(expiring))
    assert ok.status == 200
    secured.clock.advance(60_000)  # expired at expires_ms exactly, as TokenRecord.status says
    assert "expired" in (await _refused(secured, expiring))["detail"]
    assert (await secured.client.get("/v1/schedules", headers=bearer(valid))).status == 200


def _id(token: str) -> str:
    return token_id(token_hash(token))


class CountingTokens(TokenStore):
    """The real store, counting the lookups the API makes."""

    admits = 0

    async def admit(self, token: str, now_ms: int | None = None) -> Admitted:
        self.admits += 1
        return await super().admit(token, now_ms)


async def test_a_typo_is_refused_without_a_lookup(
    redis: Redis, settings: Settings, clock: FixedClock
) -> None:
    app = secured_app(settings, redis, clock)
    counting = CountingTokens(redis, Keyspace())
    app[TOKENS] = counting
    token = await make_token(redis, Scope.SCHEDULES_READ, now_ms=clock.now_ms())
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        r = await client.get("/v1/schedules", headers=bearer(_typo(token)))
        assert "checksum" in (await problem(r, 401))["detail"]
        assert counting.admits == 0
        assert (await client.get("/v1/schedules", headers=bearer(token))).status == 200
        assert counting.admits == 1


async def test_the_101st_request_in_a_minute_is_refused(secured: Secured) -> None:
    token = bearer(await secured.token(Scope.SCHEDULES_READ, rate=DEFAULT_RATE))
    for i in range(100):
        r = await secured.client.get("/v1/schedules", headers=token)
        assert r.status == 200, (i, await r.text())
        assert r.headers["RateLimit-Limit"] == "100"
        assert r.headers["RateLimit-Remaining"] == str(99 - i)
    r = await secured.client.get("/v1/schedules", headers=token)
    body = await problem(r, 429)
    assert r.headers["Retry-After"] == "1"  # one request comes back every 600 ms
    assert (r.headers["RateLimit-Remaining"], r.headers["RateLimit-Reset"]) == ("0", "60")
    assert "100 requests" in body["detail"]
    secured.clock.advance(599)
    assert (await secured.client.get("/v1/schedules", headers=token)).status == 429
    secured.clock.advance(1)
    assert (await secured.client.get("/v1/schedules", headers=token)).status == 200


async def test_a_refused_write_appends_nothing(secured: Secured) -> None:
    admin = bearer(await secured.token(Scope.ADMIN))
    workflow = {"target": {"type": "none"}}
    assert (await secured.client.put("/v1/workflows/scan", json=workflow, headers=admin)).ok
    writer = bearer(await secured.token(Scope.SCHEDULES_WRITE, rate=Rate(1, 3_600_000)))
    first = {"id": "one", "workflow_id": "scan", "spec": SPEC}
    assert (await secured.client.post("/v1/schedules", json=first, headers=writer)).status == 201
    before = await log_length(secured.client)
    second = {**first, "id": "two"}
    r = await secured.client.post("/v1/schedules", json=second, headers=writer)
    await problem(r, 429)
    assert r.headers["Retry-After"] == "3600"
    assert await log_length(secured.client) == before
    assert (await secured.client.get("/v1/schedules/two", headers=admin)).status == 404


async def test_every_answer_to_a_valid_token_tells_its_rate(secured: Secured) -> None:
    token = bearer(await secured.token(Scope.SCHEDULES_READ, rate=Rate(10, 60_000)))
    missing = await secured.client.get("/v1/schedules/missing", headers=token)
    await problem(missing, 404)
    invalid = await secured.client.get("/v1/schedules?limit=0", headers=token)
    await problem(invalid, 422)
    wrong = await secured.client.post("/v1/schedules", json={}, headers=token)
    await problem(wrong, 403)
    remaining = [r.headers["RateLimit-Remaining"] for r in (missing, invalid, wrong)]
    assert remaining == ["9", "8", "7"]
    assert all(r.headers["RateLimit-Limit"] == "10" for r in (missing, invalid, wrong))


async def test_paths_under_v1_that_match_nothing_need_a_token_too(secured: Secured) -> None:
    await problem(await secured.client.get("/v1/nothing-here"), 401)
    await problem(await secured.client.put("/v1/schedules"), 401)
    token = bearer(await secured.token(Scope.RUNS_READ))
    await problem(await secured.client.get("/v1/nothing-here", headers=token), 404)
    r = await secured.client.put("/v1/schedules", headers=token)
    await problem(r, 405)
    assert "Allow" in r.headers


async def test_health_and_docs_stay_open(secured: Secured) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/metrics"):
        r = await secured.client.get(path)
        assert r.status == 200, (path, await r.text())


async def test_metrics_can_ask_for_a_token(
    redis: Redis, settings: Settings, clock: FixedClock
) -> None:
    app = secured_app(settings, redis, clock, metrics_auth=True)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        await problem(await client.get("/metrics"), 401)
        reader = await make_token(redis, Scope.SCHEDULES_READ, now_ms=clock.now_ms())
        await problem(await client.get("/metrics", headers=bearer(reader)), 403)
        for scope in (Scope.METRICS_READ, Scope.ADMIN):
            token = await make_token(redis, scope, now_ms=clock.now_ms())
            assert (await client.get("/metrics", headers=bearer(token))).status == 200
        assert (await client.get("/healthz")).status == 200


async def test_an_open_api_asks_for_nothing(api: TestClient) -> None:
    r = await api.get("/v1/schedules")
    assert r.status == 200 and "RateLimit-Limit" not in r.headers
    r = await api.get("/v1/schedules", headers=bearer(new_token()))
    assert r.status == 200  # a token is not even looked at


async def test_admitting_without_redis_is_a_503(settings: Settings, clock: FixedClock) -> None:
    from tests.integration.api.test_outage import closed_port

    unreachable = Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=1)
    app = create_app(replace(settings, auth=True), unreachable, clock=clock, projector=False)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            r = await client.get("/v1/schedules", headers=bearer(new_token()))
            await problem(r, 503)
    finally:
        await unreachable.aclose()


async def test_the_document_declares_the_bearer_scheme_and_its_answers(api: TestClient) -> None:
    doc = await (await api.get("/openapi.json")).json()
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for r in ROUTES:
        op = doc["paths"][r.path][r.method.lower()]
        guards = {"401", "403", "429"} & set(op["responses"])
        if r.scope is None:
            assert op["security"] == [] and not guards, (r.method, r.path)
            continue
        assert {"bearer": [str(r.scope)]} in op["security"], (r.method, r.path)
        assert guards == {"401", "403", "429"}, (r.method, r.path)
        assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
        assert {"Retry-After", "RateLimit-Reset"} <= set(op["responses"]["429"]["headers"])
    assert doc["paths"]["/metrics"]["get"]["security"] == [{}, {"bearer": ["metrics:read"]}]


def test_the_security_page_lists_each_routes_scope() -> None:
    page = (Path(__file__).resolve().parents[3] / "docs" / "security.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z:]+)` \| (.*) \|$", page, re.MULTILINE))
    for r in ROUTES:
        if r.scope is not None:
            listed = f"`{r.method} {r.path}`"
            assert listed in rows[str(r.scope)], f"docs/security.md: add {listed} to {r.scope}"
    assert set(rows) == {str(s) for s in Scope}


async def test_the_metrics_of_a_process_without_the_api_can_ask_for_a_token(
    redis: Redis, settings: Settings, clock: FixedClock
) -> None:
    guarded = metrics_app(replace(settings, auth=True, metrics_auth=True), redis)
    async with TestClient(TestServer(guarded, host="127.0.0.1")) as client:
        await problem(await client.get("/metrics"), 401)
        token = await make_token(redis, Scope.METRICS_READ)
        answer = await client.get("/metrics", headers=bearer(token))
        assert answer.status == 200 and answer.headers["RateLimit-Remaining"]
        assert (await client.get("/healthz")).status == 200
    open_ = metrics_app(replace(settings, auth=True), redis)
    async with TestClient(TestServer(open_, host="127.0.0.1")) as client:
        assert (await client.get("/metrics")).status == 200


async def test_revoking_a_token_ends_its_open_event_streams(
    secured: Secured, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream outlives its admission: it asks every STANDING_S whether its token still
    stands, and ends when it was revoked; another token's stream stays open."""
    monkeypatch.setattr(stream, "STANDING_S", 0.1)
    revoked = await secured.token(Scope.EVENTS_READ)
    kept = await secured.token(Scope.EVENTS_READ)
    opened = []
    for token in (revoked, kept):
        answer = await secured.client.get("/v1/events/stream", headers=bearer(token))
        assert answer.status == 200
        assert (await answer.content.readline()).startswith(b": stream open")
        opened.append(answer)
    outcome, _ = await TokenStore(redis, Keyspace()).revoke(_id(revoked))
    assert outcome == "revoked"
    rest = await asyncio.wait_for(opened[0].content.read(), timeout=10)
    assert b"the token no longer stands" in rest  # read to its end: the stream ended
    with pytest.raises(TimeoutError):  # the other one is still open
        await asyncio.wait_for(opened[1].content.read(), timeout=0.5)
    for answer in opened:
        answer.close()

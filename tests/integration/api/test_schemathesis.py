"""Schemathesis over every operation of the served /openapi.json, against the app on
127.0.0.1 with a real Redis, asking for tokens as served (schemathesis sends a valid
admin token through the document's bearer scheme): the API answers what its document says.

Each operation gets schema-valid (positive) and schema-violating (negative) requests,
and every answer must pass schemathesis' status-code, content-type and response-schema
conformance checks and its positive/negative data checks; beyond those: no 5xx, every
4xx an RFC 9457 problem, and nothing appended to the log on a 4xx.

Bounded: a few examples per operation and mode (CRONSTREAM_FUZZ_EXAMPLES raises it for
a deeper run), derandomized so the suite is repeatable, no deadline, no shrinking.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import hypothesis
import pytest
import redis as sync_redis
import requests
import schemathesis
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, Phase, given, settings
from redis.asyncio import Redis
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi import checks

from service.api.app import create_app
from service.api.context import KEYS
from service.clock import FixedClock
from service.config import Settings
from service.domain.tokens import Scope
from tests.integration.api.helpers import SPEC, put_workflow
from tests.tokens import bearer, make_token

EXAMPLES = int(os.environ.get("CRONSTREAM_FUZZ_EXAMPLES", "10"))
CHECKS = [
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
    checks.positive_data_acceptance,
]
# schema-valid requests may find nothing (404), a conflict (409) or a stale If-Match (412)
ACCEPTED = ["2xx", "404", "409", "412"]
NAMESPACE_HEADER = "Cronstream-Namespace"
TOKEN_NAMESPACES = ("default",)  # the fuzzing token's
# the event stream stays open: its answer is read for this long
STREAM_READ_S = 0.5

# Rules of request bodies that JSON Schema does not state (cron syntax, zone names, that
# the workflow exists, ordered ranges, a workflow's input_schema): a schema-valid body
# may still be refused with a 422 naming a body member, never a parameter.
BODY_RULES = {
    "POST /v1/schedules",
    "PATCH /v1/schedules/{id}",
    "POST /v1/specs/preview",
    "POST /v1/specs/describe",
    "PUT /v1/workflows/{id}",
    "POST /v1/schedules/{id}/backfill",
    "POST /v1/schedules/{id}/trigger",
    "POST /v1/workflows/{id}/runs",
    "POST /v1/workflows/{id}/signing-secrets/rotate",  # a grace of at most 30 days
}
# Rules between parameters: `at` and `position` exclude each other, `to` is not before `from`
PARAMETER_RULES = {
    "GET /v1/schedules/{id}": {"at"},
    "GET /v1/schedules/{id}/fires": {"to"},
    "GET /v1/schedules/{id}/next-runs": set(),
}


@dataclass
class Fuzz:
    base_url: str
    redis_url: str
    logs: list[str]
    token: str
    failures: list[str] = field(default_factory=list)
    requests: int = 0

    def __post_init__(self) -> None:
        self.session = requests.Session()
        self.redis = sync_redis.Redis.from_url(self.redis_url)

    def log_length(self) -> int:
        return sum(int(self.redis.xlen(log)) for log in self.logs)

    def close(self) -> None:
        self.session.close()
        self.redis.close()


def _fields(response: Any) -> set[str]:
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return set()
    return {str(e.get("field", "")).split(".")[0] for e in errors}


def _allowed_rejection(case: Any, response: Any) -> bool:
    """A 422 to schema-valid data for a rule the schema cannot state (see BODY_RULES),
    or the 403 for a namespace the token is not for (which namespaces a token may act in
    is the token's, not the document's)."""
    named_namespace = (case.headers or {}).get(NAMESPACE_HEADER)
    if response.status_code == 403 and named_namespace not in (None, *TOKEN_NAMESPACES):
        return response.json()["detail"] == f"this token is not for namespace {named_namespace}"
    if response.status_code != 422:
        return False
    label = case.operation.label
    # a body member may share a path parameter's name (`id`); a valid path id is never refused
    params = {
        p.name for p in case.operation.iter_parameters() if p.location is not ParameterLocation.PATH
    }
    named = _fields(response)
    if named == {"Idempotency-Key"} and response.json()["title"] == "Idempotency key reused":
        return True  # a key drawn again, for a different request
    if label in BODY_RULES and named and not named & params:
        return True
    return bool(named) and named <= PARAMETER_RULES.get(label, set())


def _judge(fuzz: Fuzz, case: Any, response: Any, before: int) -> str | None:
    status = response.status_code
    content_type = (response.headers.get("content-type") or [""])[0]
    if status >= 500:
        return f"{status}: {response.text[:300]}"
    if status >= 400 and not content_type.startswith("application/problem+json"):
        return f"{status} is not a problem: {content_type}"
    if status >= 400 and fuzz.log_length() != before:
        return f"{status} appended to the log"
    chosen = CHECKS
    if case.meta.generation.mode.is_positive and _allowed_rejection(case, response):
        chosen = [c for c in CHECKS if c is not checks.positive_data_acceptance]
    try:
        case.validate_response(response, checks=chosen)
    except BaseException as exc:  # schemathesis raises a group of check failures
        return str(exc).split("Reproduce with")[0].strip()[:800]
    return None


def _run(fuzz: Fuzz, operation: Any, mode: GenerationMode, **fixed: Any) -> None:
    timeout = STREAM_READ_S if operation.path.endswith("/stream") else 10

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def each(case: Any) -> None:
        fuzz.requests += 1
        before = fuzz.log_length()
        response = case.call(base_url=fuzz.base_url, session=fuzz.session, timeout=timeout)
        verdict = _judge(fuzz, case, response, before)
        if verdict is not None:
            fuzz.failures.append(
                f"{operation.label} ({mode.value})\n{verdict}\n{case.as_curl_command()}"
            )

    try:
        each()
    except hypothesis.errors.Unsatisfiable:
        # nothing of this operation can be made invalid: no parameters and no body
        assert mode is GenerationMode.NEGATIVE and not list(operation.iter_parameters())
        assert not list(operation.body), operation.label


def fuzz_all(fuzz: Fuzz) -> None:
    doc = fuzz.session.get(fuzz.base_url + "/openapi.json").json()
    config = SchemathesisConfig.from_dict(
        {
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
            # the document's bearer scheme, filled with a valid admin token
            "auth": {"openapi": {"bearer": {"bearer": fuzz.token}}},
        }
    )
    schema = schemathesis.openapi.from_dict(doc, config=config)
    known = {"/v1/schedules/": "nightly", "/v1/workflows/": "scan"}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(fuzz, operation, mode)
        # the seeded schedule and workflow, so that answers about them are checked too
        prefix = next((p for p in known if operation.path.startswith(p + "{id}")), None)
        if prefix is not None and operation.method.upper() != "DELETE":
            _run(fuzz, operation, GenerationMode.POSITIVE, path_parameters={"id": known[prefix]})


@pytest.fixture
async def secured(
    redis: Redis, settings: Settings, clock: FixedClock
) -> AsyncIterator[tuple[TestClient, str]]:
    """The API asking for tokens, and an admin token whose rate no fuzzing run reaches."""
    app = create_app(replace(settings, auth=True), redis, clock=clock)
    token = await make_token(redis, Scope.ADMIN, now_ms=clock.now_ms())
    async with TestClient(TestServer(app, host="127.0.0.1"), headers=bearer(token)) as client:
        yield client, token


async def test_the_api_answers_what_its_document_says(
    secured: tuple[TestClient, str], redis_url: str
) -> None:
    api, token = secured
    await put_workflow(api)
    created = await api.post(
        "/v1/schedules", json={"id": "nightly", "workflow_id": "scan", "spec": SPEC}
    )
    assert created.status == 201
    assert (await api.post("/v1/schedules/nightly/trigger", json={})).status == 201
    app = api.server.app
    assert app is not None
    keys = app[KEYS]
    fuzz = Fuzz(
        str(api.make_url("")).rstrip("/"),
        redis_url,
        [keys.log(p) for p in range(keys.partitions)],
        token,
    )
    try:
        await asyncio.to_thread(fuzz_all, fuzz)
    finally:
        fuzz.close()
    assert fuzz.requests > 200
    assert not fuzz.failures, f"{len(fuzz.failures)} failures:\n\n" + "\n\n".join(
        fuzz.failures[:15]
    )

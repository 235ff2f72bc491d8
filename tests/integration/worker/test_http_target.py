"""The HTTP target against a real local server: outcomes, headers, signatures, limits."""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from service.clock import FixedClock
from service.domain.workflow import HttpTarget as HttpTargetConfig
from service.worker.targets.base import EXCERPT_LIMIT, RunContext
from service.worker.targets.http import (
    HttpTarget,
    SigningSecretError,
    make_session,
    parse_retry_after,
    sign,
    signing_key,
)

NOW_MS = 1_768_478_400_000
SECRET_BYTES = b"a test secret of thirty-two byte"
SECRET = "whsec_" + base64.b64encode(SECRET_BYTES).decode()
BIG = 10 * 1024 * 1024


@dataclass
class Target:
    """A local webhook receiver that records what it was sent."""

    server: TestServer
    received: list[web.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    flaky_failures: int = 2
    big_written: int = 0

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


def build_app(target: Target) -> web.Application:
    async def record(request: web.Request) -> None:
        target.received.append(request)
        target.bodies.append(await request.read())
        target.arrived.set()

    async def ok(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"ok": True})

    async def flaky(request: web.Request) -> web.Response:
        await record(request)
        if len(target.received) <= target.flaky_failures:
            return web.Response(status=500, text="try again")
        return web.Response(status=204)

    async def hang(request: web.Request) -> web.Response:
        await record(request)
        await target.release.wait()  # set at teardown so the server closes promptly
        return web.Response(text="too late")

    async def status(request: web.Request) -> web.Response:
        await record(request)
        code = int(request.match_info["code"])
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        if code in (301, 302, 307, 308):
            headers["Location"] = target.url("/ok")
        return web.Response(status=code, text=f"status {code}", headers=headers)

    async def cut(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse(headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b"partial")
        await response.drain()
        assert request.transport is not None
        request.transport.close()
        return response

    async def big(request: web.Request) -> web.StreamResponse:
        await record(request)
        response = web.StreamResponse(headers={"Content-Length": str(BIG)})
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            while target.big_written < BIG:
                await response.write(chunk)
                target.big_written += len(chunk)
        except ConnectionError:
            pass  # the client hung up after its excerpt, as it should
        return response

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_post("/flaky", flaky)
    app.router.add_post("/hang", hang)
    app.router.add_post("/status/{code}", status)
    app.router.add_post("/cut", cut)
    app.router.add_post("/big", big)
    return app


@pytest.fixture
async def target() -> AsyncIterator[Target]:
    holder = Target(server=None)  # type: ignore[arg-type]
    holder.server = TestServer(build_app(holder), host="127.0.0.1")
    await holder.server.start_server()
    yield holder
    holder.release.set()
    await holder.server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(limit=10) as client:
        yield client


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[RawHandler], Awaitable[str]]]:
    """Starts plain TCP servers on loopback that answer however a test says."""
    servers: list[asyncio.Server] = []

    async def start(handler: RawHandler) -> str:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def make_target(
    session: aiohttp.ClientSession, url: str, secret: str | None = SECRET, **config: Any
) -> HttpTarget:
    cfg = HttpTargetConfig(type="http", url=url, **config)
    return HttpTarget(cfg, session, secret=secret, clock=FixedClock(NOW_MS))


def context(attempt: int = 1, timeout_s: float = 5.0, **extra: Any) -> RunContext:
    fields: dict[str, Any] = {
        "run_id": "run_01HXAMPLE",
        "schedule_id": "sch_1",
        "workflow_id": "wf_1",
        "trigger": "schedule",
        "nominal_time": "2026-01-15T12:00:00Z",
        "input": {"customer": 42, "note": "héllo"},
        **extra,
    }
    return RunContext(attempt=attempt, timeout_s=timeout_s, **fields)


def expected_signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(key, msg_id.encode() + b"." + timestamp.encode() + b"." + body, "sha256")
    return "v1," + base64.b64encode(mac.digest()).decode()


async def test_success_sends_signed_standard_webhook(
    target: Target, session: aiohttp.ClientSession
) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    http = make_target(session, target.url("/ok"), headers={"X-Team": "billing"})

    result = await http.attempt(context(traceparent=traceparent))

    assert result.ok and result.status == 200
    assert result.body_excerpt == '{"ok": true}'
    (request,) = target.received
    body = target.bodies[0]
    assert request.method == "POST"
    assert orjson.loads(body) == {"customer": 42, "note": "héllo"}
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == "run_01HXAMPLE"
    assert request.headers["webhook-timestamp"] == str(NOW_MS // 1000)
    assert request.headers["webhook-signature"] == expected_signature(
        SECRET_BYTES, "run_01HXAMPLE", str(NOW_MS // 1000), body
    )
    assert request.headers["traceparent"] == traceparent
    assert request.headers["x-team"] == "billing"


async def test_raw_secret_signs_with_its_bytes_and_no_secret_sends_no_signature(
    target: Target, session: aiohttp.ClientSession
) -> None:
    await make_target(session, target.url("/ok"), secret="plain-secret").attempt(context())
    await make_target(session, target.url("/ok"), secret=None).attempt(context())

    signed, unsigned = target.received
    assert signed.headers["webhook-signature"] == expected_signature(
        b"plain-secret", "run_01HXAMPLE", str(NOW_MS // 1000), target.bodies[0]
    )
    assert "webhook-signature" not in unsigned.headers
    assert "traceparent" not in unsigned.headers


async def test_configured_headers_cannot_replace_protocol_headers(
    target: Target, session: aiohttp.ClientSession
) -> None:
    http = make_target(
        session, target.url("/ok"), headers={"webhook-id": "forged", "Content-Type": "text/plain"}
    )
    await http.attempt(context())
    assert target.received[0].headers["webhook-id"] == "run_01HXAMPLE"
    assert target.received[0].headers["content-type"] == "application/json"


async def test_configured_method_is_used(target: Target, session: aiohttp.ClientSession) -> None:
    result = await make_target(session, target.url("/ok"), method="PUT").attempt(context())
    assert result.ok and target.received[0].method == "PUT"


async def test_failing_first_attempts_are_retryable_and_keep_one_webhook_id(
    target: Target, session: aiohttp.ClientSession
) -> None:
    http = make_target(session, target.url("/flaky"))

    results = [await http.attempt(context(attempt=n)) for n in (1, 2, 3)]

    assert [(r.ok, r.retryable, r.status) for r in results] == [
        (False, True, 500),
        (False, True, 500),
        (True, False, 204),
    ]
    assert results[0].error == "HTTP 500" and results[0].body_excerpt == "try again"
    assert {r.headers["webhook-id"] for r in target.received} == {"run_01HXAMPLE"}


async def test_a_hanging_target_times_out_retryably(
    target: Target, session: aiohttp.ClientSession
) -> None:
    started = time.monotonic()
    result = await make_target(session, target.url("/hang")).attempt(context(timeout_s=0.3))
    assert not result.ok and result.retryable
    assert result.timed_out and not result.stopped
    assert result.error is not None and "timed out" in result.error
    assert time.monotonic() - started < 3


async def test_the_target_timeout_shortens_the_run_timeout(
    target: Target, session: aiohttp.ClientSession
) -> None:
    http = make_target(session, target.url("/hang"), timeout="1s")
    assert http.timeout_s(context(timeout_s=30)) == 1.0
    assert http.timeout_s(context(timeout_s=0.3)) == 0.3


async def test_cancel_during_the_request_aborts_it(
    target: Target, session: aiohttp.ClientSession
) -> None:
    ctx = context(timeout_s=30)
    attempt = asyncio.create_task(make_target(session, target.url("/hang")).attempt(ctx))
    await asyncio.wait_for(target.arrived.wait(), 5)  # the request is in flight

    ctx.cancelled.set()
    result = await asyncio.wait_for(attempt, 5)

    assert (result.ok, result.retryable, result.error) == (False, False, "cancelled")
    assert (result.stopped, result.timed_out) == (True, False)


async def test_already_cancelled_run_sends_nothing(
    target: Target, session: aiohttp.ClientSession
) -> None:
    ctx = context()
    ctx.cancelled.set()
    result = await make_target(session, target.url("/ok")).attempt(ctx)
    assert result.error == "cancelled" and result.stopped and not target.received


@pytest.mark.parametrize(
    ("code", "retryable"), [(408, True), (425, True), (502, True), (503, True)]
)
async def test_retryable_statuses(
    target: Target, session: aiohttp.ClientSession, code: int, retryable: bool
) -> None:
    result = await make_target(session, target.url(f"/status/{code}")).attempt(context())
    assert (result.ok, result.retryable, result.status) == (False, retryable, code)


@pytest.mark.parametrize("code", [400, 401, 404, 410, 422])
async def test_other_client_errors_are_not_retryable(
    target: Target, session: aiohttp.ClientSession, code: int
) -> None:
    result = await make_target(session, target.url(f"/status/{code}")).attempt(context())
    assert (result.ok, result.retryable, result.status) == (False, False, code)
    assert result.error == f"HTTP {code}" and result.body_excerpt == f"status {code}"


async def test_429_with_retry_after_seconds(target: Target, session: aiohttp.ClientSession) -> None:
    url = target.url("/status/429?retry_after=2")
    result = await make_target(session, url).attempt(context())
    assert (result.retryable, result.status, result.retry_after_s) == (True, 429, 2.0)


async def test_503_with_retry_after_date(target: Target, session: aiohttp.ClientSession) -> None:
    when = datetime.fromtimestamp(NOW_MS / 1000 + 90, tz=UTC)
    url = target.server.make_url("/status/503").with_query(
        retry_after=format_datetime(when, usegmt=True)
    )
    http = make_target(session, str(url))
    result = await http.attempt(context())
    assert (result.retryable, result.status, result.retry_after_s) == (True, 503, 90.0)


async def test_retry_after_is_ignored_on_other_statuses(
    target: Target, session: aiohttp.ClientSession
) -> None:
    result = await make_target(session, target.url("/status/500?retry_after=5")).attempt(context())
    assert result.retryable and result.retry_after_s is None


def test_retry_after_parsing_is_bounded() -> None:
    assert parse_retry_after("120", NOW_MS) == 120.0
    assert parse_retry_after("999999999", NOW_MS) == 86_400.0
    assert parse_retry_after("-5", NOW_MS) == 0.0
    assert parse_retry_after("soon", NOW_MS) is None
    assert parse_retry_after("nan", NOW_MS) is None
    assert parse_retry_after(None, NOW_MS) is None
    past = format_datetime(datetime.fromtimestamp(NOW_MS / 1000 - 60, tz=UTC), usegmt=True)
    assert parse_retry_after(past, NOW_MS) == 0.0


async def test_redirects_are_not_followed(target: Target, session: aiohttp.ClientSession) -> None:
    result = await make_target(session, target.url("/status/302")).attempt(context())
    assert (result.ok, result.retryable, result.status) == (False, False, 302)
    assert result.error == f"HTTP 302: redirect to {target.url('/ok')} not followed"
    assert [r.path for r in target.received] == ["/status/302"]


async def test_a_huge_body_is_read_only_up_to_the_excerpt(
    target: Target, session: aiohttp.ClientSession
) -> None:
    result = await make_target(session, target.url("/big")).attempt(context())
    assert result.ok and result.status == 200
    assert result.body_excerpt == "x" * EXCERPT_LIMIT
    # the connection was dropped, not drained: a later request still works at once
    again = await make_target(session, target.url("/ok")).attempt(context())
    assert again.ok


async def test_a_connection_closed_mid_response_fails_retryably(
    target: Target, session: aiohttp.ClientSession
) -> None:
    result = await make_target(session, target.url("/cut")).attempt(context())
    assert not result.ok and result.retryable
    assert result.error is not None and "cut off" in result.error


async def test_garbage_instead_of_http_fails_retryably(
    session: aiohttp.ClientSession, raw_server: Callable[[RawHandler], Awaitable[str]]
) -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP\r\n\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    result = await make_target(session, await raw_server(garbage)).attempt(context())
    assert not result.ok and result.retryable and result.status is None
    assert result.error is not None and result.error.startswith("invalid HTTP response")
    assert "NOT HTTP" in result.error and "\n" not in result.error


async def test_a_server_that_hangs_up_without_answering_fails_retryably(
    session: aiohttp.ClientSession, raw_server: Callable[[RawHandler], Awaitable[str]]
) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()
        await writer.wait_closed()

    result = await make_target(session, await raw_server(hang_up)).attempt(context())
    assert (result.ok, result.retryable) == (False, True)
    assert result.error == "server closed the connection"


async def test_connection_refused_fails_retryably(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = await make_target(session, f"http://127.0.0.1:{port}/hook").attempt(context())
    assert (result.ok, result.retryable, result.timed_out) == (False, True, False)
    assert result.error is not None and result.error.startswith("cannot connect")


async def test_input_that_is_not_json_fails_for_good(
    target: Target, session: aiohttp.ClientSession
) -> None:
    ctx = context()
    ctx.input = {"when": object()}
    result = await make_target(session, target.url("/ok")).attempt(ctx)
    assert (result.ok, result.retryable) == (False, False)
    assert not target.received


def test_signature_matches_the_standard_webhooks_example() -> None:
    # the example from the Standard Webhooks specification's reference libraries
    key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    payload = b'{"test": 2432232314}'
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, payload)
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


# -- signing secrets: decoded as receivers decode them, or the attempt fails closed --


def whsec(key: bytes, *, padded: bool) -> str:
    encoded = base64.b64encode(key).decode()
    return "whsec_" + (encoded if padded else encoded.rstrip("="))


def test_whsec_secrets_decode_with_or_without_padding() -> None:
    for size in range(1, 41):
        key = bytes(range(size))
        assert signing_key(whsec(key, padded=True)) == key
        assert signing_key(whsec(key, padded=False)) == key
    assert signing_key(" whsec_YWJj \n") == b"abc"  # a stray newline from a secrets file


def test_a_secret_without_the_prefix_is_its_utf8_bytes() -> None:
    assert signing_key("plain-sécret") == "plain-sécret".encode()


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("whsec_", "no key"),
        ("whsec_a-b_c-d_", "not base64"),  # URL-safe alphabet: receivers would decode it otherwise
        ("whsec_abcde", "not base64"),
        ("whsec_ab!cd", "not base64"),
    ],
)
def test_a_malformed_whsec_secret_is_refused(secret: str, why: str) -> None:
    with pytest.raises(SigningSecretError, match=why):
        signing_key(secret)


def deliveries_verify(target: Target, first: int, receiver_secret: str | bytes) -> list[bool]:
    checks = []
    webhook = Webhook(receiver_secret)
    for request, body in zip(target.received[first:], target.bodies[first:], strict=True):
        try:
            webhook.verify(body, dict(request.headers))
        except WebhookVerificationError:
            checks.append(False)
        else:
            checks.append(True)
    return checks


async def test_padded_unpadded_and_plain_secrets_verify_with_standardwebhooks(
    target: Target, session: aiohttp.ClientSession
) -> None:
    for padded in (True, False):
        for size in range(16, 36):  # 20 key sizes: every padding length occurs
            secret = whsec(bytes(range(100, 100 + size)), padded=padded)
            first = len(target.received)
            config = HttpTargetConfig(type="http", url=target.url("/ok"), body="envelope")
            result = await HttpTarget(config, session, secret=secret).attempt(context())
            assert result.ok
            assert deliveries_verify(target, first, secret) == [True], secret
    plain = "a plain passphrase, not base64"
    first = len(target.received)
    for n in range(1, 21):
        config = HttpTargetConfig(type="http", url=target.url("/ok"))
        assert (await HttpTarget(config, session, secret=plain).attempt(context(n))).ok
    # the receiver passes a non-prefixed secret as bytes: the library takes bytes as the key
    assert deliveries_verify(target, first, plain.encode()) == [True] * 20


async def test_a_missing_secret_fails_the_attempt_closed_and_is_logged(
    target: Target, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    config = HttpTargetConfig(type="http", url=target.url("/ok"), secret_env="CS_NOT_SET")
    for secret in (None, ""):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="service.worker"):
            result = await HttpTarget(config, session, secret=secret).attempt(context())

        assert (result.ok, result.retryable) == (False, True)
        assert result.error is not None and "CS_NOT_SET" in result.error
        assert ("empty" if secret == "" else "not set") in result.error
        [record] = caplog.records
        assert record.levelno >= logging.WARNING
        message = record.getMessage()
        assert "CS_NOT_SET" in message and "run_01HXAMPLE" in message and "wf_1" in message
    assert not target.received  # nothing goes out unsigned


async def test_a_malformed_secret_fails_the_attempt_closed(
    target: Target, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    config = HttpTargetConfig(type="http", url=target.url("/ok"), secret_env="CS_BAD")
    with caplog.at_level(logging.WARNING, logger="service.worker"):
        result = await HttpTarget(config, session, secret="whsec_a-b_c-d_").attempt(context())
    assert (result.ok, result.retryable) == (False, True)
    assert result.error is not None and "CS_BAD" in result.error
    assert "whsec_a-b" not in result.error and "whsec_a-b" not in caplog.text  # never echoed
    assert not target.received


# -- deliveries carry the fire: headers always, the envelope on request --


FIRE_HEADERS = {
    "cronstream-schedule-id": "sch_1",
    "cronstream-workflow-id": "wf_1",
    "cronstream-run-id": "run_01HXAMPLE",
    "cronstream-fire-id": "sch_1:1768478400000:schedule",
    "cronstream-nominal-time": "2026-01-15T12:00:00Z",
    "cronstream-trigger": "schedule",
    "cronstream-attempt": "2",
}


async def test_every_delivery_names_its_fire_in_headers(
    target: Target, session: aiohttp.ClientSession
) -> None:
    http = make_target(session, target.url("/ok"), headers={"Cronstream-Fire-Id": "forged"})
    assert (await http.attempt(context(attempt=2))).ok

    headers = target.received[0].headers
    assert {name: headers.get(name) for name in FIRE_HEADERS} == FIRE_HEADERS
    assert orjson.loads(target.bodies[0]) == {"customer": 42, "note": "héllo"}  # the default


async def test_the_envelope_body_carries_the_fire_and_the_input(
    target: Target, session: aiohttp.ClientSession
) -> None:
    http = make_target(session, target.url("/ok"), body="envelope")
    assert (await http.attempt(context(attempt=2))).ok

    assert orjson.loads(target.bodies[0]) == {
        "schedule_id": "sch_1",
        "workflow_id": "wf_1",
        "fire_id": "sch_1:1768478400000:schedule",
        "run_id": "run_01HXAMPLE",
        "nominal_time": "2026-01-15T12:00:00Z",
        "trigger": "schedule",
        "attempt": 2,
        "input": {"customer": 42, "note": "héllo"},
    }
    headers = target.received[0].headers
    assert headers["webhook-signature"] == expected_signature(
        SECRET_BYTES, "run_01HXAMPLE", str(NOW_MS // 1000), target.bodies[0]
    )


@pytest.mark.parametrize(
    ("trigger", "fire_id"),
    [
        ("manual", "sch_1:1768478400000:manual:run_01HXAMPLE"),
        ("api", "sch_1:1768478400000:api:run_01HXAMPLE"),
        ("backfill", "sch_1:1768478400000:backfill"),
    ],
)
def test_the_fire_id_of_each_kind_of_run(trigger: str, fire_id: str) -> None:
    assert context(trigger=trigger).fire_id == fire_id


async def test_a_workflow_run_has_no_fire(target: Target, session: aiohttp.ClientSession) -> None:
    ctx = context(schedule_id=None, nominal_time=None, trigger="api", input=None)
    assert ctx.fire_id is None
    http = make_target(session, target.url("/ok"), body="envelope")
    assert (await http.attempt(ctx)).ok

    body = orjson.loads(target.bodies[0])
    assert body["schedule_id"] is body["fire_id"] is body["nominal_time"] is None
    assert body["input"] is None and body["run_id"] == "run_01HXAMPLE"
    headers = target.received[0].headers
    assert "cronstream-fire-id" not in headers and "cronstream-schedule-id" not in headers
    assert headers["cronstream-run-id"] == "run_01HXAMPLE"
    assert headers["cronstream-trigger"] == "api"


def test_the_body_option_is_validated() -> None:
    assert HttpTargetConfig(type="http", url="http://127.0.0.1/").body == "input"
    with pytest.raises(ValidationError):
        HttpTargetConfig(type="http", url="http://127.0.0.1/", body="xml")  # type: ignore[arg-type]

"""The HTTP target against a real local server: outcomes, headers, signatures, limits."""

from __future__ import annotations

import asyncio
import base64
import hmac
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

from service.clock import FixedClock
from service.domain.workflow import HttpTarget as HttpTargetConfig
from service.worker.targets.base import EXCERPT_LIMIT, RunContext
from service.worker.targets.http import (
    HttpTarget,
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
    return RunContext(
        run_id="run_01HXAMPLE",
        schedule_id="sch_1",
        workflow_id="wf_1",
        trigger="schedule",
        nominal_time="2026-01-15T12:00:00Z",
        attempt=attempt,
        input={"customer": 42, "note": "héllo"},
        timeout_s=timeout_s,
        **extra,
    )


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

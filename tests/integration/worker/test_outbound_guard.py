"""The outbound guard in the worker's client session, against receivers on loopback.

Every address here is a loopback one: a test never sends anything elsewhere, not even
to see it refused. Names resolve through ``StaticResolver``, never through DNS.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.domain.addresses import PUBLIC_ONLY, OutboundPolicy
from service.domain.workflow import HttpTarget as HttpTargetConfig
from service.worker.targets.base import EXCERPT_LIMIT, AttemptResult, RunContext
from service.worker.targets.http import HttpTarget, make_session
from tests.integration.worker.resolver import StaticResolver

HINT = "refused; set CRONSTREAM_ALLOW_PRIVATE_TARGETS=1 or CRONSTREAM_TARGET_ALLOWLIST to allow it"


@dataclass
class Receiver:
    """A webhook receiver on one loopback address that records what reaches it."""

    host: str
    server: TestServer | None = None
    calls: list[str] = field(default_factory=list)
    location: str | None = None  # answer 302 to this instead of 200

    @property
    def port(self) -> int:
        assert self.server is not None and self.server.port is not None
        return self.server.port

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append(request.path)
        if self.location is not None:
            answer = web.Response(status=302, headers={"Location": self.location})
        else:
            answer = web.json_response({"ok": True})
        answer.force_close()  # each delivery connects anew
        return answer


Start = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def receiver() -> AsyncIterator[Start]:
    started: list[Receiver] = []

    async def start(
        host: str = "127.0.0.1", port: int = 0, location: str | None = None
    ) -> Receiver:
        assert host.startswith("127."), "receivers listen on loopback only"
        made = Receiver(host, location=location)
        app = web.Application()
        app.router.add_route("*", "/{name}", made.handle)
        made.server = TestServer(app, host=host, port=port)
        await made.server.start_server()
        started.append(made)
        return made

    yield start
    for made in started:
        assert made.server is not None
        await made.server.close()


def context() -> RunContext:
    return RunContext(
        run_id="run_1",
        schedule_id=None,
        workflow_id="wf_1",
        trigger="api",
        nominal_time=None,
        attempt=1,
        input={"n": 1},
        timeout_s=5.0,
    )


async def deliver(
    url: str,
    policy: OutboundPolicy | None = PUBLIC_ONLY,
    resolver: StaticResolver | None = None,
) -> AttemptResult:
    resolver = resolver or StaticResolver({"hooks.test": [["127.0.0.1"]]})
    async with make_session(10, policy, resolver) as session:
        config = HttpTargetConfig(type="http", url=url)
        return await HttpTarget(config, session).attempt(context())


def assert_refused(result: AttemptResult, said: str) -> None:
    assert (result.ok, result.retryable, result.refused, result.status) == (
        False,
        False,
        True,
        None,
    )
    assert result.error is not None
    assert result.error.startswith(said) and result.error.endswith(f": {HINT}"), result.error


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://127.0.0.1:{port}/ok", "target address 127.0.0.1 is loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/ok", "target address ::ffff:"),
        ("http://127.1:{port}/ok", "target address 127.0.0.1 (127.1) is loopback"),
        ("http://2130706433:{port}/ok", "target address 127.0.0.1 (2130706433) is loopback"),
        ("http://0x7f.1:{port}/ok", "target address 127.0.0.1 (0x7f.1) is loopback"),
        ("http://localhost:{port}/ok", "target address 127.0.0.1 (localhost) is loopback"),
        ("http://LocalHost.:{port}/ok", "target address 127.0.0.1 (localhost.) is loopback"),
        ("http://api.localhost:{port}/ok", "target address 127.0.0.1 (api.localhost) is"),
        ("http://hooks.test:{port}/ok", "target address 127.0.0.1 (hooks.test) is loopback"),
    ],
)
async def test_loopback_in_every_form_is_refused_and_nothing_is_sent(
    receiver: Start, url: str, said: str
) -> None:
    local = await receiver()
    result = await deliver(url.format(port=local.port))
    assert_refused(result, said)
    assert local.calls == []


async def test_another_loopback_address_is_refused(receiver: Start) -> None:
    other = await receiver("127.1.2.3")
    result = await deliver(f"http://127.1.2.3:{other.port}/ok")
    assert_refused(result, "target address 127.1.2.3 is loopback")
    assert other.calls == []


async def test_the_allowlist_and_the_allow_flag_let_loopback_through(receiver: Start) -> None:
    local = await receiver()
    by_cidr = OutboundPolicy.parse(allowlist=["127.0.0.1/32"])
    by_host = OutboundPolicy.parse(allowlist=["hooks.test"])
    everything = OutboundPolicy.parse(allow_private=True)
    assert (await deliver(f"http://127.0.0.1:{local.port}/a", by_cidr)).ok
    assert (await deliver(f"http://localhost:{local.port}/b", by_cidr)).ok  # via 127.0.0.1
    assert (await deliver(f"http://hooks.test:{local.port}/c", by_host)).ok
    assert (await deliver(f"http://[::ffff:127.0.0.1]:{local.port}/d", everything)).ok
    assert local.calls == ["/a", "/b", "/c", "/d"]
    refused = await deliver(f"http://127.0.0.1:{local.port}/e", by_host)  # not by its name
    assert_refused(refused, "target address 127.0.0.1 is loopback")
    assert local.calls == ["/a", "/b", "/c", "/d"]


async def test_without_a_policy_the_session_follows_the_environment(
    receiver: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = await receiver()
    url = f"http://127.0.0.1:{local.port}/ok"
    monkeypatch.delenv("CRONSTREAM_ALLOW_PRIVATE_TARGETS")
    assert_refused(await deliver(url, None), "target address 127.0.0.1 is loopback")
    monkeypatch.setenv("CRONSTREAM_TARGET_ALLOWLIST", "127.0.0.1/32")
    assert (await deliver(url, None)).ok
    monkeypatch.delenv("CRONSTREAM_TARGET_ALLOWLIST")
    monkeypatch.setenv("CRONSTREAM_ALLOW_PRIVATE_TARGETS", "1")
    assert (await deliver(url, None)).ok
    assert local.calls == ["/ok", "/ok"]


async def test_only_the_addresses_that_pass_are_connected_to(receiver: Start) -> None:
    allowed = await receiver("127.0.0.1")
    refused = await receiver("127.0.0.2", allowed.port)
    resolver = StaticResolver({"mixed.test": [["127.0.0.2", "127.0.0.1"]]})
    policy = OutboundPolicy.parse(allowlist=["127.0.0.1/32"])
    result = await deliver(f"http://mixed.test:{allowed.port}/ok", policy, resolver)
    assert result.ok
    assert (allowed.calls, refused.calls) == (["/ok"], [])


async def test_the_connection_goes_to_the_address_that_was_checked(receiver: Start) -> None:
    # a rebinding name: the checked answer first, a refused one on any later question
    checked = await receiver("127.0.0.1")
    rebound = await receiver("127.0.0.2", checked.port)
    resolver = StaticResolver({"rebind.test": [["127.0.0.1"], ["127.0.0.2"]]})
    policy = OutboundPolicy.parse(allowlist=["127.0.0.1/32"])
    url = f"http://rebind.test:{checked.port}/ok"
    async with make_session(10, policy, resolver) as session:
        config = HttpTargetConfig(type="http", url=url)
        assert (await HttpTarget(config, session).attempt(context())).ok
        assert resolver.asked == ["rebind.test"]  # asked once: no second answer to connect by
        assert isinstance(session.connector, aiohttp.TCPConnector)
        session.connector.clear_dns_cache()
        again = await HttpTarget(config, session).attempt(context())
    assert_refused(again, "target address 127.0.0.2 (rebind.test) is loopback")
    assert (checked.calls, rebound.calls) == (["/ok"], [])


async def test_a_redirect_to_another_loopback_port_is_not_followed(receiver: Start) -> None:
    elsewhere = await receiver("127.1.2.3")
    moved = f"http://127.1.2.3:{elsewhere.port}/ok"
    first = await receiver("127.0.0.1", location=moved)
    policy = OutboundPolicy.parse(allowlist=["127.0.0.1/32"])
    result = await deliver(f"http://127.0.0.1:{first.port}/hook", policy)
    assert (result.ok, result.retryable, result.status) == (False, False, 302)
    assert result.error == f"HTTP 302: redirect to {moved} not followed"
    assert (first.calls, elsewhere.calls) == (["/hook"], [])


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[bytes], Awaitable[str]]]:
    """Plain TCP servers on 127.0.0.1 that answer any request with the given bytes."""
    servers: list[asyncio.Server] = []

    async def start(answer: bytes) -> str:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            try:
                await writer.drain()
            except ConnectionError:
                pass  # the client stopped reading, as it should
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


LOCAL = OutboundPolicy.parse(allowlist=["127.0.0.1/32"])


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 100_000 + b"\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(500)),
    ],
    ids=["a 100 kB header", "500 headers"],
)
async def test_oversized_response_heads_fail_the_attempt(
    raw_server: Callable[[bytes], Awaitable[str]], head: bytes
) -> None:
    url = await raw_server(head + b"Content-Length: 0\r\n\r\n")
    result = await deliver(url, LOCAL)
    assert not result.ok and result.retryable and not result.refused
    assert result.error is not None and result.error.startswith("invalid HTTP response")


async def test_a_compressed_body_is_inflated_only_as_far_as_the_excerpt(
    raw_server: Callable[[bytes], Awaitable[str]],
) -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb)
    result = await deliver(await raw_server(head + bomb), LOCAL)
    assert result.ok and result.status == 200
    assert result.body_excerpt == "\0" * EXCERPT_LIMIT

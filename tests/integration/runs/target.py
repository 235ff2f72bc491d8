"""A local HTTP target for run tests: each path behaves one way, and it records calls."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Target:
    url: str
    calls: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    fail_first: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    release: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def local_target(host: str = "127.0.0.1") -> AsyncIterator[Target]:
    state = Target(url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = await request.read()
        state.calls[name].append(
            {"headers": dict(request.headers), "body": body, "at": time.monotonic()}
        )
        count = len(state.calls[name])
        if name == "ok":
            return web.json_response({"ok": True})
        if name == "flaky":
            if count <= state.fail_first.get(name, 2):
                return web.Response(status=500, text="not yet")
            return web.json_response({"ok": True})
        if name == "busy":
            if count == 1:
                return web.Response(status=429, headers={"Retry-After": "1"})
            return web.json_response({"ok": True})
        if name == "gone":
            return web.Response(status=410, text="gone for good")
        if name == "down":
            return web.Response(status=503, text="down")
        if name == "hang":
            await asyncio.sleep(30)
            return web.Response(status=200)
        if name == "slow":  # holds until released; counts concurrency
            state.in_flight[name] += 1
            state.max_in_flight[name] = max(state.max_in_flight[name], state.in_flight[name])
            try:
                await asyncio.wait_for(state.release.wait(), timeout=20)
            finally:
                state.in_flight[name] -= 1
            return web.json_response({"ok": True})
        return web.Response(status=404)

    app = web.Application()
    app.router.add_route("*", "/{name}", handle)
    server = TestServer(app, host=host)  # a loopback address, always
    await server.start_server()
    state.url = f"http://{host}:{server.port}"
    try:
        yield state
    finally:
        state.release.set()
        await server.close()

"""A local HTTP target served from a background thread, for tests whose other parts are
processes. Each call is recorded; ``/block`` answers only once ``release`` is set."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from service.store.embedded import free_port


@dataclass
class ThreadTarget:
    url: str
    calls: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    fail_first: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for c in self.calls if c["path"] == path)


@contextmanager
def thread_target() -> Iterator[ThreadTarget]:
    port = free_port()
    state = ThreadTarget(url=f"http://127.0.0.1:{port}")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop: asyncio.Event | None = None

    async def handle(request: web.Request) -> web.StreamResponse:
        with state.lock:
            state.calls.append({"path": request.path, "id": request.headers.get("webhook-id")})
            n = sum(1 for c in state.calls if c["path"] == request.path)
        if request.path == "/block":
            for _ in range(400):  # bounded: at most 20 s
                if state.release.is_set():
                    break
                await asyncio.sleep(0.05)
        if request.path == "/flaky" and n <= state.fail_first:
            return web.Response(status=503)
        return web.json_response({"ok": True})

    async def serve() -> None:
        nonlocal stop
        stop = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{name}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await stop.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the target did not start"
    try:
        yield state
    finally:
        state.release.set()
        assert stop is not None
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()

"""A TCP proxy in front of the test redis-server that can lose a reply.

``drop_reply_to(*markers)`` arms it: the next request that contains every marker is
passed to Redis, which executes it, and then the reply is thrown away and the
client's connection closed — what a client sees when a reply is lost to a timeout
or a broken connection after the server did the work. A client configured to
retry (as the service's is) then sends the same call again on a new connection.

Error replies (``-NOSCRIPT`` before a script is loaded) pass through and leave the
proxy armed, so the dropped reply is always that of an executed call.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

READ_SIZE = 65536


@dataclass
class DropReplyProxy:
    upstream_port: int
    host: str = "127.0.0.1"
    port: int = 0
    dropped: int = 0
    _markers: tuple[bytes, ...] | None = None
    _server: asyncio.Server | None = None
    _pipes: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> DropReplyProxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._pipes):
            task.cancel()
        for task in list(self._pipes):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def armed(self) -> bool:
        return self._markers is not None

    def drop_reply_to(self, *markers: bytes) -> None:
        """Lose the reply to the next request containing all ``markers`` (once)."""
        self._markers = markers

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            server_r, server_w = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            client_w.close()
            self._pipes.discard(task)
            return
        drop_next = asyncio.Event()
        up = asyncio.create_task(self._upstream(client_r, server_w, drop_next))
        try:
            await self._downstream(server_r, client_w, drop_next)
        finally:
            up.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await up
            for writer in (client_w, server_w):
                writer.close()
            self._pipes.discard(task)

    async def _upstream(
        self, client_r: asyncio.StreamReader, server_w: asyncio.StreamWriter, drop: asyncio.Event
    ) -> None:
        while data := await client_r.read(READ_SIZE):
            if self._markers is not None and all(m in data for m in self._markers):
                drop.set()
            server_w.write(data)
            await server_w.drain()
        server_w.close()

    async def _downstream(
        self, server_r: asyncio.StreamReader, client_w: asyncio.StreamWriter, drop: asyncio.Event
    ) -> None:
        while data := await server_r.read(READ_SIZE):
            if drop.is_set() and not data.startswith(b"-"):
                # Redis executed the call: lose its reply and the connection with it
                self._markers = None
                self.dropped += 1
                return
            if drop.is_set():
                drop.clear()  # an error reply: nothing ran, stay armed for the retry
            client_w.write(data)
            await client_w.drain()

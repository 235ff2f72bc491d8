"""The console's way to the API: the service's own /v1 routes, over loopback.

A console request is answered by calling /v1 on the same listening socket the browser
reached (its local address), with the browser's token: the API's middlewares (tokens,
scopes, namespaces, rate limits, problems) and handlers decide everything, exactly as
for any other client.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web

SESSION = web.AppKey("console_session", aiohttp.ClientSession)
ACTOR = "ui:console"
"""X-Actor of the console's commands: a person, so its runs-now are 'manual'."""
TIMEOUT_S = 30


@dataclass
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def errors(self) -> dict[str, str]:
        """A problem's field errors: field name -> message (``body`` for the rest)."""
        if self.ok or not isinstance(self.body, dict):
            return {}
        found = {e["field"]: e["message"] for e in self.body.get("errors") or []}
        return found or {"body": str(self.body.get("detail") or self.body.get("title"))}


def base_url(request: web.Request) -> str:
    """The address of the socket this request came in on."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not isinstance(sockname, tuple):
        raise web.HTTPServiceUnavailable(text="the console needs a TCP listener")
    host, port = sockname[0], sockname[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class Api:
    """Calls /v1 as the browser's user (``token`` None: no Authorization header)."""

    def __init__(self, request: web.Request, token: str | None) -> None:
        self.session = request.app[SESSION]
        self.base = base_url(request)
        self.headers = {"X-Actor": ACTOR}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        sent = {**self.headers, **(headers or {})}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            sent["Content-Type"] = "application/json"
        try:
            async with self.session.request(
                method, self.base + path, params=params, data=data, headers=sent
            ) as response:
                raw = await response.read()
                parsed = orjson.loads(raw) if raw and "json" in response.content_type else None
                return Answer(response.status, parsed, dict(response.headers))
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
            # the API did not answer in time, or not in JSON: the page says so, as a 503
            return Answer(
                503,
                {
                    "title": "Service unavailable",
                    "detail": f"the API did not answer ({type(exc).__name__})",
                },
            )

    async def get(self, path: str, **params: str | None) -> Answer:
        given = {k: v for k, v in params.items() if v}
        return await self.call("GET", path, params=given)

    @contextlib.asynccontextmanager
    async def raw(
        self, method: str, path: str, params: Mapping[str, str], body: bytes, extra: dict[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The API's response as it comes (for the proxy and the event stream)."""
        async with self.session.request(
            method,
            self.base + path,
            params=params,
            data=body or None,
            headers={**self.headers, **extra},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=TIMEOUT_S),
        ) as response:
            yield response


async def client_session(app: web.Application) -> AsyncIterator[None]:
    """One connection pool per process for the console's calls (cleanup_ctx)."""
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=True) as session:
        app[SESSION] = session
        yield

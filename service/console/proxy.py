"""/console/v1/...: the console's scripts call the API here, with the cookie's token.

Scripts cannot read the HttpOnly cookie, so they call /v1 through this path, which adds
the token; calls that may change something (anything but GET) must carry the CSRF token
and come from this site. The answer is the API's, streamed as it comes (the event
stream included).
"""

from __future__ import annotations

import contextlib
from urllib.parse import quote

import orjson
from aiohttp import web

from service.console.client import Api
from service.console.session import CSRF_HEADER, check_csrf, visitor

PASSED_HEADERS = ("Content-Type", "Last-Event-ID", "If-Match", "Idempotency-Key")
RETURNED_HEADERS = ("Content-Type", "ETag", "Location", "Retry-After", "Cache-Control")


def _refused(status: int, detail: str) -> web.Response:
    body = {"type": "about:blank", "title": "Refused", "status": status, "detail": detail}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/problem+json"
    )


async def proxy(request: web.Request) -> web.StreamResponse:
    who = visitor(request)
    if not who.signed_in:
        return _refused(401, "sign in to the console first")
    if request.method != "GET":
        refused = check_csrf(request, request.headers.get(CSRF_HEADER))
        if refused:
            return _refused(403, refused)
    path = "/v1/" + quote(request.match_info["tail"], safe="/")
    extra = {h: request.headers[h] for h in PASSED_HEADERS if h in request.headers}
    body = await request.read()
    api = Api(request, who.token)
    async with api.raw(request.method, path, request.query, body, extra) as upstream:
        response = web.StreamResponse(status=upstream.status)
        for name in RETURNED_HEADERS:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        await response.prepare(request)
        # the browser leaving a page ends its event stream: not an error
        with contextlib.suppress(ConnectionResetError):
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        return response

"""Bearer tokens on the API: who may call a route, and how often.

Each route of the table declares the scope it needs (service/api/routing.py). A request
to a route with a scope (and to any path under /v1, matched or not) must carry
``Authorization: Bearer <token>``: the token's format and checksum are checked here
before anything is looked up, then the token store finds it and takes the request from
its rate bucket in Redis, which every API process shares: a script call
(service/store/tokens.lua) leases a few permits, and the next requests with that token
spend them in this process for at most LEASE_S (1 s), the bound on how late this
process sees a revocation. The answers, before the handler runs (so
nothing is read or written for a refused request): 401 without a valid token, 403
without the route's scope, 429 when its bucket is empty. Every answer to a request
with a valid token carries the RateLimit-* headers. The same middleware then settles the
namespace of a /v1 request (service/api/namespaces.py): one layer per request, and the
token's header checked and hashed once (both kept per header value by the domain).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import istr

from service.api import namespaces
from service.api.context import SETTINGS
from service.api.problems import problem
from service.api.routing import Route, route_of
from service.clock import Clock
from service.domain.tokens import (
    MalformedToken,
    Scope,
    allows,
    bearer_token,
    seconds_up,
    token_hash,
    token_id,
)
from service.store.tokens import Admission, Admitted, TokenStore

TOKENS = web.AppKey("tokens", TokenStore)
AUTH_CLOCK = web.AppKey("auth_clock", Clock)
"""Only where a test sets the time: otherwise expiry and rate are judged by Redis's clock."""
ADMITTED = web.RequestKey("admitted", Admitted)

REALM = 'Bearer realm="cronstream"'
REFUSED = {
    Admission.UNKNOWN: "the token is not known",
    Admission.REVOKED: "the token has been revoked",
    Admission.EXPIRED: "the token has expired",
}
AUTHORIZATION = istr("Authorization")
RATE_LIMIT = istr("RateLimit-Limit")
RATE_REMAINING = istr("RateLimit-Remaining")
RATE_RESET = istr("RateLimit-Reset")
ANY_TOKEN = "any"
"""What a path under /v1 that matches no route needs: a valid token, whatever its scopes
(so an anonymous client learns nothing from which paths exist)."""


def required(request: web.Request, entry: Route | None = None) -> Scope | str | None:
    """The scope ``request``'s route (``entry``) needs (ANY_TOKEN; None: open to anyone)."""
    if entry is None:
        entry = route_of(request.match_info.handler)
    if entry is None:
        return ANY_TOKEN if request.path == "/v1" or request.path.startswith("/v1/") else None
    if entry.scope is Scope.METRICS_READ and not request.app[SETTINGS].metrics_auth:
        return None
    return entry.scope


@web.middleware
async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
    entry = route_of(request.match_info.handler)
    need = required(request, entry)
    if need is None:
        response: web.StreamResponse = await handler(request)
        return response
    header = request.headers.get(AUTHORIZATION)
    try:
        token = bearer_token(header)
    except MalformedToken as exc:
        return unauthorized(str(exc), invalid=header is not None)
    app = request.app
    clock = app.get(AUTH_CLOCK)
    now_ms = clock.now_ms() if clock else None
    admitted = app[TOKENS].spend(token, now_ms) or await app[TOKENS].admit(token, now_ms)
    outcome = admitted.outcome
    # identity, not a dict lookup: hashing an enum member is a Python call
    if outcome is not Admission.ALLOWED and outcome is not Admission.LIMITED:
        return unauthorized(REFUSED[outcome], invalid=True)
    request[ADMITTED] = admitted
    if isinstance(need, Scope) and not allows(admitted.scopes, need):
        return forbidden(need)
    if outcome is Admission.LIMITED:
        return too_many(admitted)
    if namespaces.scoped(entry):
        owned = await app[namespaces.TOKEN_NAMESPACES].of(token_id(token_hash(token)))
        refused = namespaces.settle(request, owned)
        if refused is not None:
            return refused
    response = await handler(request)
    return response


def unauthorized(detail: str, *, invalid: bool) -> web.Response:
    """401 with the challenge of RFC 6750 (no error code when no token was sent)."""
    answer = problem(401, "Unauthorized", detail)
    challenge = REALM
    if invalid:
        challenge += f', error="invalid_token", error_description="{detail}"'
    answer.headers["WWW-Authenticate"] = challenge
    return answer


def forbidden(scope: Scope) -> web.Response:
    answer = problem(
        403, "Forbidden", f"this token lacks the scope {scope} (or admin)", required_scope=scope
    )
    answer.headers["WWW-Authenticate"] = f'{REALM}, error="insufficient_scope", scope="{scope}"'
    return answer


def too_many(admitted: Admitted) -> web.Response:
    retry_s = max(1, seconds_up(admitted.retry_ms))
    answer = problem(
        429,
        "Too many requests",
        f"this token may send {admitted.limit} requests in its window; retry in {retry_s} s",
    )
    answer.headers["Retry-After"] = str(retry_s)
    return answer


async def rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    """RateLimit-* on every answer to a request with a valid token (on_response_prepare)."""
    admitted = request.get(ADMITTED)
    if admitted is None:
        return
    headers = response.headers
    headers[RATE_LIMIT] = str(admitted.limit)
    headers[RATE_REMAINING] = str(admitted.remaining)
    headers[RATE_RESET] = str(seconds_up(admitted.reset_ms))

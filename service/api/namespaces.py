"""The namespace a /v1 request acts in (service/domain/namespaces.py decides it).

One middleware, after the token check: it reads the ``Cronstream-Namespace`` header and
the admitted token's namespaces (none under --insecure-dev: any namespace may be named),
and refuses a namespace the token is not for with 403 before the handler runs, so
nothing is read or written for it. 403 rather than 404: the namespace is the caller's
own claim about its tenant, not a resource; the answer is the same whether or not the
namespace holds anything, so it tells nothing about another tenant.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service.api.auth import ADMITTED
from service.api.problems import problem
from service.api.routing import route_of
from service.domain import namespaces
from service.domain.tokens import bearer_token, token_hash, token_id
from service.errors import InvalidInput
from service.store.namespaces import NamespaceQuotas, TokenNamespaces

NAMESPACE = web.RequestKey("namespace", str)
TOKEN_NAMESPACES = web.AppKey("token_namespaces", TokenNamespaces)
QUOTAS = web.AppKey("quotas", NamespaceQuotas)


def namespace(request: web.Request) -> str:
    """The namespace ``request`` acts in (``default`` outside /v1)."""
    return request[NAMESPACE] if NAMESPACE in request else namespaces.DEFAULT


@web.middleware
async def resolve(request: web.Request, handler: Any) -> web.StreamResponse:
    entry = route_of(request.match_info.handler)
    if entry is None or not entry.path.startswith("/v1"):
        response: web.StreamResponse = await handler(request)
        return response
    try:
        chosen = namespaces.choose(
            request.headers.get(namespaces.HEADER), await _token_for(request)
        )
        namespaces.served(chosen)
    except namespaces.BadNamespace as exc:
        raise InvalidInput.one(namespaces.HEADER, str(exc)) from None
    except namespaces.NamespaceRefused as exc:
        return problem(403, "Forbidden", str(exc))
    request[NAMESPACE] = chosen
    response = await handler(request)
    return response


async def _token_for(request: web.Request) -> tuple[str, ...] | None:
    """The namespaces of the request's token (None: no token was asked for)."""
    if request.get(ADMITTED) is None:
        return None
    # admitted: the header holds a well-formed token
    digest = token_hash(bearer_token(request.headers.get("Authorization")))
    return await request.app[TOKEN_NAMESPACES].of(token_id(digest))

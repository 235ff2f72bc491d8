"""The namespace a /v1 request acts in (service/domain/namespaces.py decides it).

It is read from the ``Cronstream-Namespace`` header and checked against the admitted
token's namespaces (none under --insecure-dev: any namespace may be named); a namespace
the token is not for is refused with 403 before the handler runs, so nothing is read or
written for it. 403 rather than 404: the namespace is the caller's own claim about its
tenant, not a resource; the answer is the same whether or not the namespace holds
anything, so it tells nothing about another tenant. With tokens, the token check
(service/api/auth.py) settles the namespace in the same middleware, after the token is
admitted; without them, ``resolve`` does.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from service.api.problems import problem
from service.api.routing import Route, route_of
from service.domain import namespaces
from service.errors import InvalidInput
from service.store.namespaces import NamespaceQuotas, TokenNamespaces

NAMESPACE = web.RequestKey("namespace", str)
TOKEN_NAMESPACES = web.AppKey("token_namespaces", TokenNamespaces)
QUOTAS = web.AppKey("quotas", NamespaceQuotas)


def namespace(request: web.Request) -> str:
    """The namespace ``request`` acts in (``default`` outside /v1)."""
    return request[NAMESPACE] if NAMESPACE in request else namespaces.DEFAULT


def scoped(entry: Route | None) -> bool:
    """Whether a request to ``entry`` acts in a namespace (the /v1 routes)."""
    return entry is not None and entry.path.startswith("/v1")


def settle(request: web.Request, token_namespaces: tuple[str, ...] | None) -> web.Response | None:
    """Set the namespace ``request`` acts in; the 403 when the token is not for it
    (``token_namespaces`` None: no token was asked for). A header that names no namespace
    raises InvalidInput (422)."""
    try:
        chosen = namespaces.choose(request.headers.get(namespaces.HEADER), token_namespaces)
    except namespaces.BadNamespace as exc:
        raise InvalidInput.one(namespaces.HEADER, str(exc)) from None
    except namespaces.NamespaceRefused as exc:
        return problem(403, "Forbidden", str(exc))
    request[NAMESPACE] = chosen
    return None


@web.middleware
async def resolve(request: web.Request, handler: Any) -> web.StreamResponse:
    """The namespace of a request to an API that asks for no token."""
    if scoped(route_of(request.match_info.handler)):
        refused = settle(request, None)
        if refused is not None:
            return refused
    response: web.StreamResponse = await handler(request)
    return response

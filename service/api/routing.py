"""A small route table: each route's handler with what OpenAPI needs to know of it.

A route says every answer it gives: its success replies (``Reply``: status, body model,
media type, headers) and the problem statuses it can answer (RFC 9457 bodies), so
/openapi.json documents what the handler does, and the contract tests hold it to that.
It also says the scope a token needs to call it (``scope``; None: open to anyone, which
only the health, metrics and documentation routes outside /v1 may be).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from service.domain.tokens import Scope

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Param:
    """A query, path or header parameter; ``schema`` is its JSON Schema, limits included
    (or makes it from the number of partitions, for the cursors that depend on it)."""

    name: str
    description: str
    schema: dict[str, Any] | Callable[[int], dict[str, Any]]
    location: str = "query"
    required: bool = False


@dataclass(frozen=True)
class Reply:
    """One success answer: its status, what it means, its body (``media_type`` None: no
    body) and the headers it sets."""

    status: int
    description: str
    model: type[BaseModel] | None = None
    headers: tuple[str, ...] = ()
    _: KW_ONLY
    media_type: str | None = JSON


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None
    replies: tuple[Reply, ...]
    problems: tuple[int, ...]
    params: tuple[Param, ...]
    scope: Scope | None
    body_types: tuple[str, ...] = (JSON,)
    body_required: bool = True


ROUTES: list[Route] = []
_BY_HANDLER: dict[Handler, Route] = {}


def route(
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    scope: Scope | None,
    replies: tuple[Reply, ...],
    problems: tuple[int, ...] = (),
    body: type[BaseModel] | None = None,
    body_types: tuple[str, ...] = (JSON,),
    body_required: bool = True,
    params: tuple[Param, ...] = (),
) -> Callable[[Handler], Handler]:
    def add(handler: Handler) -> Handler:
        entry = Route(
            method,
            path,
            handler,
            summary,
            tag,
            body,
            replies,
            problems,
            params,
            scope,
            body_types,
            body_required,
        )
        ROUTES.append(entry)
        _BY_HANDLER[handler] = entry
        return handler

    return add


def setup_routes(app: web.Application) -> None:
    for r in ROUTES:
        app.router.add_route(r.method, r.path, r.handler)


def route_of(handler: Handler) -> Route | None:
    """The route a matched request's handler serves (None: the request matched none)."""
    return _BY_HANDLER.get(handler)

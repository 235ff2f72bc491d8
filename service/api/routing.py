"""A small route table: each route's handler with what OpenAPI needs to know of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Param:
    name: str
    description: str
    type: str = "string"
    location: str = "query"
    required: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    params: tuple[Param, ...] = ()
    headers: tuple[Param, ...] = field(default=())


ROUTES: list[Route] = []


def route(
    method: str,
    path: str,
    *,
    summary: str,
    tag: str,
    body: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    params: tuple[Param, ...] = (),
    headers: tuple[Param, ...] = (),
) -> Callable[[Handler], Handler]:
    def add(handler: Handler) -> Handler:
        ROUTES.append(
            Route(method, path, handler, summary, tag, body, response, status, params, headers)
        )
        return handler

    return add


def setup_routes(app: web.Application) -> None:
    for r in ROUTES:
        app.router.add_route(r.method, r.path, r.handler)

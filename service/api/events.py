"""The global event feed: every event, in log order, for subscribers."""

from __future__ import annotations

from aiohttp import web

from service.api import render
from service.api.context import STORE, json_response, query_int
from service.api.models import FeedPage
from service.api.routing import Param, route
from service.errors import InvalidInput
from service.store.feed import read_feed


@route(
    "GET",
    "/v1/events",
    summary="The event feed, after a cursor",
    tag="events",
    response=FeedPage,
    params=(
        Param("after", "Position of the last event seen (an item's position or next)"),
        Param("limit", "Page size (1-1000, default 100)", "integer"),
    ),
)
async def list_events(request: web.Request) -> web.StreamResponse:
    limit = query_int(request, "limit", 100, 1, 1000)
    try:
        items, cursor = await read_feed(request.app[STORE], request.query.get("after"), limit)
    except ValueError as exc:
        raise InvalidInput.one("after", str(exc)) from None
    return json_response(
        {"items": [render.feed_event(pos, event) for pos, event in items], "next": cursor}
    )

"""The global event feed: every event, in log order, for subscribers."""

from __future__ import annotations

from aiohttp import web

from service.api import render
from service.api.context import KEYS, STORE, json_response, query_int, query_text
from service.api.models import FeedPage
from service.api.namespaces import namespace
from service.api.params import A_FEED_POSITION, feed_cursor, feed_cursor_pattern, limit
from service.api.routing import Reply, route
from service.domain.namespaces import namespace_of
from service.domain.tokens import Scope
from service.errors import InvalidInput
from service.store.feed import read_feed


@route(
    "GET",
    "/v1/events",
    summary="The event feed, after a cursor",
    tag="events",
    scope=Scope.EVENTS_READ,
    replies=(Reply(200, "Events after the cursor, in log order", FeedPage),),
    problems=(422, 503),
    params=(
        feed_cursor("after", "Position of the last event seen (an item's position or next)"),
        limit(100, 1000),
    ),
)
async def list_events(request: web.Request) -> web.StreamResponse:
    size = query_int(request, "limit", 100, 1, 1000)
    cursor = feed_cursor_pattern(request.app[KEYS].partitions)
    after = query_text(request, "after", cursor, A_FEED_POSITION)
    try:
        ns = namespace(request)
        items, cursor = await read_feed(
            request.app[STORE], after, size, lambda event: namespace_of(event.sid) == ns
        )
    except ValueError as exc:
        raise InvalidInput.one("after", str(exc)) from None
    return json_response(
        {"items": [render.feed_event(pos, event) for pos, event in items], "next": cursor}
    )

"""The load forecast: fires per minute over the next day or week, and the herds."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from projections.read import ScheduleFilter
from service.api import render, tenancy
from service.api.context import CLOCK, VIEWS, json_response, query_choice, query_int
from service.api.params import one_of
from service.api.routing import Param, Reply, route
from service.domain.forecast import MIN_HERD, Planned, forecast
from service.domain.policies import ScheduleStatus
from service.domain.timeutil import to_rfc3339
from service.domain.tokens import Scope

WINDOWS = {"24h": 24 * 60, "7d": 7 * 24 * 60}
PAGE = 500
SCHEDULES_BOUND = 50_000
"""Schedules read for one forecast; past it the forecast says it is truncated."""


class HerdView(BaseModel):
    at: str = Field(description="The minute's start (RFC 3339)")
    fires: int
    schedules: list[str] = Field(description="Schedules firing in that minute (at most 20)")
    more: int = Field(description="Further schedules firing in that minute")


class ForecastView(BaseModel):
    start: str = Field(description="The first minute of the window (RFC 3339)")
    end: str
    minute_counts: list[int] = Field(description="Fires in each minute of the window, in order")
    total: int
    peak: int
    threshold: int = Field(description="A minute with at least this many fires is a herd")
    herds: list[HerdView]
    schedules: int = Field(description="Active schedules counted")
    truncated: bool = Field(description="Some schedules or fires were left out (bounds)")


async def _active(request: web.Request) -> tuple[list[Planned], bool]:
    where = ScheduleFilter(status=str(ScheduleStatus.ACTIVE))
    views, prefix = request.app[VIEWS], tenancy.id_prefix(request)
    found: list[Planned] = []
    cursor: str | None = None
    while len(found) < SCHEDULES_BOUND:
        records, cursor = await views.list_schedules(where, cursor, PAGE, prefix)
        found += [_planned(r) for r in records]
        if cursor is None:
            return found, False
    return found, True


def _planned(record: dict[str, Any]) -> Planned:
    remaining = record["max_actions"]
    if remaining is not None:
        remaining = max(remaining - (record.get("info") or {}).get("action_count", 0), 0)
    return Planned(tenancy.bare(record["id"]), render.spec_of(record["spec"]), remaining)


@route(
    "GET",
    "/v1/forecast",
    summary="Fires per minute over the next 24 hours or 7 days, with the herds",
    tag="schedules",
    scope=Scope.SCHEDULES_READ,
    replies=(Reply(200, "The forecast of the namespace's active schedules", ForecastView),),
    problems=(422, 503),
    params=(
        one_of("window", "How far ahead (default 24h)", list(WINDOWS)),
        Param(
            "min_herd",
            f"Fewest fires in a minute that make a herd (1-100000, default {MIN_HERD})",
            {"type": "integer", "minimum": 1, "maximum": 100_000, "default": MIN_HERD},
        ),
    ),
)
async def get_forecast(request: web.Request) -> web.StreamResponse:
    minutes = WINDOWS[query_choice(request, "window", list(WINDOWS)) or "24h"]
    min_herd = query_int(request, "min_herd", MIN_HERD, 1, 100_000)
    planned, cut = await _active(request)
    result = forecast(planned, request.app[CLOCK].now_ms(), minutes, min_herd)
    minute = 60_000
    return json_response(
        {
            "start": to_rfc3339(result.start_ms),
            "end": to_rfc3339(result.start_ms + minutes * minute),
            "minute_counts": result.counts,
            "total": result.total,
            "peak": max(result.counts, default=0),
            "threshold": result.threshold,
            "herds": [
                {
                    "at": to_rfc3339(result.start_ms + h.minute * minute),
                    "fires": h.fires,
                    "schedules": h.schedules,
                    "more": h.more,
                }
                for h in result.herds
            ],
            "schedules": len(planned),
            "truncated": cut or result.truncated,
        }
    )

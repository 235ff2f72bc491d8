"""The load forecast page: fires per minute as an SVG chart (no script needed), the herds
marked, and the schedules that make each herd."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from service.console.client import Api
from service.console.guard import console, need
from service.console.session import Visitor
from service.console.view import page

COLUMNS = 720
"""Bars drawn at most: a bar shows the busiest minute of its stretch."""
HEIGHT = 160


@dataclass(frozen=True)
class Bar:
    x: int
    height: int
    fires: int
    herd: bool
    minute: int


def bars(counts: list[int], threshold: int) -> list[Bar]:
    """One bar per stretch of ``len(counts) / COLUMNS`` minutes, at the stretch's peak."""
    if not counts:
        return []
    step = max(1, -(-len(counts) // COLUMNS))
    peak = max(max(counts), 1)
    out = []
    for x, first in enumerate(range(0, len(counts), step)):
        stretch = counts[first : first + step]
        top = max(stretch)
        if top:
            minute = first + stretch.index(top)
            out.append(Bar(x, max(1, round(top * HEIGHT / peak)), top, top >= threshold, minute))
    return out


@console
async def forecast_page(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    window = "7d" if request.query.get("window") == "7d" else "24h"
    params: dict[str, Any] = {"window": window}
    if request.query.get("min_herd", "").isdigit():
        params["min_herd"] = request.query["min_herd"]
    body = need(await api.get("/v1/forecast", **params))
    counts = body["minute_counts"]
    step = max(1, -(-len(counts) // COLUMNS))
    return page(
        request,
        who,
        "forecast.html",
        f=body,
        window=window,
        bars=bars(counts, body["threshold"]),
        columns=-(-len(counts) // step),
        height=HEIGHT,
        minutes_per_bar=step,
    )

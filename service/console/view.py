"""Rendering: the Jinja environment over the package's templates, and page answers."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import jinja2
import orjson
from aiohttp import web

from service.console.session import CSRF_FIELD, Visitor, keep_csrf

PARTITIONS = web.AppKey("console_partitions", int)
LIVE_OVERLAP_MS = 3000
TRACE_URL_VAR = "CRONSTREAM_TRACE_URL"
"""A trace viewer's address with ``{trace_id}`` in it: run pages link trace ids there."""
TRIGGERS = (
    ("", "All"),
    ("manual", "Manual"),
    ("schedule", "Scheduled"),
    ("api", "API"),
    ("backfill", "Backfill"),
)
TRIGGER_NAMES = {value: name for value, name in TRIGGERS if value}
FAILED = frozenset({"failed", "timedout", "deadlettered"})


def _short(instant: str | None) -> str:
    """'2026-01-15T12:00:00.123Z' -> '2026-01-15 12:00:00Z' (UTC, to the second)."""
    if not instant:
        return "—"
    return instant.replace("T", " ")[:19] + "Z"


def _query(base: Mapping[str, str | None], **changes: str | None) -> str:
    merged = {**base, **changes}
    return urlencode({k: v for k, v in merged.items() if v})


def chip(schedule: Mapping[str, Any]) -> str:
    """The status chip of a list row: a failing active schedule shows 'error'."""
    if schedule["status"] == "active" and schedule.get("last_run_status") in FAILED:
        return "error"
    return str(schedule["status"])


def trace_link(trace_id: str | None) -> str | None:
    template = os.environ.get(TRACE_URL_VAR, "")
    if not trace_id or "{trace_id}" not in template:
        return None
    return template.replace("{trace_id}", trace_id)


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("service.console", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short"] = _short
    env.filters["json"] = lambda value: orjson.dumps(value).decode()
    env.globals.update(
        query=_query,
        chip=chip,
        trigger_names=TRIGGER_NAMES,
        triggers=TRIGGERS,
        csrf_field=CSRF_FIELD,
        trace_link=trace_link,
    )
    return env


def _now_position(request: web.Request) -> str:
    """Where a page's live updates start: a little before now, since the views the page
    was drawn from may lag the log (an event seen twice costs one more refresh; one
    missed would leave the page stale)."""
    since_ms = int(time.time() * 1000) - LIVE_OVERLAP_MS
    return ".".join([f"{since_ms}-0"] * request.app[PARTITIONS])


def page(
    request: web.Request, who: Visitor, template: str, status: int = 200, **context: Any
) -> web.Response:
    html = (
        environment()
        .get_template(template)
        .render(
            who=who,
            path=request.path,
            here=request.path_qs,
            stream_after=_now_position(request),
            **context,
        )
    )
    response = web.Response(text=html, status=status, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    keep_csrf(request, response, who)
    return response


def redirect(location: str) -> web.Response:
    """303 See Other: a form's answer (POST-redirect-GET), cookies may be set on it."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})

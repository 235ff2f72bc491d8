"""The console's reading pages: schedules, a schedule, runs, a run, the forecast."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from aiohttp import web

from service.console.client import Answer, Api
from service.console.guard import console, need
from service.console.session import Visitor
from service.console.view import page
from service.domain.runs import TERMINAL_STATUSES, RunStatus

PAGE = 50
TEXT_SCAN_PAGES = 10
"""A text filter reads at most this many API pages (of 500) per console page."""
SCAN_PAGE = 500
FILTERS = ("workflow_id", "status", "tag")
RUN_FILTERS = ("trigger", "status", "schedule_id", "workflow_id")
REVIVABLE = frozenset({RunStatus.FAILED, RunStatus.DEAD_LETTERED})
"""Runs a retry may queue again (the API's rule, so the button shows only where it works)."""
HISTORY_PAGES = 10
HISTORY_PAGE = 1000
TIMELINE_BEFORE = timedelta(hours=24)


def _matches(schedule: dict[str, Any], text: str) -> bool:
    words = (schedule["id"], schedule["name"], schedule["workflow_id"], *schedule["tags"])
    return any(text in word.lower() for word in words)


async def _text_search(
    api: Api, filters: dict[str, str | None], text: str, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Schedules whose id, name, workflow or tags contain ``text``: pages of the API read
    in id order until a console page is full (or the scan bound is reached)."""
    found: list[dict[str, Any]] = []
    for _ in range(TEXT_SCAN_PAGES):
        body = need(await api.get("/v1/schedules", **filters, limit=str(SCAN_PAGE), cursor=cursor))
        for item in body["items"]:
            if _matches(item, text.lower()) and len(found) < PAGE:
                found.append(item)
                cursor = item["id"]
        cursor = body["next_cursor"] if len(found) < PAGE else cursor
        if cursor is None or len(found) >= PAGE:
            break
    return found, cursor


@console
async def schedules_page(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    query = request.query
    filters = {name: query.get(name) or None for name in FILTERS}
    text = query.get("q", "").strip()
    cursor = query.get("cursor") or None
    if text:
        items, next_cursor = await _text_search(api, filters, text, cursor)
    else:
        body = need(await api.get("/v1/schedules", **filters, limit=str(PAGE), cursor=cursor))
        items, next_cursor = body["items"], body["next_cursor"]
    workflows = await api.get("/v1/workflows", limit="500")
    return page(
        request,
        who,
        "schedules.html",
        schedules=items,
        next_cursor=next_cursor,
        filters={**filters, "q": text or None},
        workflows=workflows.body["items"] if workflows.ok else [],
        statuses=("active", "paused", "completed"),
        live=True,
    )


def _range(request: web.Request) -> tuple[str, str]:
    now = datetime.now(UTC).replace(microsecond=0)
    start = request.query.get("from") or (now - TIMELINE_BEFORE).isoformat()
    end = request.query.get("to") or now.isoformat()
    return start.replace("+00:00", "Z"), end.replace("+00:00", "Z")


@console
async def schedule_page(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    sid = quote(request.match_info["id"], safe="")
    schedule = need(await api.get(f"/v1/schedules/{sid}"))
    start, end = _range(request)
    fires = await api.get(f"/v1/schedules/{sid}/fires", **{"from": start, "to": end})
    upcoming = await api.get(f"/v1/schedules/{sid}/next-runs", count="10")
    runs = await api.get(f"/v1/schedules/{sid}/runs", limit="20")
    history = await _history(api, sid)
    return page(
        request,
        who,
        "schedule.html",
        s=schedule,
        start=start,
        end=end,
        fires=_or_problem(fires),
        upcoming=_or_problem(upcoming),
        runs=_or_problem(runs),
        history=_or_problem(history),
        live=True,
    )


async def _history(api: Api, sid: str) -> Answer:
    """The schedule's history, oldest first: every page, up to HISTORY_PAGES of them
    (a schedule that fires often has many events, and its latest changes come last)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(HISTORY_PAGES):
        answer = await api.get(
            f"/v1/schedules/{sid}/history", limit=str(HISTORY_PAGE), cursor=cursor
        )
        if not answer.ok:
            return answer
        items += answer.body["items"]
        cursor = answer.body["next_cursor"]
        if cursor is None:
            break
    return Answer(200, {"items": items, "truncated": cursor is not None})


def _or_problem(answer: Answer) -> dict[str, Any]:
    """A section's data, or its problem (a token may read schedules but not runs)."""
    if answer.ok and isinstance(answer.body, dict):
        return answer.body
    body = answer.body if isinstance(answer.body, dict) else {}
    return {"problem": body.get("detail") or f"the API answered {answer.status}"}


@console
async def runs_page(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    filters = {name: request.query.get(name) or None for name in RUN_FILTERS}
    cursor = request.query.get("cursor") or None
    body = need(await api.get("/v1/runs", **filters, limit=str(PAGE), cursor=cursor))
    return page(
        request,
        who,
        "runs.html",
        runs=body["items"],
        next_cursor=body["next_cursor"],
        filters=filters,
        statuses=[str(s) for s in RunStatus],
        live=True,
    )


async def _trace_id(api: Api, run: dict[str, Any]) -> str | None:
    """The trace of a run's fire, from its ScheduleFired event's traceparent."""
    if not run.get("schedule_id"):
        return None
    history = await _history(api, quote(run["schedule_id"], safe=""))
    if not history.ok:
        return None
    for item in reversed(history.body["items"]):
        if item["type"] == "ScheduleFired" and item["data"].get("run_id") == run["id"]:
            parent = str(item["meta"].get("traceparent") or "")
            parts = parent.split("-")
            return parts[1] if len(parts) == 4 and parts[1].strip("0") else None
    return None


@console
async def run_page(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    run = need(await api.get(f"/v1/runs/{quote(request.match_info['id'], safe='')}"))
    return page(
        request,
        who,
        "run.html",
        run=run,
        trace_id=await _trace_id(api, run),
        finished=run["status"] in TERMINAL_STATUSES,
        revivable=run["status"] in REVIVABLE,
        live=True,
    )

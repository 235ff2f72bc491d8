"""The schedule editor: the form, what it sends to the API, and its errors by field."""

from __future__ import annotations

import functools
import secrets
import zoneinfo
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from service.console.client import Answer, Api
from service.console.guard import console, need
from service.console.session import Visitor
from service.console.view import page
from service.domain.policies import CatchupPolicy, OverlapPolicy

PRESETS = (
    ("Every minute", "* * * * *"),
    ("Every 15 minutes", "*/15 * * * *"),
    ("Hourly", "0 * * * *"),
    ("Daily at 02:00", "0 2 * * *"),
    ("Weekdays at 09:00", "0 9 * * MON-FRI"),
    ("Weekly, Sunday 03:00", "0 3 * * SUN"),
    ("Monthly, 1st at 00:00", "0 0 1 * *"),
)
SPEC_FIELDS = ("cron", "intervals", "exclude_cron", "timezone", "jitter", "start_at", "end_at")


@functools.lru_cache(maxsize=1)
def zones() -> list[str]:
    return sorted(zoneinfo.available_timezones())


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _interval(text: str) -> dict[str, str]:
    every, _, offset = text.partition("/")
    return {"every": every.strip(), **({"offset": offset.strip()} if offset.strip() else {})}


def form_values(schedule: Mapping[str, Any] | None) -> dict[str, str]:
    """The form's fields for an existing schedule (empty ones for a new schedule)."""
    if schedule is None:
        return {"timezone": "UTC", "overlap": "skip", "catchup": "latest", "input": ""}
    spec, policy = schedule["spec"], schedule["policy"]
    intervals = [
        i["every"] + (f"/{i['offset']}" if i.get("offset") not in (None, "0s", 0) else "")
        for i in spec.get("intervals", [])
    ]
    return {
        "id": schedule["id"],
        "name": schedule["name"],
        "workflow_id": schedule["workflow_id"],
        "description": schedule["description"],
        "cron": "\n".join(spec.get("cron", [])),
        "intervals": "\n".join(intervals),
        "exclude_cron": "\n".join(spec.get("exclude_cron", [])),
        "timezone": spec.get("timezone", "UTC"),
        "jitter": _text(spec.get("jitter")),
        "start_at": spec.get("start_at") or "",
        "end_at": spec.get("end_at") or "",
        "overlap": policy["overlap"],
        "catchup": policy["catchup"],
        "input": ""
        if schedule["input"] is None
        else orjson.dumps(schedule["input"], option=orjson.OPT_INDENT_2).decode(),
        "tags": ", ".join(schedule["tags"]),
        "max_actions": "" if schedule["max_actions"] is None else str(schedule["max_actions"]),
        "version": str(schedule["version"]),
    }


def _text(value: Any) -> str:
    return "" if value in (None, 0, "0s") else str(value)


def spec_body(form: Mapping[str, str]) -> dict[str, Any]:
    return {
        "cron": _lines(form.get("cron", "")),
        "intervals": [_interval(line) for line in _lines(form.get("intervals", ""))],
        "exclude_cron": _lines(form.get("exclude_cron", "")),
        "timezone": form.get("timezone", "").strip() or "UTC",
        "jitter": form.get("jitter", "").strip() or "0s",
        "start_at": form.get("start_at", "").strip() or None,
        "end_at": form.get("end_at", "").strip() or None,
    }


def schedule_body(form: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The API body the form asks for, or the fields the form itself cannot read."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "description": form.get("description", "").strip(),
        "workflow_id": form.get("workflow_id", "").strip(),
        "spec": spec_body(form),
        "policy": {
            "overlap": form.get("overlap") or "skip",
            "catchup": form.get("catchup") or "latest",
        },
        "tags": [t.strip() for t in form.get("tags", "").split(",") if t.strip()],
        "max_actions": None,
        "input": None,
    }
    raw_input = form.get("input", "").strip()
    if raw_input:
        try:
            body["input"] = orjson.loads(raw_input)
        except orjson.JSONDecodeError as exc:
            errors["input"] = f"not JSON: {exc}"
    max_actions = form.get("max_actions", "").strip()
    if max_actions:
        if max_actions.isdigit():
            body["max_actions"] = int(max_actions)
        else:
            errors["max_actions"] = "must be a whole number"
    return body, errors


def field_of(api_field: str) -> str:
    """The form field an API error names: 'spec.cron.0' -> 'cron', 'input.depth' -> 'input'."""
    parts = api_field.split(".")
    if parts[0] in ("spec", "policy") and len(parts) > 1:
        return parts[1]
    return parts[0]


def form_errors(answer: Answer) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name, message in answer.errors().items():
        field = field_of(name)
        known = field in (
            *SPEC_FIELDS,
            "overlap",
            "catchup",
            "input",
            "name",
            "workflow_id",
            "id",
            "tags",
            "max_actions",
            "description",
        )
        key = field if known else "body"
        errors[key] = f"{errors[key]}; {message}" if key in errors else message
    return errors


async def render_editor(
    request: web.Request,
    who: Visitor,
    api: Api,
    values: dict[str, str],
    errors: dict[str, str],
    *,
    editing: str | None,
    status: int = 200,
) -> web.StreamResponse:
    workflows = need(await api.get("/v1/workflows", limit="500"))["items"]
    return page(
        request,
        who,
        "editor.html",
        status,
        values=values,
        errors=errors,
        editing=editing,
        workflows=workflows,
        presets=PRESETS,
        zones=zones(),
        overlaps=[str(p) for p in OverlapPolicy],
        catchups=[str(p) for p in CatchupPolicy],
        idempotency_key=values.get("idempotency_key") or secrets.token_urlsafe(16),
    )


@console
async def new_schedule(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    values = form_values(None)
    values["workflow_id"] = request.query.get("workflow_id", "")
    return await render_editor(request, who, api, values, {}, editing=None)


@console
async def edit_schedule(request: web.Request, who: Visitor, api: Api) -> web.StreamResponse:
    schedule = need(await api.get(f"/v1/schedules/{quote(request.match_info['id'], safe='')}"))
    return await render_editor(request, who, api, form_values(schedule), {}, editing=schedule["id"])

"""Schedule endpoints: create, list, read, change, pause/resume, delete, history, next runs."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from projections.read import ScheduleFilter
from service.api import render
from service.api.audit import AuditPage
from service.api.context import (
    CLOCK,
    COMMANDS,
    KEYS,
    STORE,
    VIEWS,
    etag,
    json_response,
    parse_json,
    query_int,
    read_body,
    read_command,
    request_context,
)
from service.api.models import (
    NoteBody,
    ScheduleCreate,
    SchedulePage,
    ScheduleView,
)
from service.api.problems import field_errors
from service.api.routing import Param, route
from service.audit import history, replay
from service.commands import SCHEDULES, Outcome, RequestContext
from service.domain import schedule as sched
from service.domain.ids import id_from_key, is_valid_id, new_id
from service.domain.policies import ScheduleStatus
from service.domain.spec import SpecPreview, preview
from service.domain.timeutil import parse_instant
from service.errors import IdempotencyKeyReused, InvalidInput, ScheduleNotFound
from service.store.eventstore import StoredEvent

TAG = "schedules"
PATCHABLE = frozenset(sched.ScheduleConfig.model_fields)
ID_PARAM = Param("id", "Schedule id", location="path", required=True)
IF_MATCH = Param("If-Match", "ETag of the version this change is based on", location="header")
IDEM_KEY = Param(
    "Idempotency-Key", "Retry-safe key: a retry returns the first response", location="header"
)


def schedule_id(request: web.Request) -> str:
    sid = request.match_info["id"]
    if not is_valid_id(sid):
        raise ScheduleNotFound(sid)
    return sid


async def respond(
    request: web.Request, sid: str, outcome: Outcome, status: int = 200
) -> web.Response:
    record = await request.app[VIEWS].schedule(sid)
    if record is None:
        if outcome.positions:  # written, but the view is not there yet
            return json_response(
                {"id": sid, "version": outcome.version, "position": outcome.positions[-1]},
                status=202,
                headers={"ETag": etag(outcome.version)},
            )
        raise ScheduleNotFound(sid)
    body = render.schedule(record, request.app[CLOCK].now_ms())
    return json_response(body, status=status, headers={"ETag": etag(record["version"])})


async def _replayed(request: web.Request, sid: str, ctx: RequestContext) -> web.Response | None:
    """The first response to a request repeated with the same Idempotency-Key, if any."""
    if ctx.idempotency_key is None:
        return None
    record = await request.app[STORE].idempotency_record(sid, ctx.storage_key())
    if record is None:
        return None
    if record.get("fp") != ctx.fingerprint:
        raise IdempotencyKeyReused(ctx.idempotency_key)
    headers = {"Idempotent-Replayed": "true"}
    if "response_body" in record:
        return web.Response(
            status=int(record["response_status"]),
            body=record["response_body"].encode(),
            content_type="application/json",
            headers=headers,
        )
    response = await respond(request, sid, Outcome(int(record["version"]), []), status=201)
    response.headers.update(headers)
    return response


@route(
    "POST",
    "/v1/schedules",
    summary="Create a schedule",
    tag=TAG,
    body=ScheduleCreate,
    response=ScheduleView,
    status=201,
    headers=(IDEM_KEY,),
)
async def create_schedule(request: web.Request) -> web.StreamResponse:
    ctx, data = await read_command(request)
    body = ScheduleCreate.model_validate(data)
    if body.id is not None:
        sid = body.id
    elif ctx.idempotency_key is not None:
        sid = id_from_key("sch", ctx.actor, ctx.idempotency_key)
    else:
        sid = new_id("sch")
    replayed = await _replayed(request, sid, ctx)
    if replayed is not None:
        return replayed
    config = sched.ScheduleConfig.model_validate(
        body.model_dump(mode="json", exclude={"id", "paused", "note"})
    )
    command = sched.CreateSchedule(sid, config, paused=body.paused, note=body.note)
    outcome = await request.app[COMMANDS].schedule(sid, command, ctx)
    response = await respond(request, sid, outcome, status=201)
    response.headers["Location"] = f"/v1/schedules/{sid}"
    if ctx.idempotency_key is not None and response.status == 201:
        assert isinstance(response.body, bytes)
        await request.app[STORE].save_response(sid, ctx.storage_key(), 201, response.body)
    return response


@route(
    "GET",
    "/v1/schedules",
    summary="List schedules",
    tag=TAG,
    response=SchedulePage,
    params=(
        Param("workflow_id", "Only schedules of this workflow"),
        Param("status", "active, paused or completed"),
        Param("tag", "Only schedules with this tag"),
        Param("limit", "Page size (1-500, default 50)", "integer"),
        Param("cursor", "next_cursor of the previous page"),
    ),
)
async def list_schedules(request: web.Request) -> web.StreamResponse:
    status = request.query.get("status")
    if status is not None and status not in {s.value for s in ScheduleStatus}:
        raise InvalidInput.one("status", "must be one of active, paused, completed")
    where = ScheduleFilter(
        workflow_id=request.query.get("workflow_id") or None,
        status=status,
        tag=request.query.get("tag") or None,
    )
    limit = query_int(request, "limit", 50, 1, 500)
    records, cursor = await request.app[VIEWS].list_schedules(
        where, request.query.get("cursor") or None, limit
    )
    now = request.app[CLOCK].now_ms()
    return json_response(
        {"items": [render.schedule(r, now) for r in records], "next_cursor": cursor}
    )


@route(
    "GET",
    "/v1/schedules/{id}",
    summary="Read a schedule (now, or as it stood at an instant or log position)",
    tag=TAG,
    response=ScheduleView,
    params=(
        ID_PARAM,
        Param("at", "RFC 3339 instant: the schedule as it stood then, rebuilt from the log"),
        Param("position", "Log position (stream id or feed cursor): the schedule as of it"),
    ),
)
async def get_schedule(request: web.Request) -> web.StreamResponse:
    sid = schedule_id(request)
    at_raw, position = request.query.get("at"), request.query.get("position")
    if at_raw is None and position is None:
        return await respond(request, sid, Outcome(0, []))
    if at_raw is not None and position is not None:
        raise InvalidInput.one("at", "give either at or position, not both")
    try:
        point = (
            replay.Point(at=parse_instant(at_raw))
            if at_raw is not None
            else replay.position_point(position or "", request.app[KEYS], sid)
        )
    except ValueError as exc:
        raise InvalidInput.one("at" if at_raw is not None else "position", str(exc)) from None
    result = await replay.replay_schedule_indexed(request.app[STORE], sid, point)
    record = result.schedule(sid)
    if record is None:
        raise ScheduleNotFound(sid)
    now = point.at if point.at is not None else (result.last_time or 0)
    return json_response(
        render.schedule(record, now),
        headers={"ETag": etag(record["version"]), "Replayed-Through": record["position"]},
    )


@route(
    "PATCH",
    "/v1/schedules/{id}",
    summary="Change a schedule (JSON merge patch)",
    tag=TAG,
    body=ScheduleCreate,
    response=ScheduleView,
    params=(ID_PARAM,),
    headers=(IF_MATCH,),
)
async def patch_schedule(request: web.Request) -> web.StreamResponse:
    sid = schedule_id(request)
    raw = await read_body(request)
    ctx = request_context(request, raw)
    patch = parse_json(raw)
    if not isinstance(patch, dict):
        raise InvalidInput.one("body", "must be a JSON object (a JSON merge patch)")
    for key in patch:
        if key in ("paused", "status"):
            raise InvalidInput.one(key, "use POST /v1/schedules/{id}/pause or /resume")
        if key == "id":
            raise InvalidInput.one("id", "a schedule's id cannot change")
        if key not in PATCHABLE:
            raise InvalidInput.one(key, "Extra inputs are not permitted")
    commands = request.app[COMMANDS]
    state, _ = await commands.load(SCHEDULES, sid)
    if state is None or state.deleted:
        raise ScheduleNotFound(sid)
    merged = merge_patch(state.config.model_dump(mode="json"), patch)
    try:
        config = sched.ScheduleConfig.model_validate(merged)
    except ValidationError as exc:
        raise InvalidInput(field_errors(exc)) from None
    outcome = await commands.schedule(sid, sched.UpdateSchedule(sid, config), ctx)
    return await respond(request, sid, outcome)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


async def _note_command(
    request: web.Request, make: type[sched.PauseSchedule] | type[sched.ResumeSchedule]
) -> web.StreamResponse:
    sid = schedule_id(request)
    ctx, data = await read_command(request, allow_empty=True)
    body = NoteBody.model_validate(data)
    outcome = await request.app[COMMANDS].schedule(sid, make(sid, body.note), ctx)
    return await respond(request, sid, outcome)


@route(
    "POST",
    "/v1/schedules/{id}/pause",
    summary="Pause a schedule",
    tag=TAG,
    body=NoteBody,
    response=ScheduleView,
    params=(ID_PARAM,),
    headers=(IF_MATCH,),
)
async def pause_schedule(request: web.Request) -> web.StreamResponse:
    return await _note_command(request, sched.PauseSchedule)


@route(
    "POST",
    "/v1/schedules/{id}/resume",
    summary="Resume a paused schedule",
    tag=TAG,
    body=NoteBody,
    response=ScheduleView,
    params=(ID_PARAM,),
    headers=(IF_MATCH,),
)
async def resume_schedule(request: web.Request) -> web.StreamResponse:
    return await _note_command(request, sched.ResumeSchedule)


@route(
    "DELETE",
    "/v1/schedules/{id}",
    summary="Delete a schedule",
    tag=TAG,
    status=204,
    params=(ID_PARAM,),
    headers=(IF_MATCH,),
)
async def delete_schedule(request: web.Request) -> web.StreamResponse:
    sid = schedule_id(request)
    ctx = request_context(request)
    await request.app[COMMANDS].schedule(sid, sched.DeleteSchedule(sid), ctx)
    return web.Response(status=204)


@route(
    "GET",
    "/v1/schedules/{id}/history",
    summary="A schedule's events, oldest first, with what changed and outcomes",
    tag=TAG,
    response=AuditPage,
    params=(
        ID_PARAM,
        Param("limit", "Page size (1-1000, default 100)", "integer"),
        Param("cursor", "next_cursor of the previous page"),
    ),
)
async def schedule_history(request: web.Request) -> web.StreamResponse:
    sid = schedule_id(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    offset = query_int(request, "cursor", 0, 0, 2**62)
    store = request.app[STORE]
    events = await store.read_aggregate(sched.KIND, sid, offset, limit)
    if not events and offset == 0:
        raise ScheduleNotFound(sid)
    total = await store.count_aggregate(sched.KIND, sid)
    prior: list[StoredEvent] = []
    if offset and any(e.type in history.STATEFUL for e in events):
        # the diff of a change needs the state before it: fold the earlier events
        for start in range(0, offset, history.PRIOR_PAGE):
            prior += await store.read_aggregate(
                sched.KIND, sid, start, min(history.PRIOR_PAGE, offset - start)
            )
    following = offset + len(events)
    return json_response(
        {
            "items": history.annotate(prior, events),
            "next_cursor": str(following) if following < total else None,
        }
    )


@route(
    "GET",
    "/v1/schedules/{id}/next-runs",
    summary="The schedule's next fire times",
    tag=TAG,
    response=SpecPreview,
    params=(
        ID_PARAM,
        Param("count", "How many (1-1000, default 10)", "integer"),
        Param("after", "RFC 3339 instant to start after (default now)"),
    ),
)
async def next_runs(request: web.Request) -> web.StreamResponse:
    sid = schedule_id(request)
    record = await request.app[VIEWS].schedule(sid)
    if record is None:
        raise ScheduleNotFound(sid)
    count = query_int(request, "count", 10, 1, 1000)
    after_raw = request.query.get("after")
    try:
        after = parse_instant(after_raw) if after_raw else request.app[CLOCK].now_ms()
    except ValueError as exc:
        raise InvalidInput.one("after", str(exc)) from None
    result = preview(render.spec_of(record["spec"]), after, count, schedule_id=sid)
    return json_response(result.model_dump(mode="json"))

"""Schedule endpoints: create, list, read, change, pause/resume, delete, history, next runs."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from projections.read import ScheduleFilter
from service.api import namespaces, render, tenancy
from service.api.audit import AuditPage
from service.api.context import (
    CLOCK,
    COMMANDS,
    KEYS,
    STORE,
    VIEWS,
    client_model,
    etag,
    json_response,
    parse_json,
    query_choice,
    query_int,
    query_text,
    read_body,
    read_command,
    request_context,
)
from service.api.models import (
    NoteBody,
    ScheduleCreate,
    SchedulePage,
    ScheduleView,
    Written,
)
from service.api.namespaces import QUOTAS
from service.api.params import (
    A_FEED_POSITION,
    ACTOR,
    AN_ID,
    ID_CURSOR,
    IDEMPOTENCY_KEY,
    IF_MATCH,
    id_filter,
    instant,
    limit,
    one_of,
    path_id,
    position_pattern,
)
from service.api.problems import field_errors
from service.api.routing import JSON, MERGE_PATCH, Param, Reply, route
from service.audit import history, replay
from service.commands import SCHEDULES, Outcome, RequestContext
from service.domain import schedule as sched
from service.domain.ids import ID_PATTERN, id_from_key, is_valid_id, new_id
from service.domain.namespaces import over_quota, schedules_full
from service.domain.policies import ScheduleStatus
from service.domain.schedule import TAG_PATTERN
from service.domain.spec import SpecPreview, preview
from service.domain.timeutil import parse_instant
from service.domain.tokens import Scope
from service.errors import (
    Conflict,
    FieldError,
    IdempotencyKeyReused,
    InvalidInput,
    ScheduleNotFound,
)
from service.store.eventstore import StoredEvent

TAG = "schedules"
PATCHABLE = frozenset(sched.ScheduleConfig.model_fields)
ID_PARAM = path_id("Schedule")
STATUSES = [s.value for s in ScheduleStatus]
HISTORY_END = 2**62
# a change answers the schedule, or 202 when its view had not caught up in time
CHANGED = (
    Reply(200, "The schedule as changed", ScheduleView, headers=("ETag",)),
    Reply(202, "Written; the view had not applied it yet: read it again", Written, ("ETag",)),
)


def schedule_id(request: web.Request) -> str:
    sid = request.match_info["id"]
    if not is_valid_id(sid):
        raise ScheduleNotFound(sid)
    return tenancy.internal(request, sid)


async def respond(
    request: web.Request, sid: str, outcome: Outcome, status: int = 200
) -> web.Response:
    record = await request.app[VIEWS].schedule(sid)
    if record is None:
        if outcome.positions:  # written, but the view is not there yet
            return json_response(
                {
                    "id": tenancy.bare(sid),
                    "version": outcome.version,
                    "position": outcome.positions[-1],
                },
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
    scope=Scope.SCHEDULES_WRITE,
    body=ScheduleCreate,
    replies=(
        Reply(201, "Created", ScheduleView, ("ETag", "Location", "Idempotent-Replayed")),
        Reply(202, "Written; the view had not applied it yet", Written, ("ETag", "Location")),
    ),
    problems=(409, 413, 422, 503),
    params=(IDEMPOTENCY_KEY, ACTOR),
)
async def create_schedule(request: web.Request) -> web.StreamResponse:
    ctx, data = await read_command(request)
    body = client_model(ScheduleCreate, data)
    if body.id is not None:
        sid = tenancy.internal(request, body.id)
    elif ctx.idempotency_key is not None:
        sid = tenancy.internal(request, id_from_key("sch", ctx.actor, ctx.idempotency_key))
    else:
        sid = tenancy.internal(request, new_id("sch"))
    replayed = await _replayed(request, sid, ctx)
    if replayed is not None:
        return replayed
    config = sched.ScheduleConfig.model_validate(
        body.model_dump(mode="json", exclude={"id", "paused", "note"})
        | {"workflow_id": tenancy.internal(request, body.workflow_id)}
    )
    await within_quota(request, config, creating=True)
    command = sched.CreateSchedule(sid, config, paused=body.paused, note=body.note)
    outcome = await request.app[COMMANDS].schedule(sid, command, ctx)
    response = await respond(request, sid, outcome, status=201)
    response.headers["Location"] = f"/v1/schedules/{tenancy.bare(sid)}"
    if ctx.idempotency_key is not None and response.status == 201:
        assert isinstance(response.body, bytes)
        await request.app[STORE].save_response(sid, ctx.storage_key(), 201, response.body)
    return response


@route(
    "GET",
    "/v1/schedules",
    summary="List schedules",
    tag=TAG,
    scope=Scope.SCHEDULES_READ,
    replies=(Reply(200, "A page of schedules, in id order", SchedulePage),),
    problems=(422, 503),
    params=(
        id_filter("workflow_id", "Only schedules of this workflow"),
        one_of("status", "Only schedules in this status", STATUSES),
        Param("tag", "Only schedules with this tag", {"type": "string", "pattern": TAG_PATTERN}),
        limit(50, 500),
        ID_CURSOR,
    ),
)
async def list_schedules(request: web.Request) -> web.StreamResponse:
    where = ScheduleFilter(
        workflow_id=tenancy.internal_or_none(
            request, query_text(request, "workflow_id", ID_PATTERN, AN_ID)
        ),
        status=query_choice(request, "status", STATUSES),
        tag=query_text(request, "tag", TAG_PATTERN, f"a tag matching {TAG_PATTERN}"),
    )
    size = query_int(request, "limit", 50, 1, 500)
    after = tenancy.internal_or_none(request, query_text(request, "cursor", ID_PATTERN, AN_ID))
    records, cursor = await request.app[VIEWS].list_schedules(
        where, after, size, tenancy.id_prefix(request)
    )
    now = request.app[CLOCK].now_ms()
    return json_response(
        {
            "items": [render.schedule(r, now) for r in records],
            "next_cursor": cursor and tenancy.bare(cursor),
        }
    )


@route(
    "GET",
    "/v1/schedules/{id}",
    summary="Read a schedule (now, or as it stood at an instant or log position)",
    tag=TAG,
    scope=Scope.SCHEDULES_READ,
    replies=(Reply(200, "The schedule", ScheduleView, ("ETag", "Replayed-Through")),),
    problems=(404, 422, 503),
    params=(
        ID_PARAM,
        instant("at", "The schedule as it stood then, rebuilt from the log"),
        Param(
            "position",
            "Log position (stream id or feed cursor): the schedule as of it",
            lambda partitions: {"type": "string", "pattern": position_pattern(partitions)},
        ),
    ),
)
async def get_schedule(request: web.Request) -> web.StreamResponse:
    sid = schedule_id(request)
    at_raw, position = request.query.get("at"), request.query.get("position")
    if at_raw is None and position is None:
        return await respond(request, sid, Outcome(0, []))
    if at_raw is not None and position is not None:
        raise InvalidInput.one("at", "give either at or position, not both")
    if position is not None:
        pattern = position_pattern(request.app[KEYS].partitions)
        query_text(request, "position", pattern, f"a stream id (ms-seq) or {A_FEED_POSITION}")
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
    summary="Change a schedule (JSON merge patch, RFC 7396)",
    tag=TAG,
    scope=Scope.SCHEDULES_WRITE,
    body=sched.ScheduleConfig,
    body_types=(MERGE_PATCH, JSON),
    replies=CHANGED,
    problems=(404, 412, 413, 422, 503),
    params=(ID_PARAM, IF_MATCH, ACTOR),
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
    current = state.config.model_dump(mode="json")
    current["workflow_id"] = tenancy.bare(current["workflow_id"])
    merged = merge_patch(current, patch)
    try:
        config = client_model(sched.ScheduleConfig, merged)
    except ValidationError as exc:
        raise InvalidInput(field_errors(exc)) from None
    config = config.model_copy(
        update={"workflow_id": tenancy.internal(request, config.workflow_id)}
    )
    await within_quota(request, config, creating=False)
    outcome = await commands.schedule(sid, sched.UpdateSchedule(sid, config), ctx)
    return await respond(request, sid, outcome)


async def within_quota(
    request: web.Request, config: sched.ScheduleConfig, *, creating: bool
) -> None:
    """Refuse ``config`` past the namespace's quota: 422 naming the field, or 409 when
    the namespace holds its maximum of schedules (checked against the views, so creates
    racing each other may pass it together)."""
    namespace = namespaces.namespace(request)
    quota = await request.app[QUOTAS].get(namespace)
    errors = over_quota(namespace, quota, config, request.app[CLOCK].now_ms())
    if errors:
        raise InvalidInput([FieldError(field, message) for field, message in errors])
    if creating and quota.max_schedules is not None:
        count = await request.app[VIEWS].count_schedules(tenancy.id_prefix(request))
        full = schedules_full(namespace, quota, count)
        if full is not None:
            raise Conflict(full)


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
    body = client_model(NoteBody, data)
    outcome = await request.app[COMMANDS].schedule(sid, make(sid, body.note), ctx)
    return await respond(request, sid, outcome)


@route(
    "POST",
    "/v1/schedules/{id}/pause",
    summary="Pause a schedule",
    tag=TAG,
    scope=Scope.SCHEDULES_WRITE,
    body=NoteBody,
    body_required=False,
    replies=CHANGED,
    problems=(404, 412, 413, 422, 503),
    params=(ID_PARAM, IF_MATCH, ACTOR),
)
async def pause_schedule(request: web.Request) -> web.StreamResponse:
    return await _note_command(request, sched.PauseSchedule)


@route(
    "POST",
    "/v1/schedules/{id}/resume",
    summary="Resume a paused schedule",
    tag=TAG,
    scope=Scope.SCHEDULES_WRITE,
    body=NoteBody,
    body_required=False,
    replies=CHANGED,
    problems=(404, 412, 413, 422, 503),
    params=(ID_PARAM, IF_MATCH, ACTOR),
)
async def resume_schedule(request: web.Request) -> web.StreamResponse:
    return await _note_command(request, sched.ResumeSchedule)


@route(
    "DELETE",
    "/v1/schedules/{id}",
    summary="Delete a schedule",
    tag=TAG,
    scope=Scope.SCHEDULES_WRITE,
    replies=(Reply(204, "Deleted", media_type=None),),
    problems=(404, 412, 422, 503),
    params=(ID_PARAM, IF_MATCH, ACTOR),
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
    scope=Scope.SCHEDULES_READ,
    replies=(Reply(200, "A page of the schedule's events", AuditPage),),
    problems=(404, 422, 503),
    params=(
        ID_PARAM,
        limit(100, 1000),
        Param(
            "cursor",
            "next_cursor of the previous page",
            {"type": "integer", "minimum": 0, "maximum": HISTORY_END},
        ),
    ),
)
async def schedule_history(request: web.Request) -> web.StreamResponse:
    sid = schedule_id(request)
    size = query_int(request, "limit", 100, 1, 1000)
    offset = query_int(request, "cursor", 0, 0, HISTORY_END)
    store = request.app[STORE]
    events = await store.read_aggregate(sched.KIND, sid, offset, size)
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
    scope=Scope.SCHEDULES_READ,
    replies=(Reply(200, "The next times, and the times excluded on the way", SpecPreview),),
    problems=(404, 422, 503),
    params=(
        ID_PARAM,
        Param(
            "count",
            "How many (1-1000, default 10)",
            {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10},
        ),
        instant("after", "Start after this instant (default now)"),
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

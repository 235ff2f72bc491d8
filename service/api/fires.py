"""Manual trigger, backfill, and the outcome of every nominal time of a schedule."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from service import telemetry
from service.api import tenancy
from service.api.context import (
    CLOCK,
    COMMANDS,
    KEYS,
    REDIS,
    STORE,
    client_model,
    json_response,
    read_command,
)
from service.api.params import ACTOR, IDEMPOTENCY_KEY, instant
from service.api.routing import Reply, route
from service.api.schedules import ID_PARAM, TAG, schedule_id
from service.audit.fires import FireOutcome, fire_outcomes
from service.commands import SCHEDULES, WORKFLOWS, validate_input
from service.domain import schedule as sched
from service.domain.fire import (
    backfill_requests,
    backfill_times,
    check_backfill_range,
    trigger_request,
)
from service.domain.policies import OverlapPolicy
from service.domain.timeutil import parse_instant
from service.domain.tokens import Scope
from service.domain.types import Instant
from service.domain.workflow import WorkflowConfig
from service.errors import IdempotencyKeyReused, InvalidInput, ScheduleNotFound
from service.store.fires import FireScript

FIRES_BOUND = 1000


class TriggerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap: OverlapPolicy | None = None
    input: Any = None


class BackfillBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: Instant
    end: Instant
    overlap: OverlapPolicy | None = None


class FireResult(BaseModel):
    run_id: str | None
    fired: int
    skipped: int
    dropped: int
    duplicate: bool = False


class BackfillResult(BaseModel):
    nominal_times: int
    fired: int
    skipped: int
    dropped: int
    already_backfilled: int


class FiresPage(BaseModel):
    items: list[FireOutcome]
    truncated: bool = Field(description="More nominal times lie in the range than were listed")


async def _live_schedule(request: web.Request, sid: str) -> sched.ScheduleState:
    state, _ = await request.app[COMMANDS].load(SCHEDULES, sid)
    if state is None or state.deleted:
        raise ScheduleNotFound(sid)
    assert isinstance(state, sched.ScheduleState)
    return state


async def _workflow(request: web.Request, workflow_id: str) -> WorkflowConfig:
    workflow, _ = await request.app[COMMANDS].load(WORKFLOWS, workflow_id)
    if workflow is None or workflow.deleted:
        named = tenancy.bare(workflow_id)
        raise InvalidInput.one("workflow_id", f"workflow {named!r} does not exist")
    assert isinstance(workflow.config, WorkflowConfig)
    return workflow.config


@route(
    "POST",
    "/v1/schedules/{id}/trigger",
    summary="Run a schedule's workflow now",
    tag=TAG,
    scope=Scope.SCHEDULES_WRITE,
    body=TriggerBody,
    body_required=False,
    replies=(
        Reply(
            200,
            "Nothing fired: the overlap policy skipped or dropped it, or this "
            "repeats an earlier request's Idempotency-Key (duplicate)",
            FireResult,
        ),
        Reply(201, "Fired: a run was queued (or held in the schedule's buffer)", FireResult),
    ),
    problems=(404, 413, 422, 503),
    params=(ID_PARAM, IDEMPOTENCY_KEY, ACTOR),
)
async def trigger(request: web.Request) -> web.StreamResponse:
    sid = schedule_id(request)
    ctx, data = await read_command(request, allow_empty=True)
    body = TriggerBody.model_validate(data)
    config = (await _live_schedule(request, sid)).config
    run_input = body.input if "input" in data else config.input
    workflow = await _workflow(request, config.workflow_id)
    validate_input(workflow, run_input)
    fire = trigger_request(
        sid,
        config,
        str(workflow.target.type),
        now=request.app[CLOCK].now_ms(),
        actor=ctx.actor,
        meta=ctx.meta(),
        run_input=run_input,
        overlap=body.overlap,
        dedupe_key=ctx.storage_key() if ctx.idempotency_key else "",
        fingerprint=ctx.fingerprint,
    )
    traceparent = telemetry.current_traceparent()
    if traceparent:
        fire.traces = [traceparent]
    reply = await FireScript(request.app[REDIS], request.app[KEYS]).run(fire)
    if reply.status == "REUSED":
        raise IdempotencyKeyReused(ctx.idempotency_key or "")
    if reply.status == "DUP":
        return json_response(
            {"run_id": reply.run_id, "fired": 0, "skipped": 0, "dropped": 0, "duplicate": True}
        )
    if reply.status != "OK":
        raise ScheduleNotFound(sid)
    return json_response(
        {
            "run_id": fire.fires[0].run_id if reply.fired else None,
            "fired": reply.fired,
            "skipped": reply.skipped,
            "dropped": reply.dropped,
            "duplicate": False,
        },
        status=201 if reply.fired else 200,
    )


@route(
    "POST",
    "/v1/schedules/{id}/backfill",
    summary="Run every nominal time in a range",
    tag=TAG,
    scope=Scope.SCHEDULES_WRITE,
    body=BackfillBody,
    replies=(Reply(200, "What the backfill did with each nominal time", BackfillResult),),
    problems=(404, 413, 422, 503),
    params=(ID_PARAM, ACTOR),
)
async def backfill(request: web.Request) -> web.StreamResponse:
    sid = schedule_id(request)
    ctx, data = await read_command(request)
    body = client_model(BackfillBody, data)
    check_backfill_range(body.start, body.end)
    config = (await _live_schedule(request, sid)).config
    times = backfill_times(config.spec, body.start, body.end)
    workflow = await _workflow(request, config.workflow_id)
    fires = backfill_requests(
        sid,
        config,
        str(workflow.target.type),
        times,
        now=request.app[CLOCK].now_ms(),
        actor=ctx.actor,
        meta=ctx.meta(),
        overlap=body.overlap,
    )
    script = FireScript(request.app[REDIS], request.app[KEYS])
    fired = skipped = dropped = 0
    tail = ""
    for fire in fires:
        fire.after = tail  # each chunk follows the runs of the chunk before
        reply = await script.run(fire)
        if reply.status != "OK":
            raise ScheduleNotFound(sid)
        fired, skipped, dropped = (
            fired + reply.fired,
            skipped + reply.skipped,
            dropped + reply.dropped,
        )
        tail = reply.tail
    return json_response(
        {
            "nominal_times": len(times),
            "fired": fired,
            "skipped": skipped,
            "dropped": dropped,
            "already_backfilled": len(times) - fired - skipped - dropped,
        }
    )


@route(
    "GET",
    "/v1/schedules/{id}/fires",
    summary="The outcome of every nominal time in a range",
    tag=TAG,
    scope=Scope.SCHEDULES_READ,
    replies=(Reply(200, "Each nominal time in the range and what became of it", FiresPage),),
    problems=(404, 422, 503),
    params=(
        ID_PARAM,
        instant("from", "Start (inclusive)", required=True),
        instant("to", "End (inclusive)", required=True),
    ),
)
async def fires(request: web.Request) -> web.StreamResponse:
    sid = schedule_id(request)
    bounds = []
    for name in ("from", "to"):
        raw = request.query.get(name)
        if not raw:
            raise InvalidInput.one(name, "is required (an RFC 3339 instant)")
        try:
            bounds.append(parse_instant(raw))
        except ValueError as exc:
            raise InvalidInput.one(name, str(exc)) from None
    start, end = bounds
    if end < start:
        raise InvalidInput.one("to", "must not be before from")
    events = []
    store = request.app[STORE]
    offset = 0
    while True:
        page = await store.read_aggregate(sched.KIND, sid, offset, 1000)
        events += page
        offset += len(page)
        if len(page) < 1000:
            break
    if not events:
        raise ScheduleNotFound(sid)
    now = request.app[CLOCK].now_ms()
    outcomes, truncated = fire_outcomes(events, start, end, now, FIRES_BOUND)
    return json_response(
        {"items": [o.model_dump(mode="json") for o in outcomes], "truncated": truncated}
    )

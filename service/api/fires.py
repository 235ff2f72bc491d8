"""Manual trigger, backfill, and the outcome of every nominal time of a schedule."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from service import telemetry
from service.api.context import (
    CLOCK,
    COMMANDS,
    KEYS,
    REDIS,
    STORE,
    json_response,
    read_command,
)
from service.api.routing import Param, route
from service.api.schedules import ID_PARAM, IDEM_KEY, TAG, schedule_id
from service.audit.fires import FireOutcome, fire_outcomes
from service.commands import SCHEDULES, WORKFLOWS, validate_input
from service.domain import schedule as sched
from service.domain.ids import new_id
from service.domain.policies import OverlapPolicy
from service.domain.spec import iter_fire_times
from service.domain.timeutil import parse_instant, to_rfc3339
from service.domain.types import Instant
from service.errors import InvalidInput, ScheduleNotFound
from service.ticker.fires import FireRequest, FireScript

BACKFILL_BOUND = 10_000
BACKFILL_CHUNK = 500
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


async def _target(request: web.Request, workflow_id: str) -> str:
    workflow, _ = await request.app[COMMANDS].load(WORKFLOWS, workflow_id)
    if workflow is None or workflow.deleted:
        raise InvalidInput.one("workflow_id", f"workflow {workflow_id!r} does not exist")
    return str(workflow.config.target.type)


@route(
    "POST",
    "/v1/schedules/{id}/trigger",
    summary="Run a schedule's workflow now",
    tag=TAG,
    body=TriggerBody,
    response=FireResult,
    params=(ID_PARAM,),
    headers=(IDEM_KEY,),
)
async def trigger(request: web.Request) -> web.StreamResponse:
    sid = schedule_id(request)
    ctx, data = await read_command(request, allow_empty=True)
    body = TriggerBody.model_validate(data)
    state = await _live_schedule(request, sid)
    config = state.config
    run_input = body.input if "input" in data else config.input
    workflow, _ = await request.app[COMMANDS].load(WORKFLOWS, config.workflow_id)
    if workflow is None or workflow.deleted:
        raise InvalidInput.one("workflow_id", f"workflow {config.workflow_id!r} does not exist")
    validate_input(workflow.config, run_input)
    now = request.app[CLOCK].now_ms()
    run_id = new_id("run")
    mode = "manual" if ctx.actor.startswith(("cli:", "ui:")) else "api"
    fire = FireRequest(
        schedule_id=sid,
        mode=mode,
        fire_time=to_rfc3339(now),
        meta=ctx.meta(),
        workflow_id=config.workflow_id,
        target=str(workflow.config.target.type),
        overlap=str(body.overlap or config.policy.overlap),
        buffer_max=config.policy.buffer_max,
        input=run_input,
        source=ctx.actor,
        dedupe_key=ctx.storage_key() if ctx.idempotency_key else "",
        fingerprint=ctx.fingerprint,
        fires=[(now, run_id)],
        traces=[telemetry.current_traceparent() or ""],
    )
    outcome, counts = await FireScript(request.app[REDIS], request.app[KEYS]).run(fire)
    if outcome == "REUSED":
        from service.errors import IdempotencyKeyReused

        raise IdempotencyKeyReused(ctx.idempotency_key or "")
    if outcome == "DUP":
        return json_response(
            {"run_id": counts[0], "fired": 0, "skipped": 0, "dropped": 0, "duplicate": True}
        )
    if outcome != "OK":
        raise ScheduleNotFound(sid)
    fired, skipped, dropped = counts[0], counts[1], counts[2]
    return json_response(
        {
            "run_id": run_id if fired else None,
            "fired": fired,
            "skipped": skipped,
            "dropped": dropped,
            "duplicate": False,
        },
        status=201 if fired else 200,
    )


@route(
    "POST",
    "/v1/schedules/{id}/backfill",
    summary="Run every nominal time in a range",
    tag=TAG,
    body=BackfillBody,
    response=BackfillResult,
    params=(ID_PARAM,),
)
async def backfill(request: web.Request) -> web.StreamResponse:
    sid = schedule_id(request)
    ctx, data = await read_command(request)
    body = BackfillBody.model_validate(data)
    if body.end < body.start:
        raise InvalidInput.one("end", "must not be before start")
    state = await _live_schedule(request, sid)
    config = state.config
    nominals: list[int] = []
    for nominal in iter_fire_times(config.spec, body.start - 1):
        if nominal > body.end:
            break
        if len(nominals) >= BACKFILL_BOUND:
            raise InvalidInput.one(
                "end", f"the range holds more than {BACKFILL_BOUND} nominal times; split it"
            )
        nominals.append(nominal)
    target = await _target(request, config.workflow_id)
    now = request.app[CLOCK].now_ms()
    script = FireScript(request.app[REDIS], request.app[KEYS])
    totals = [0, 0, 0]
    for start in range(0, len(nominals), BACKFILL_CHUNK):
        chunk = nominals[start : start + BACKFILL_CHUNK]
        fire = FireRequest(
            schedule_id=sid,
            mode="backfill",
            fire_time=to_rfc3339(now),
            meta=ctx.meta(),
            workflow_id=config.workflow_id,
            target=target,
            overlap=str(body.overlap or config.policy.overlap),
            buffer_max=config.policy.buffer_max,
            input=config.input,
            source=ctx.actor,
            fires=[(t, new_id("run")) for t in chunk],
        )
        outcome, counts = await script.run(fire)
        if outcome != "OK":
            raise ScheduleNotFound(sid)
        for i in range(3):
            totals[i] += counts[i]
    done = sum(totals)
    return json_response(
        {
            "nominal_times": len(nominals),
            "fired": totals[0],
            "skipped": totals[1],
            "dropped": totals[2],
            "already_backfilled": len(nominals) - done,
        }
    )


@route(
    "GET",
    "/v1/schedules/{id}/fires",
    summary="The outcome of every nominal time in a range",
    tag=TAG,
    response=FiresPage,
    params=(
        ID_PARAM,
        Param("from", "RFC 3339 start (inclusive)", required=True),
        Param("to", "RFC 3339 end (inclusive)", required=True),
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

"""Run endpoints: history, one run with its attempts, cancel, retry, run a workflow now."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from projections.read import RunFilter
from service.api import tenancy
from service.api.context import (
    CLOCK,
    COMMANDS,
    KEYS,
    REDIS,
    VIEWS,
    client_model,
    json_response,
    query_choice,
    query_int,
    query_text,
    read_command,
    request_context,
)
from service.api.namespaces import namespace
from service.api.params import (
    A_RUN_CURSOR,
    ACTOR,
    AN_ID,
    IDEMPOTENCY_KEY,
    RUN_CURSOR,
    RUN_CURSOR_PATTERN,
    id_filter,
    limit,
    one_of,
    path_id,
)
from service.api.routing import Reply, route
from service.api.schedules import ID_PARAM as SCHEDULE_ID
from service.api.schedules import schedule_id
from service.commands import WORKFLOWS, validate_input
from service.domain.ids import ID_PATTERN, is_valid_id, new_id
from service.domain.runs import RunStatus
from service.domain.timeutil import to_rfc3339
from service.domain.tokens import Scope
from service.errors import Conflict, IdempotencyKeyReused, NotFound, WorkflowNotFound
from service.store.runs import RunStore
from service.worker.breaker import CircuitBreaker

TAG = "runs"
RUN_ID = path_id("Run")
TRIGGERS = ["schedule", "manual", "api", "backfill"]
STATUSES = [s.value for s in RunStatus]


class RunNotFound(NotFound):
    kind = "run"


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    terminate: bool = False


class RunNowBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Any = None


class Attempt(BaseModel):
    attempt: int | None
    worker: str | None = None
    started_at: str | None
    finished_at: str | None
    outcome: str
    error: str | None = None
    status: int | None = None
    body_excerpt: str | None = None
    retry_at: str | None = None


class RunView(BaseModel):
    id: str
    schedule_id: str | None
    workflow_id: str
    trigger: dict[str, Any]
    nominal_time: str | None
    input: Any = None
    status: RunStatus
    queued_at: str
    started_at: str | None
    finished_at: str | None
    attempts: list[Attempt]
    cancel_requested: bool
    dead_letter_reason: str | None = None


class RunPage(BaseModel):
    items: list[RunView]
    next_cursor: str | None


class RunChange(BaseModel):
    """202: the request is recorded; the run acts on it."""

    run_id: str
    outcome: str = Field(description="cancel: requested, cancelled or terminating; retry: queued")


class RunAccepted(BaseModel):
    run_id: str
    duplicate: bool = False


class BreakerView(BaseModel):
    host: str
    state: str
    failures: int
    opened_at: str | None


class BreakerPage(BaseModel):
    items: list[BreakerView]


def _ms(value: int | None) -> str | None:
    return to_rfc3339(value) if value else None


def render(record: dict[str, Any]) -> dict[str, Any]:
    sid = record.get("schedule_id")
    return {
        "id": record["id"],
        "schedule_id": sid and tenancy.bare(sid),
        "workflow_id": tenancy.bare(record["workflow_id"]),
        "trigger": record["trigger"],
        "nominal_time": record.get("nominal_time"),
        "input": record.get("input"),
        "status": record["status"],
        "queued_at": to_rfc3339(record["queued_at"]),
        "started_at": _ms(record.get("started_at")),
        "finished_at": _ms(record.get("finished_at")),
        "attempts": [
            {**a, "started_at": _ms(a.get("started_at")), "finished_at": _ms(a.get("finished_at"))}
            for a in record["attempts"]
        ],
        "cancel_requested": record.get("cancel_requested", False),
        "dead_letter_reason": record.get("dead_letter_reason"),
    }


def _filter(request: web.Request, **fixed: str) -> RunFilter:
    """The runs a request lists: always only its namespace's (``fixed`` ids are internal)."""
    return RunFilter(
        schedule_id=fixed.get("schedule_id")
        or tenancy.internal_or_none(request, query_text(request, "schedule_id", ID_PATTERN, AN_ID)),
        workflow_id=tenancy.internal_or_none(
            request, query_text(request, "workflow_id", ID_PATTERN, AN_ID)
        ),
        status=query_choice(request, "status", STATUSES),
        trigger=query_choice(request, "trigger", TRIGGERS),
        namespace=namespace(request),
    )


async def _page(request: web.Request, where: RunFilter) -> web.StreamResponse:
    size = query_int(request, "limit", 50, 1, 500)
    records, cursor = await request.app[VIEWS].list_runs(
        where, query_text(request, "cursor", RUN_CURSOR_PATTERN, A_RUN_CURSOR), size
    )
    return json_response({"items": [render(r) for r in records], "next_cursor": cursor})


LIST_PARAMS = (
    one_of("status", "Only runs in this status", STATUSES),
    one_of("trigger", "Only runs started this way", TRIGGERS),
    limit(50, 500),
    RUN_CURSOR,
)
PAGE = (Reply(200, "A page of runs, newest first", RunPage),)


@route(
    "GET",
    "/v1/runs",
    summary="Runs, newest first",
    tag=TAG,
    scope=Scope.RUNS_READ,
    replies=PAGE,
    problems=(422, 503),
    params=(
        id_filter("schedule_id", "Only this schedule's runs"),
        id_filter("workflow_id", "Only this workflow's runs"),
        *LIST_PARAMS,
    ),
)
async def list_runs(request: web.Request) -> web.StreamResponse:
    return await _page(request, _filter(request))


@route(
    "GET",
    "/v1/schedules/{id}/runs",
    summary="A schedule's runs, newest first",
    tag=TAG,
    scope=Scope.RUNS_READ,
    replies=PAGE,
    problems=(404, 422, 503),
    params=(SCHEDULE_ID, id_filter("workflow_id", "Only this workflow's runs"), *LIST_PARAMS),
)
async def schedule_runs(request: web.Request) -> web.StreamResponse:
    return await _page(request, _filter(request, schedule_id=schedule_id(request)))


def _run_id(request: web.Request) -> str:
    run_id = request.match_info["id"]
    if not is_valid_id(run_id):
        raise RunNotFound(run_id)
    return run_id


@route(
    "GET",
    "/v1/runs/{id}",
    summary="A run with every attempt",
    tag=TAG,
    scope=Scope.RUNS_READ,
    replies=(Reply(200, "The run", RunView),),
    problems=(404, 503),
    params=(RUN_ID,),
)
async def get_run(request: web.Request) -> web.StreamResponse:
    run_id = _run_id(request)
    record = await request.app[VIEWS].run(run_id)
    if record is None or not tenancy.owns(request, record["workflow_id"]):
        raise RunNotFound(run_id)
    return json_response(render(record))


@route(
    "POST",
    "/v1/runs/{id}/cancel",
    summary="Cancel a run (terminate: stop it at once)",
    tag=TAG,
    scope=Scope.RUNS_WRITE,
    body=CancelBody,
    body_required=False,
    replies=(Reply(202, "The cancel is recorded", RunChange),),
    problems=(404, 409, 413, 422, 503),
    params=(RUN_ID, ACTOR),
)
async def cancel_run(request: web.Request) -> web.StreamResponse:
    run_id = _run_id(request)
    ctx, data = await read_command(request, allow_empty=True)
    body = client_model(CancelBody, data)
    runs = RunStore(request.app[REDIS], request.app[KEYS])
    found = await runs.locate(run_id)
    if found is None or not tenancy.owns(request, found[1]):
        raise RunNotFound(run_id)
    p, sid, kind = found
    outcome = await runs.cancel(
        p,
        sid,
        kind,
        run_id,
        terminate=body.terminate,
        actor=ctx.actor,
        now_ms=request.app[CLOCK].now_ms(),
    )
    if outcome == "DONE":
        raise Conflict(f"run {run_id!r} has already finished")
    return json_response({"run_id": run_id, "outcome": outcome.lower()}, status=202)


@route(
    "POST",
    "/v1/runs/{id}/retry",
    summary="Queue a dead-lettered or failed run again",
    tag=TAG,
    scope=Scope.RUNS_WRITE,
    replies=(Reply(202, "The run is queued again", RunChange),),
    problems=(404, 409, 422, 503),
    params=(RUN_ID, ACTOR),
)
async def retry_run(request: web.Request) -> web.StreamResponse:
    run_id = _run_id(request)
    ctx = request_context(request)
    runs = RunStore(request.app[REDIS], request.app[KEYS])
    found = await runs.locate(run_id)
    if found is None or not tenancy.owns(request, found[1]):
        raise RunNotFound(run_id)
    p, sid, kind = found
    outcome = await runs.revive(
        p, sid, kind, run_id, actor=ctx.actor, now_ms=request.app[CLOCK].now_ms()
    )
    if outcome != "OK":
        raise Conflict(f"run {run_id!r} is not dead-lettered or failed ({outcome.split(':')[-1]})")
    return json_response({"run_id": run_id, "outcome": "queued"}, status=202)


@route(
    "POST",
    "/v1/workflows/{id}/runs",
    summary="Run a workflow now",
    tag=TAG,
    scope=Scope.RUNS_WRITE,
    body=RunNowBody,
    body_required=False,
    replies=(
        Reply(
            200,
            "The run an earlier request with this Idempotency-Key queued",
            RunAccepted,
            ("Location",),
        ),
        Reply(201, "Queued", RunAccepted, ("Location",)),
    ),
    problems=(404, 413, 422, 503),
    params=(path_id("Workflow"), IDEMPOTENCY_KEY, ACTOR),
)
async def run_workflow(request: web.Request) -> web.StreamResponse:
    named = request.match_info["id"]
    if not is_valid_id(named):
        raise WorkflowNotFound(named)
    wid = tenancy.internal(request, named)
    ctx, data = await read_command(request, allow_empty=True)
    body = client_model(RunNowBody, data)
    state, _ = await request.app[COMMANDS].load(WORKFLOWS, wid)
    if state is None or state.deleted:
        raise WorkflowNotFound(named)
    validate_input(state.config, body.input)
    trigger = {
        "type": "manual" if ctx.actor.startswith(("cli:", "ui:")) else "api",
        "source": ctx.actor,
        "label": "",
    }
    runs = RunStore(request.app[REDIS], request.app[KEYS])
    outcome, run_id = await runs.create(
        wid,
        new_id("run"),
        trigger,
        body.input,
        meta=ctx.meta(),
        now_ms=request.app[CLOCK].now_ms(),
        idempotency_key=ctx.storage_key() if ctx.idempotency_key else "",
        fingerprint=ctx.fingerprint,
    )
    if outcome == "REUSED":
        raise IdempotencyKeyReused(ctx.idempotency_key or "")
    duplicate = outcome == "DUP"
    return json_response(
        {"run_id": run_id, "duplicate": duplicate},
        status=200 if duplicate else 201,
        headers={"Location": f"/v1/runs/{run_id}"},
    )


@route(
    "GET",
    "/v1/breakers",
    summary="Circuit breakers of the namespace's target hosts",
    tag=TAG,
    scope=Scope.RUNS_READ,
    replies=(Reply(200, "Every host's breaker", BreakerPage),),
    problems=(503,),
)
async def breakers(request: web.Request) -> web.StreamResponse:
    breaker = CircuitBreaker(request.app[REDIS], request.app[KEYS])
    return json_response({"items": await breaker.states(namespace(request))})

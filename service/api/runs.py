"""Run endpoints: history, one run with its attempts, cancel, retry, run a workflow now."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from projections.read import RunFilter
from service.api.context import (
    CLOCK,
    COMMANDS,
    KEYS,
    REDIS,
    VIEWS,
    json_response,
    query_int,
    read_command,
    request_context,
)
from service.api.routing import Param, route
from service.api.schedules import ID_PARAM as SCHEDULE_ID
from service.api.schedules import IDEM_KEY, schedule_id
from service.commands import WORKFLOWS, validate_input
from service.domain.ids import is_valid_id, new_id
from service.domain.runs import RunStatus
from service.domain.timeutil import to_rfc3339
from service.errors import Conflict, IdempotencyKeyReused, InvalidInput, NotFound, WorkflowNotFound
from service.store.runs import RunStore
from service.worker.breaker import CircuitBreaker

TAG = "runs"
RUN_ID = Param("id", "Run id", location="path", required=True)
TRIGGERS = ("schedule", "manual", "api", "backfill")


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
    return {
        "id": record["id"],
        "schedule_id": record.get("schedule_id"),
        "workflow_id": record["workflow_id"],
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
    status = request.query.get("status") or None
    if status is not None and status not in {s.value for s in RunStatus}:
        raise InvalidInput.one("status", f"must be one of {', '.join(s.value for s in RunStatus)}")
    trigger = request.query.get("trigger") or None
    if trigger is not None and trigger not in TRIGGERS:
        raise InvalidInput.one("trigger", f"must be one of {', '.join(TRIGGERS)}")
    return RunFilter(
        schedule_id=fixed.get("schedule_id") or request.query.get("schedule_id") or None,
        workflow_id=request.query.get("workflow_id") or None,
        status=status,
        trigger=trigger,
    )


async def _page(request: web.Request, where: RunFilter) -> web.StreamResponse:
    limit = query_int(request, "limit", 50, 1, 500)
    records, cursor = await request.app[VIEWS].list_runs(
        where, request.query.get("cursor") or None, limit
    )
    return json_response({"items": [render(r) for r in records], "next_cursor": cursor})


LIST_PARAMS = (
    Param("status", "queued, running, retrying, succeeded, failed, ..."),
    Param("trigger", "schedule, manual, api or backfill"),
    Param("limit", "Page size (1-500, default 50)", "integer"),
    Param("cursor", "next_cursor of the previous page"),
)


@route(
    "GET",
    "/v1/runs",
    summary="Runs, newest first",
    tag=TAG,
    response=RunPage,
    params=(
        Param("schedule_id", "Only this schedule's runs"),
        Param("workflow_id", "Only this workflow's runs"),
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
    response=RunPage,
    params=(SCHEDULE_ID, *LIST_PARAMS),
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
    response=RunView,
    params=(RUN_ID,),
)
async def get_run(request: web.Request) -> web.StreamResponse:
    run_id = _run_id(request)
    record = await request.app[VIEWS].run(run_id)
    if record is None:
        raise RunNotFound(run_id)
    return json_response(render(record))


@route(
    "POST",
    "/v1/runs/{id}/cancel",
    summary="Cancel a run (terminate: stop it at once)",
    tag=TAG,
    body=CancelBody,
    params=(RUN_ID,),
)
async def cancel_run(request: web.Request) -> web.StreamResponse:
    run_id = _run_id(request)
    ctx, data = await read_command(request, allow_empty=True)
    body = CancelBody.model_validate(data)
    runs = RunStore(request.app[REDIS], request.app[KEYS])
    found = await runs.locate(run_id)
    if found is None:
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
    params=(RUN_ID,),
)
async def retry_run(request: web.Request) -> web.StreamResponse:
    run_id = _run_id(request)
    ctx = request_context(request)
    runs = RunStore(request.app[REDIS], request.app[KEYS])
    found = await runs.locate(run_id)
    if found is None:
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
    body=RunNowBody,
    response=RunAccepted,
    status=201,
    params=(Param("id", "Workflow id", location="path", required=True),),
    headers=(IDEM_KEY,),
)
async def run_workflow(request: web.Request) -> web.StreamResponse:
    wid = request.match_info["id"]
    if not is_valid_id(wid):
        raise WorkflowNotFound(wid)
    ctx, data = await read_command(request, allow_empty=True)
    body = RunNowBody.model_validate(data)
    state, _ = await request.app[COMMANDS].load(WORKFLOWS, wid)
    if state is None or state.deleted:
        raise WorkflowNotFound(wid)
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
    "GET", "/v1/breakers", summary="Circuit breakers of target hosts", tag=TAG, response=BreakerPage
)
async def breakers(request: web.Request) -> web.StreamResponse:
    states = await CircuitBreaker(request.app[REDIS], request.app[KEYS]).states()
    return json_response({"items": states})

"""Workflow endpoints: define (PUT), read, list, delete."""

from __future__ import annotations

from aiohttp import web

from service.api import render, tenancy
from service.api.context import (
    COMMANDS,
    KEYS,
    REDIS,
    VIEWS,
    client_model,
    etag,
    json_response,
    query_int,
    query_text,
    read_command,
    request_context,
)
from service.api.models import WorkflowPage, WorkflowPut, WorkflowView
from service.api.params import ACTOR, AN_ID, ID_CURSOR, IF_MATCH, limit, path_id
from service.api.routing import Reply, route
from service.domain.ids import ID_PATTERN, is_valid_id
from service.domain.tokens import Scope
from service.domain.workflow import WorkflowConfig
from service.errors import InvalidInput, WorkflowNotFound
from service.store.secrets import SigningSecrets

TAG = "workflows"
ID_PARAM = path_id("Workflow")


def workflow_id(request: web.Request, *, for_write: bool = False) -> str:
    wid = request.match_info["id"]
    if not is_valid_id(wid):
        if for_write:
            raise InvalidInput.one(
                "id", "must be 1-128 letters, digits, '.', '_' or '-', starting alphanumeric"
            )
        raise WorkflowNotFound(wid)
    return tenancy.internal(request, wid)


@route(
    "PUT",
    "/v1/workflows/{id}",
    summary="Define or replace a workflow",
    tag=TAG,
    scope=Scope.WORKFLOWS_WRITE,
    body=WorkflowPut,
    replies=(
        Reply(200, "Replaced (or unchanged)", WorkflowView, ("ETag",)),
        Reply(201, "Created", WorkflowView, ("ETag",)),
    ),
    problems=(404, 412, 413, 422, 503),
    params=(ID_PARAM, IF_MATCH, ACTOR),
)
async def put_workflow(request: web.Request) -> web.StreamResponse:
    wid = workflow_id(request, for_write=True)
    ctx, data = await read_command(request)
    body = client_model(WorkflowPut, data)
    if body.id is not None and body.id != tenancy.bare(wid):
        raise InvalidInput.one("id", f"does not match the path's id {tenancy.bare(wid)!r}")
    config = WorkflowConfig.model_validate(body.model_dump(mode="json", exclude={"id"}))
    outcome = await request.app[COMMANDS].put_workflow(wid, config, ctx)
    record = await request.app[VIEWS].workflow(wid)
    if record is None:
        raise WorkflowNotFound(wid)
    status = 201 if outcome.created and outcome.positions else 200
    return json_response(render.workflow(record), status, {"ETag": etag(record["version"])})


@route(
    "GET",
    "/v1/workflows/{id}",
    summary="Read a workflow",
    tag=TAG,
    scope=Scope.WORKFLOWS_READ,
    replies=(Reply(200, "The workflow", WorkflowView, ("ETag",)),),
    problems=(404, 503),
    params=(ID_PARAM,),
)
async def get_workflow(request: web.Request) -> web.StreamResponse:
    wid = workflow_id(request)
    record = await request.app[VIEWS].workflow(wid)
    if record is None:
        raise WorkflowNotFound(wid)
    return json_response(render.workflow(record), headers={"ETag": etag(record["version"])})


@route(
    "GET",
    "/v1/workflows",
    summary="List workflows",
    tag=TAG,
    scope=Scope.WORKFLOWS_READ,
    replies=(Reply(200, "A page of workflows, in id order", WorkflowPage),),
    problems=(422, 503),
    params=(limit(50, 500), ID_CURSOR),
)
async def list_workflows(request: web.Request) -> web.StreamResponse:
    size = query_int(request, "limit", 50, 1, 500)
    records, cursor = await request.app[VIEWS].list_workflows(
        tenancy.internal_or_none(request, query_text(request, "cursor", ID_PATTERN, AN_ID)),
        size,
        tenancy.id_prefix(request),
    )
    items = [render.workflow(r) for r in records]
    return json_response({"items": items, "next_cursor": cursor and tenancy.bare(cursor)})


@route(
    "DELETE",
    "/v1/workflows/{id}",
    summary="Delete a workflow no schedule uses",
    tag=TAG,
    scope=Scope.WORKFLOWS_WRITE,
    replies=(Reply(204, "Deleted", media_type=None),),
    problems=(404, 409, 412, 422, 503),
    params=(ID_PARAM, IF_MATCH, ACTOR),
)
async def delete_workflow(request: web.Request) -> web.StreamResponse:
    wid = workflow_id(request)
    ctx = request_context(request)
    views = request.app[VIEWS]

    async def users() -> list[str]:
        return await views.schedules_of_workflow(wid)

    await request.app[COMMANDS].delete_workflow(wid, ctx, users)
    await SigningSecrets(request.app[REDIS], request.app[KEYS]).forget(wid)
    return web.Response(status=204)

"""Workflow endpoints: define (PUT), read, list, delete."""

from __future__ import annotations

from aiohttp import web

from service.api import render
from service.api.context import (
    COMMANDS,
    VIEWS,
    etag,
    json_response,
    query_int,
    read_command,
    request_context,
)
from service.api.models import WorkflowPage, WorkflowPut, WorkflowView
from service.api.routing import Param, route
from service.domain.ids import is_valid_id
from service.domain.workflow import WorkflowConfig
from service.errors import InvalidInput, WorkflowNotFound

TAG = "workflows"
ID_PARAM = Param("id", "Workflow id", location="path", required=True)
IF_MATCH = Param("If-Match", "ETag of the version this change is based on", location="header")


def workflow_id(request: web.Request, *, for_write: bool = False) -> str:
    wid = request.match_info["id"]
    if not is_valid_id(wid):
        if for_write:
            raise InvalidInput.one(
                "id", "must be 1-128 letters, digits, '.', '_' or '-', starting alphanumeric"
            )
        raise WorkflowNotFound(wid)
    return wid


@route(
    "PUT",
    "/v1/workflows/{id}",
    summary="Define or replace a workflow",
    tag=TAG,
    body=WorkflowPut,
    response=WorkflowView,
    params=(ID_PARAM,),
    headers=(IF_MATCH,),
)
async def put_workflow(request: web.Request) -> web.StreamResponse:
    wid = workflow_id(request, for_write=True)
    ctx, data = await read_command(request)
    body = WorkflowPut.model_validate(data)
    if body.id is not None and body.id != wid:
        raise InvalidInput.one("id", f"does not match the path's id {wid!r}")
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
    response=WorkflowView,
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
    response=WorkflowPage,
    params=(
        Param("limit", "Page size (1-500, default 50)", "integer"),
        Param("cursor", "next_cursor of the previous page"),
    ),
)
async def list_workflows(request: web.Request) -> web.StreamResponse:
    limit = query_int(request, "limit", 50, 1, 500)
    records, cursor = await request.app[VIEWS].list_workflows(
        request.query.get("cursor") or None, limit
    )
    return json_response({"items": [render.workflow(r) for r in records], "next_cursor": cursor})


@route(
    "DELETE",
    "/v1/workflows/{id}",
    summary="Delete a workflow no schedule uses",
    tag=TAG,
    status=204,
    params=(ID_PARAM,),
    headers=(IF_MATCH,),
)
async def delete_workflow(request: web.Request) -> web.StreamResponse:
    wid = workflow_id(request)
    ctx = request_context(request)
    views = request.app[VIEWS]

    async def users() -> list[str]:
        return await views.schedules_of_workflow(wid)

    await request.app[COMMANDS].delete_workflow(wid, ctx, users)
    return web.Response(status=204)

"""Spec preview: the times a spec gives, without creating anything."""

from __future__ import annotations

from aiohttp import web

from service.api.context import CLOCK, json_response, read_model
from service.api.routing import Reply, route
from service.domain.spec import PreviewRequest, SpecPreview, preview
from service.domain.tokens import Scope


@route(
    "POST",
    "/v1/specs/preview",
    summary="Preview a spec's next times and exclusions",
    tag="specs",
    scope=Scope.SCHEDULES_READ,
    body=PreviewRequest,
    replies=(Reply(200, "The next times, and the times excluded on the way", SpecPreview),),
    problems=(413, 422),
)
async def preview_spec(request: web.Request) -> web.StreamResponse:
    body = await read_model(request, PreviewRequest)
    after = body.after if body.after is not None else request.app[CLOCK].now_ms()
    result = preview(body.spec, after, body.count, body.schedule_id)
    return json_response(result.model_dump(mode="json"))

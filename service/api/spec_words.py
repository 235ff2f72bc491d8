"""A spec in words, and what daylight saving time does to given instants of it."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from service.api.context import json_response, read_model
from service.api.routing import Reply, route
from service.domain.dst_notes import dst_note, local_time
from service.domain.spec import Spec, describe
from service.domain.timeutil import to_rfc3339
from service.domain.tokens import Scope
from service.domain.types import Instant


class DescribeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: Spec
    at: list[Instant] = Field(
        default_factory=list,
        max_length=100,
        description="Instants (e.g. a preview's times) to show on the zone's wall clock",
    )


class WallTime(BaseModel):
    at: str
    local: str = Field(description="The instant on the spec's zone's wall clock")
    dst: str | None = Field(description="What DST does at this instant, if anything")


class SpecWords(BaseModel):
    description: list[str] = Field(description="One line per cron expression and interval")
    times: list[WallTime]


@route(
    "POST",
    "/v1/specs/describe",
    summary="A spec in plain English, and instants on its zone's wall clock with DST marked",
    tag="specs",
    scope=Scope.SCHEDULES_READ,
    body=DescribeRequest,
    replies=(Reply(200, "The spec's reading and the instants' wall times", SpecWords),),
    problems=(413, 422),
)
async def describe_spec(request: web.Request) -> web.StreamResponse:
    body = await read_model(request, DescribeRequest)
    zone = body.spec.timezone
    return json_response(
        {
            "description": describe(body.spec),
            "times": [
                {"at": to_rfc3339(t), "local": local_time(t, zone), "dst": dst_note(t, zone)}
                for t in body.at
            ],
        }
    )

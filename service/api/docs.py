"""/openapi.json, generated from the route table and its pydantic models, and /docs."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault, models_json_schema
from pydantic_core import core_schema

from service.api import namespaces
from service.api.context import KEYS, json_response
from service.api.models import Problem
from service.api.params import NAMESPACE
from service.api.routing import JSON, MERGE_PATCH, ROUTES, Param, Reply, Route, route
from service.domain.tokens import Scope

REF = "#/components/schemas/{model}"
PROBLEM_TYPE = "application/problem+json"

Mode = Literal["validation", "serialization"]
Keyed = dict[Any, dict[str, Any]]  # (model, mode) -> its JSON schema

PROBLEMS = {
    401: "No valid bearer token: missing, malformed, unknown, revoked or expired",
    403: "The token lacks the scope this operation needs",
    404: "Not found: no such schedule, workflow or run",
    409: "Conflict with the resource's state (exists, in use, already finished)",
    412: "Precondition failed: If-Match names a version that is no longer current",
    413: "The body is larger than the server accepts",
    422: "Invalid input: `errors` names each field (body member, parameter or header)",
    429: "The token's rate limit is spent: retry after Retry-After seconds",
    503: "The event store or the recorded archive cannot be read; retry later",
}
HEADERS = {
    "ETag": 'The version of the resource, like "3": send it back in If-Match',
    "Location": "Where the created resource is read",
    "Idempotent-Replayed": "true when this is the stored answer to an earlier request",
    "Replayed-Through": "The log position the resource was rebuilt through",
    "WWW-Authenticate": "The bearer challenge (RFC 6750): why the token was refused",
    "Retry-After": "Seconds until the token may send another request",
    "RateLimit-Limit": "Requests the token's bucket holds (its rate per window)",
    "RateLimit-Remaining": "Requests left in the token's bucket",
    "RateLimit-Reset": "Seconds until the token's bucket is full again",
}
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
GUARDS = {401: ("WWW-Authenticate",), 403: ("WWW-Authenticate",), 429: ("Retry-After",)}
"""The answers of the token check, before any handler, with the headers each carries."""
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "A cronstream token (`cs_...`, from `cronstream token create` or the one "
    "`serve` prints on its first start). Each operation names the scope it needs; `admin` "
    "grants every scope. Every answer to a request with a valid token carries RateLimit-Limit, "
    "RateLimit-Remaining and RateLimit-Reset. /metrics needs metrics:read only when the "
    "server runs with CRONSTREAM_METRICS_AUTH=1.",
}


class ClientForms(GenerateJsonSchema):
    """Request schemas show defaults as a client writes them (a duration of 1000 ms is "1s"),
    as pydantic already does for response schemas."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        default = super().get_default_value(schema)
        serializer: Any = schema["schema"].get("serialization")
        if (
            self.mode == "validation"
            and default is not NoDefault
            and default is not None
            and serializer is not None
            and serializer.get("type") == "function-plain"
            and not serializer.get("info_arg")
        ):
            return serializer["function"](default)
        return default


def _param(p: Param, partitions: int) -> dict[str, Any]:
    schema = p.schema(partitions) if callable(p.schema) else p.schema
    return {
        "name": p.name,
        "in": p.location,
        "required": p.required or p.location == "path",
        "description": p.description,
        "schema": schema,
    }


def _reply(reply: Reply, keyed: Keyed) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    if reply.model is not None and reply.media_type is not None:
        schema = keyed.get((reply.model, "serialization")) or keyed[(reply.model, "validation")]
        out["content"] = {reply.media_type: {"schema": schema}}
    elif reply.media_type is not None:
        kind = "object" if reply.media_type == JSON else "string"
        out["content"] = {reply.media_type: {"schema": {"type": kind}}}
    if reply.headers:
        out["headers"] = {
            name: {"description": HEADERS[name], "schema": {"type": "string"}}
            for name in reply.headers
        }
    return out


def _headers(names: tuple[str, ...]) -> dict[str, Any]:
    return {name: {"description": HEADERS[name], "schema": {"type": "string"}} for name in names}


def _responses(r: Route, keyed: Keyed) -> dict[str, Any]:
    responses = {str(reply.status): _reply(reply, keyed) for reply in r.replies}
    problem = {PROBLEM_TYPE: {"schema": keyed[(Problem, "serialization")]}}
    guards = GUARDS if r.scope is not None else {}
    # a Cronstream-Namespace header that names no namespace: 422 on every /v1 route
    header = (422,) if namespaces.scoped(r) else ()
    for status in sorted({*r.problems, *guards, *header}):
        answer = responses.setdefault(str(status), {"description": PROBLEMS[status]})
        answer["content"] = {**answer.get("content", {}), **problem}
    if r.scope is not None:
        for code, answer in responses.items():
            # a 401 comes before any token is known, so it has no rate to tell
            rate = RATE_HEADERS if code != "401" else ()
            extra = _headers((*GUARDS.get(int(code), ()), *rate))
            answer["headers"] = {**answer.get("headers", {}), **extra}
    return dict(sorted(responses.items()))


def _security(r: Route) -> list[dict[str, list[str]]]:
    """Who may call ``r``: anyone ([]), a token with its scope, or either (/metrics)."""
    if r.scope is None:
        return []
    needed = [{"bearer": [str(r.scope)]}]
    return [{}, *needed] if r.scope is Scope.METRICS_READ else needed


def _params(r: Route) -> tuple[Param, ...]:
    return (*r.params, NAMESPACE) if namespaces.scoped(r) else r.params


def _operation(r: Route, keyed: Keyed, defs: dict[str, Any], partitions: int) -> dict[str, Any]:
    """One route as an OpenAPI operation."""
    op: dict[str, Any] = {
        "summary": r.summary,
        "tags": [r.tag],
        "operationId": r.handler.__name__,
        "parameters": [_param(p, partitions) for p in _params(r)],
        "responses": _responses(r, keyed),
        "security": _security(r),
    }
    if r.body is not None:
        schema = keyed[(r.body, "validation")]
        if MERGE_PATCH in r.body_types:
            schema = merge_patch_schema(schema, defs)
        op["requestBody"] = {
            "required": r.body_required,
            "content": {media: {"schema": schema} for media in r.body_types},
        }
    return op


def merge_patch_schema(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of a JSON merge patch (RFC 7396) of documents matching ``schema``: every
    member optional, null removes it (back to its default), objects patch recursively.
    Patch schemas of referenced objects are added to ``defs`` as ``<Name>Patch``."""
    ref = schema.get("$ref")
    if ref is not None:
        name = ref.rsplit("/", 1)[-1]
        target = defs.get(name, {})
        if target.get("type") != "object" or "properties" not in target:
            return schema
        patch = name.removesuffix("-Input") + "Patch"
        if patch not in defs:
            defs[patch] = {}  # reserved first: a model may refer to itself
            defs[patch] = merge_patch_schema(target, defs)
        return {"$ref": REF.format(model=patch)}
    if schema.get("type") != "object" or "properties" not in schema:
        return schema
    out = {k: v for k, v in schema.items() if k not in ("required", "properties", "title")}
    out["title"] = f"{schema.get('title', 'Object')} (merge patch)"
    out["properties"] = {
        name: {
            "anyOf": [
                merge_patch_schema({k: v for k, v in member.items() if k != "default"}, defs),
                {"type": "null"},
            ]
        }
        for name, member in schema["properties"].items()
    }
    return out


@lru_cache(maxsize=16)
def _document(partitions: int) -> dict[str, Any]:
    models: list[type[BaseModel]] = [Problem]
    for r in ROUTES:
        models += [m for m in (r.body, *(reply.model for reply in r.replies)) if m is not None]
    unique = list(dict.fromkeys(models))
    modes: list[tuple[type[BaseModel], Mode]] = [
        (m, "validation") for m in unique if any(r.body is m for r in ROUTES)
    ]
    modes += [(m, "serialization") for m in unique if (m, "validation") not in modes]
    keyed, defs = models_json_schema(modes, ref_template=REF, schema_generator=ClientForms)
    schemas: dict[str, Any] = defs.get("$defs", {})
    paths: dict[str, Any] = {}
    for r in ROUTES:
        operation = _operation(r, keyed, schemas, partitions)
        paths.setdefault(r.path, {})[r.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cronstream",
            "version": "1",
            "description": "Schedules for workflows. Errors are RFC 9457 problems "
            "(application/problem+json); a method a path does not have answers 405 with Allow. "
            "Every /v1 operation needs a bearer token with the scope it names (401 without a "
            "valid token, 403 without the scope, 429 when the token's rate is spent).",
        },
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": SECURITY_SCHEME}},
    }


def openapi_document(partitions: int = 1) -> dict[str, Any]:
    """The OpenAPI document of an API over ``partitions`` partitions (cursors name each)."""
    return _document(partitions)


DOCS_PAGE = resources.files("service.api").joinpath("docs.html").read_text(encoding="utf-8")


@route(
    "GET",
    "/openapi.json",
    summary="This API's OpenAPI 3.1 document",
    tag="docs",
    scope=None,
    replies=(Reply(200, "The document"),),
)
async def openapi(request: web.Request) -> web.StreamResponse:
    return json_response(openapi_document(request.app[KEYS].partitions))


@route(
    "GET",
    "/docs",
    summary="A page to read the API and try requests",
    tag="docs",
    scope=None,
    replies=(Reply(200, "The page", media_type="text/html"),),
)
async def docs(_request: web.Request) -> web.StreamResponse:
    return web.Response(text=DOCS_PAGE, content_type="text/html")

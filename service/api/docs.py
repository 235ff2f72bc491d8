"""/openapi.json, generated from the route table and its pydantic models, and /docs."""

from __future__ import annotations

import html
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.api.context import json_response
from service.api.models import Problem
from service.api.routing import ROUTES, Route, route

REF = "#/components/schemas/{model}"


Keyed = dict[Any, dict[str, Any]]  # (model, mode) -> its JSON schema


def _operation(r: Route, keyed: Keyed) -> dict[str, Any]:
    """One route as an OpenAPI operation."""
    op: dict[str, Any] = {
        "summary": r.summary,
        "tags": [r.tag],
        "operationId": r.handler.__name__,
        "parameters": [
            {
                "name": p.name,
                "in": p.location,
                "required": p.required or p.location == "path",
                "description": p.description,
                "schema": {"type": p.type},
            }
            for p in (*r.params, *r.headers)
        ],
        "responses": {
            "default": {
                "description": "An RFC 9457 problem",
                "content": {
                    "application/problem+json": {"schema": keyed[(Problem, "serialization")]}
                },
            }
        },
    }
    if r.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": keyed[(r.body, "validation")]}},
        }
    ok: dict[str, Any] = {"description": "OK"}
    if r.response is not None:
        schema = keyed.get((r.response, "serialization")) or keyed[(r.response, "validation")]
        ok["content"] = {"application/json": {"schema": schema}}
    op["responses"][str(r.status)] = ok
    return op


def openapi_document() -> dict[str, Any]:
    models: list[type[BaseModel]] = [Problem]
    for r in ROUTES:
        models += [m for m in (r.body, r.response) if m is not None]
    unique = list(dict.fromkeys(models))
    modes: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (m, "validation") for m in unique if any(r.body is m for r in ROUTES)
    ]
    modes += [(m, "serialization") for m in unique if (m, "validation") not in modes]
    keyed, defs = models_json_schema(modes, ref_template=REF)
    paths: dict[str, Any] = {}
    for r in ROUTES:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, keyed)
    return {
        "openapi": "3.1.0",
        "info": {"title": "cronstream", "version": "1", "description": "Schedules for workflows"},
        "paths": paths,
        "components": {"schemas": defs.get("$defs", {})},
    }


@route("GET", "/openapi.json", summary="This API's OpenAPI 3.1 document", tag="docs")
async def openapi(_request: web.Request) -> web.StreamResponse:
    return json_response(openapi_document())


@route("GET", "/docs", summary="Human-readable API reference", tag="docs")
async def docs(_request: web.Request) -> web.StreamResponse:
    doc = openapi_document()
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            params = ", ".join(p["name"] for p in op["parameters"]) or "-"
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}"
                f"</code></td><td>{html.escape(op['summary'])}</td>"
                f"<td>{html.escape(params)}</td></tr>"
            )
    schemas = "".join(
        f"<details><summary>{html.escape(name)}</summary><pre>"
        f"{html.escape(_pretty(schema))}</pre></details>"
        for name, schema in doc["components"]["schemas"].items()
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>cronstream API</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}"
        "td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}"
        "pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>"
        "<h1>cronstream API v1</h1><p>Machine-readable: <a href='/openapi.json'>"
        "/openapi.json</a>. Errors are RFC 9457 <code>application/problem+json</code>.</p>"
        "<table><tr><th>Method</th><th>Path</th><th>What</th><th>Parameters</th></tr>"
        + "".join(rows)
        + "</table><h2>Schemas</h2>"
        + schemas
        + "</body></html>"
    )
    return web.Response(text=page, content_type="text/html")


def _pretty(schema: Any) -> str:
    import json

    return json.dumps(schema, indent=2)

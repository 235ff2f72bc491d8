"""What handlers share: typed app keys, body parsing, request context, ETags."""

from __future__ import annotations

import hashlib
import re
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel
from redis.asyncio import Redis

from projections.read import ViewReader
from service.api.params import IF_MATCH_PATTERN, MAX_HEADER_VALUE
from service.clock import Clock
from service.commands import CommandService, RequestContext
from service.config import Settings
from service.domain.types import CLIENT_INPUT
from service.errors import FieldError, InvalidInput
from service.store.eventstore import EventStore
from service.store.keys import Keyspace

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
KEYS = web.AppKey("keys", Keyspace)
STORE = web.AppKey("store", EventStore)
VIEWS = web.AppKey("views", ViewReader)
COMMANDS = web.AppKey("commands", CommandService)
CLOCK = web.AppKey("clock", Clock)

M = TypeVar("M", bound=BaseModel)
_IF_MATCH = re.compile(IF_MATCH_PATTERN)
_INTEGER = re.compile(r"-?[0-9]+")


async def read_body(request: web.Request) -> bytes:
    return await request.read()


def parse_json(raw: bytes, *, allow_empty: bool = False) -> Any:
    if not raw.strip():
        if allow_empty:
            return {}
        raise InvalidInput.one("body", "a JSON object is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput.one("body", f"malformed JSON: {exc}") from None


def client_model(model: type[M], data: Any) -> M:
    """``data`` a client sent, validated as ``model`` (instants as RFC 3339 strings only)."""
    return model.model_validate(data, context=CLIENT_INPUT)


async def read_model(request: web.Request, model: type[M], *, allow_empty: bool = False) -> M:
    data = parse_json(await read_body(request), allow_empty=allow_empty)
    if not isinstance(data, dict):
        raise InvalidInput.one("body", "must be a JSON object")
    return client_model(model, data)


async def read_command(
    request: web.Request, *, allow_empty: bool = False
) -> tuple[RequestContext, dict[str, Any]]:
    """The request's context and its JSON object body (InvalidInput naming ``body``)."""
    raw = await read_body(request)
    ctx = request_context(request, raw)
    data = parse_json(raw, allow_empty=allow_empty)
    if not isinstance(data, dict):
        raise InvalidInput.one("body", "must be a JSON object")
    return ctx, data


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", headers=headers
    )


def etag(version: int) -> str:
    return f'"{version}"'


def if_match(request: web.Request) -> int | None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    value = raw.strip()
    if not _IF_MATCH.fullmatch(value):
        raise InvalidInput.one("If-Match", 'must be an ETag from a previous response, like "3"')
    if value == "*":
        return None
    return int(value.removeprefix("W/").strip('"'))


def header(request: web.Request, name: str) -> str | None:
    value = request.headers.get(name)
    if value is not None and (len(value) > MAX_HEADER_VALUE or not value.strip()):
        raise InvalidInput.one(name, f"must be 1 to {MAX_HEADER_VALUE} characters")
    return value


def request_context(request: web.Request, body: bytes = b"") -> RequestContext:
    actor = header(request, "X-Actor") or f"anonymous@{request.remote or 'unknown'}"
    key = header(request, "Idempotency-Key")
    fingerprint = hashlib.sha256(
        request.method.encode() + b" " + request.path.encode() + b"\n" + body
    ).hexdigest()
    return RequestContext(
        actor=actor,
        idempotency_key=key,
        fingerprint=fingerprint,
        if_match=if_match(request),
        traceparent=request.headers.get("traceparent"),
    )


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise InvalidInput.one(name, f"must be an integer between {low} and {high}")
    value = int(raw)
    if not low <= value <= high:
        raise InvalidInput([FieldError(name, f"must be between {low} and {high}")])
    return value


def query_text(request: web.Request, name: str, pattern: str, what: str) -> str | None:
    """Query parameter ``name`` if given; InvalidInput ("must be ``what``") unless all of it
    matches ``pattern``."""
    raw = request.query.get(name)
    if raw is not None and re.fullmatch(pattern, raw) is None:
        raise InvalidInput.one(name, f"must be {what}")
    return raw


def query_choice(request: web.Request, name: str, values: list[str]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in values:
        raise InvalidInput.one(name, f"must be one of {', '.join(values)}")
    return raw

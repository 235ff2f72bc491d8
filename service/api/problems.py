"""RFC 9457 problem details: every error a client sees, and the middleware that maps them."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from service.api.context import SETTINGS
from service.errors import (
    Conflict,
    FieldError,
    IdempotencyKeyReused,
    InvalidInput,
    NotFound,
    StoreUnavailable,
    VersionMismatch,
)
from service.store.archive_record import ArchiveUnavailable

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"


def problem(
    status: int, title: str, detail: str, *, errors: list[FieldError] | None = None, **extra: Any
) -> web.Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    return web.Response(status=status, body=orjson.dumps(body), content_type=PROBLEM_TYPE)


def field_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """Pydantic errors as (dotted field, message) pairs, naming the field the client sent."""
    out = []
    for err in exc.errors(include_url=False):
        parts = [str(part) for part in err["loc"] if not _is_union_tag(part)]
        path = ".".join(([prefix] if prefix else []) + parts) or (prefix or "body")
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        out.append(FieldError(path, message))
    return out


def _is_union_tag(part: Any) -> bool:
    # discriminated unions add the tag ('http', 'python', ...) to the location
    return isinstance(part, str) and part in {"http", "python", "none", "function-after[...]"}


def invalid(errors: list[FieldError]) -> web.Response:
    return problem(422, "Invalid request", str(InvalidInput(errors)), errors=errors)


@web.middleware
async def problem_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text or exc.reason
        if exc.status == 413:
            detail = f"the request body is larger than {request.app[SETTINGS].max_body_bytes} bytes"
        answer = problem(exc.status, exc.reason, detail or exc.reason)
        if "Allow" in exc.headers:  # a 405 says which methods the path has (RFC 9110)
            answer.headers["Allow"] = exc.headers["Allow"]
        return answer
    except InvalidInput as exc:
        return invalid(exc.errors)
    except ValidationError as exc:
        return invalid(field_errors(exc))
    except NotFound as exc:
        return problem(404, "Not found", str(exc))
    except VersionMismatch as exc:
        return problem(412, "Precondition failed", str(exc), current_version=exc.actual)
    except IdempotencyKeyReused as exc:
        reused = [FieldError("Idempotency-Key", "was already used for a different request")]
        return problem(422, "Idempotency key reused", str(exc), errors=reused)
    except Conflict as exc:
        return problem(409, "Conflict", str(exc))
    except ArchiveUnavailable as exc:
        # 503, not 404/410: the events exist, this server cannot read them until the
        # archive is back where it was recorded (or CRONSTREAM_ARCHIVE_DIR names a copy)
        log.warning("archive unreadable while serving %s %s: %s", request.method, request.path, exc)
        return problem(
            503,
            "Service unavailable",
            str(exc),
            partition=exc.partition,
            archived_before=exc.before,
            archive_dir=str(exc.directory) if exc.directory is not None else None,
        )
    except StoreUnavailable as exc:
        log.warning("redis unavailable while serving %s %s: %s", request.method, request.path, exc)
        return problem(503, "Service unavailable", "the event store cannot be reached; retry later")
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return problem(500, "Internal error", "an unexpected error occurred; it has been logged")

"""Field types shared by commands, events and API bodies.

``Duration`` and ``Instant`` hold milliseconds inside and read and write the
human forms at the edges, so every model that uses them validates and renders the
same way.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from service.domain.timeutil import (
    MAX_INSTANT_MS,
    MIN_INSTANT_MS,
    format_duration,
    parse_duration,
    parse_instant,
    to_rfc3339,
)


def _duration(value: Any) -> int:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_duration(value)
    raise ValueError("a duration must be a string such as '15m' or a number of seconds")


def _instant(value: Any) -> int:
    if isinstance(value, str):
        return parse_instant(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if not MIN_INSTANT_MS <= value <= MAX_INSTANT_MS:
            raise ValueError("an instant must be between 1970-01-01 and 9999-12-31")
        return value  # epoch milliseconds, as cronstream holds instants inside
    raise ValueError("an instant must be an RFC 3339 string such as '2026-01-01T00:00:00Z'")


Duration = Annotated[
    int,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "description": "A duration: '90s', '15m', '1h30m', '2d' or ISO 8601 'PT15M'.",
            "examples": ["15m"],
        }
    ),
]

Instant = Annotated[
    int,
    BeforeValidator(_instant),
    PlainSerializer(to_rfc3339, return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

"""Field types shared by commands, events and API bodies.

``Duration`` and ``Instant`` hold milliseconds inside and read and write the
human forms at the edges, so every model that uses them validates and renders the
same way.

A client's instants are RFC 3339 strings only: a number in a request body (``"start":
0``) is refused, not read as epoch milliseconds. Code inside cronstream builds models
from milliseconds, so the refusal applies when a model is validated with
``context=CLIENT_INPUT``, which the API does for every body it reads.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import BeforeValidator, PlainSerializer, ValidationInfo, WithJsonSchema

from service.domain.timeutil import (
    MAX_DURATION_MS,
    MAX_INSTANT_MS,
    MIN_INSTANT_MS,
    format_duration,
    parse_duration,
    parse_instant,
    to_rfc3339,
)

CLIENT_INPUT: Final = {"client_input": True}
"""Validation context of data a client sent."""

DURATION_PATTERN = (
    r"^\s*(([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+"
    r"|[Pp]([0-9]+[Ww])?([0-9]+[Dd])?([Tt]([0-9]+[Hh])?([0-9]+[Mm])?([0-9]+(\.[0-9]+)?[Ss])?)?)\s*$"
)

INSTANT_PATTERN = r"^(19[7-9][0-9]|[2-9][0-9]{3})-"
"""Years 1970 to 9999: the range cronstream keeps instants in."""

_INSTANT_TEXT = "an instant must be an RFC 3339 string such as '2026-01-01T00:00:00Z'"


def _duration(value: Any) -> int:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_duration(value)
    raise ValueError("a duration must be a string such as '15m' or a number of seconds")


def _instant(value: Any, info: ValidationInfo) -> int:
    if isinstance(value, str):
        return parse_instant(value)
    if isinstance(info.context, dict) and info.context.get("client_input"):
        raise ValueError(_INSTANT_TEXT)
    if isinstance(value, int) and not isinstance(value, bool):
        if not MIN_INSTANT_MS <= value <= MAX_INSTANT_MS:
            raise ValueError("an instant must be between 1970-01-01 and 9999-12-31")
        return value  # epoch milliseconds, as cronstream holds instants inside
    raise ValueError(_INSTANT_TEXT)


Duration = Annotated[
    int,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "description": "A duration: '90s', '15m', '1h30m', '2d', ISO 8601 'PT15M', "
            "or a number of seconds; at most a century.",
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "number", "minimum": 0, "maximum": MAX_DURATION_MS // 1000},
            ],
            "examples": ["15m"],
        },
        mode="validation",
    ),
    WithJsonSchema(
        {
            "type": "string",
            "description": "A duration in the short form: '90s', '15m', '1h30m', '2d'.",
            "examples": ["15m"],
        },
        mode="serialization",
    ),
]

Instant = Annotated[
    int,
    BeforeValidator(_instant),
    PlainSerializer(to_rfc3339, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": INSTANT_PATTERN,
            "description": "An RFC 3339 instant between 1970 and 9999, such as "
            "'2026-01-01T00:00:00Z'.",
        }
    ),
]

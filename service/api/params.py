"""The parameters routes share, with the limits the handlers enforce.

Each limit is written once: the handlers check values with the patterns and bounds
defined here, and /openapi.json publishes the same ones.
"""

from __future__ import annotations

from typing import Any

from service.api.routing import Param
from service.domain.ids import ID_PATTERN
from service.domain.types import INSTANT_PATTERN

MAX_HEADER_VALUE = 255
POSITION = r"[0-9]{1,19}(-[0-9]{1,19})?"
"""A stream id (``ms-seq``, or ``ms``): each part below 2**64."""
RUN_CURSOR_PATTERN = r"^[0-9]{13}:[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
IF_MATCH_PATTERN = r'^(\*|(W/)?"[0-9]{1,18}"|[0-9]{1,18})$'
AN_ID = "an id: 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"
A_FEED_POSITION = (
    "a feed position: one stream id (ms-seq) per partition, joined by '.' (empty: the start)"
)
A_RUN_CURSOR = "the next_cursor of a previous page"
HEADER_TEXT: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_HEADER_VALUE,
    "pattern": r"\S",
}
ID: dict[str, Any] = {"type": "string", "pattern": ID_PATTERN}
INSTANT: dict[str, Any] = {"type": "string", "format": "date-time", "pattern": INSTANT_PATTERN}


NAMESPACE = Param(
    "Cronstream-Namespace",
    "The namespace the request acts in (default: `default`, or the token's only one); "
    "a token may name only its own namespaces (else 403). A namespace name is "
    + AN_ID.removeprefix("an id: "),
    ID,
    location="header",
)
"""Every /v1 route takes it (the namespace middleware reads it before the handler)."""


def feed_cursor_pattern(partitions: int) -> str:
    """One position per partition, joined by '.'; empty for the start of the log."""
    return "^$|" + _positions(partitions)


def _positions(partitions: int) -> str:
    return rf"^{POSITION}(\.{POSITION}){{{partitions - 1}}}$"


def position_pattern(partitions: int) -> str:
    """A feed cursor, or one stream id (of the partition the schedule is in)."""
    return rf"^{POSITION}$|{_positions(partitions)}"


def feed_cursor(name: str, description: str, *, location: str = "query") -> Param:
    """A feed position parameter; empty means the start of the log."""
    return Param(
        name,
        description,
        lambda partitions: {"type": "string", "pattern": feed_cursor_pattern(partitions)},
        location=location,
    )


def path_id(what: str) -> Param:
    return Param("id", f"{what} id", ID, location="path", required=True)


def limit(default: int, high: int) -> Param:
    return Param(
        "limit",
        f"Page size (1-{high}, default {default})",
        {"type": "integer", "minimum": 1, "maximum": high, "default": default},
    )


def instant(name: str, description: str, *, required: bool = False) -> Param:
    return Param(name, f"{description} (RFC 3339)", INSTANT, required=required)


def one_of(name: str, description: str, values: list[str]) -> Param:
    return Param(name, description, {"type": "string", "enum": values})


def id_filter(name: str, description: str) -> Param:
    return Param(name, description, ID)


IF_MATCH = Param(
    "If-Match",
    'ETag of the version this change is based on: "3" (or *); a stale one answers 412',
    {"type": "string", "pattern": IF_MATCH_PATTERN},
    location="header",
)
IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    f"Retry-safe key (1-{MAX_HEADER_VALUE} characters): a retry returns the first response",
    HEADER_TEXT,
    location="header",
)
ACTOR = Param(
    "X-Actor",
    f"Who asks (1-{MAX_HEADER_VALUE} characters), recorded in the log; default anonymous",
    HEADER_TEXT,
    location="header",
)
ID_CURSOR = Param("cursor", "next_cursor of the previous page", ID)
RUN_CURSOR = Param(
    "cursor", "next_cursor of the previous page", {"type": "string", "pattern": RUN_CURSOR_PATTERN}
)

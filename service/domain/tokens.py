"""API tokens: their format, checksum and hash, the scopes they carry, their rate.

A token reads ``cs_`` + 30 base62 characters of randomness (about 178 bits) + a
6-character base62 CRC32 of everything before it, as GitHub's tokens do: a token
copied wrong fails its checksum here, before anything is looked up, and a scanner can
tell a cronstream token from other text. The service keeps only the SHA-256 of a token;
its id is the start of that hash, so the id alone can neither be turned back into the
token nor found without it.

Pure: randomness and the time are passed in.
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

PREFIX = "cs_"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
BODY_LENGTH = 30
CHECKSUM_LENGTH = 6
TOKEN_LENGTH = len(PREFIX) + BODY_LENGTH + CHECKSUM_LENGTH
ID_LENGTH = 16
DEFAULT_NAMESPACES = ("default",)
_SHAPE = re.compile(rf"{PREFIX}[0-9A-Za-z]{{{BODY_LENGTH + CHECKSUM_LENGTH}}}")
PARSED_HEADERS = 4096
"""Authorization headers (and token hashes) kept checked: a client sends the same one on
every request, and checking it again is most of what a request's token costs."""
CACHED_HEADER_LENGTH = 64


class Scope(StrEnum):
    SCHEDULES_READ = "schedules:read"
    SCHEDULES_WRITE = "schedules:write"
    RUNS_READ = "runs:read"
    RUNS_WRITE = "runs:write"
    WORKFLOWS_READ = "workflows:read"
    WORKFLOWS_WRITE = "workflows:write"
    EVENTS_READ = "events:read"
    METRICS_READ = "metrics:read"
    """/metrics, when CRONSTREAM_METRICS_AUTH=1: a scraper needs no other scope."""
    ADMIN = "admin"
    """Every other scope."""


class MalformedToken(ValueError):
    """Text that cannot be a cronstream token; the message says what is wrong with it."""


def _base62(value: int, width: int) -> str:
    digits = []
    while value:
        value, digit = divmod(value, 62)
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits)).rjust(width, ALPHABET[0])


def checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode()), CHECKSUM_LENGTH)


def token_from_body(body: str) -> str:
    """The token of ``body`` (BODY_LENGTH random base62 characters): prefix and checksum on."""
    if len(body) != BODY_LENGTH or any(c not in ALPHABET for c in body):
        raise ValueError(f"a token body is {BODY_LENGTH} base62 characters")
    return PREFIX + body + checksum(PREFIX + body)


def check_token(text: str) -> str:
    """``text`` when it is a well-formed token whose checksum holds; else MalformedToken."""
    if not text.startswith(PREFIX):
        raise MalformedToken(f"a cronstream token starts with {PREFIX}")
    if len(text) != TOKEN_LENGTH or _SHAPE.fullmatch(text) is None:
        raise MalformedToken(
            f"a cronstream token is {TOKEN_LENGTH} characters: {PREFIX} and base62 letters"
        )
    head, tail = text[:-CHECKSUM_LENGTH], text[-CHECKSUM_LENGTH:]
    if checksum(head) != tail:
        raise MalformedToken("the token's checksum does not match: it was copied wrong")
    return text


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, checked (MalformedToken)."""
    if header is None:
        raise MalformedToken("send Authorization: Bearer <token>")
    # only headers of about a token's length are kept (a refused one raises: never kept),
    # so the cache holds at most PARSED_HEADERS short strings, whatever clients send
    if len(header) <= CACHED_HEADER_LENGTH:
        return _cached_bearer(header)
    return _bearer(header)


@lru_cache(maxsize=PARSED_HEADERS)
def _cached_bearer(header: str) -> str:
    return _bearer(header)


def _bearer(header: str) -> str:
    if not header.strip():
        raise MalformedToken("send Authorization: Bearer <token>")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise MalformedToken("the Authorization header must be: Bearer <token>")
    return check_token(value.strip())


@lru_cache(maxsize=PARSED_HEADERS)
def token_hash(token: str) -> str:
    """What the service stores of a token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_id(digest: str) -> str:
    """A token's public id: the start of its hash (``token list``, ``token revoke``)."""
    return digest[:ID_LENGTH]


def parse_scopes(text: str | Iterable[str]) -> frozenset[Scope]:
    """Scopes from ``a,b`` (or a list); ValueError names an unknown one and the known ones."""
    names = text.split(",") if isinstance(text, str) else list(text)
    out = set()
    for raw in names:
        name = raw.strip()
        if not name:
            continue
        try:
            out.add(Scope(name))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ValueError(f"unknown scope {name!r}: known scopes are {known}") from None
    if not out:
        raise ValueError("a token needs at least one scope")
    return frozenset(out)


def allows(granted: Iterable[Scope | str], required: Scope) -> bool:
    """A token with ``granted`` may do what needs ``required`` (admin may do everything)."""
    have = granted if isinstance(granted, frozenset) else frozenset(granted)
    return required in have or Scope.ADMIN in have


_UNITS_MS = {
    "s": 1000,
    "sec": 1000,
    "second": 1000,
    "m": 60_000,
    "min": 60_000,
    "minute": 60_000,
    "h": 3_600_000,
    "hour": 3_600_000,
}
_RATE = re.compile(r"\s*([0-9]+)\s*/\s*([a-z]+)\s*")


@dataclass(frozen=True)
class Rate:
    """At most ``limit`` requests per ``window_ms``, refilled evenly (a token bucket of
    ``limit`` that gains one request every ``window_ms / limit``)."""

    limit: int
    window_ms: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``600/min``, ``10/s``, ``5000/h``; ValueError says the form."""
        match = _RATE.fullmatch(text.lower())
        unit = _UNITS_MS.get(match.group(2)) if match else None
        if match is None or unit is None or not 1 <= int(match.group(1)) <= 10**9:
            raise ValueError(f"a rate is N/s, N/min or N/h with N from 1 to 10^9, not {text!r}")
        return cls(int(match.group(1)), unit)

    def __str__(self) -> str:
        unit = {1000: "s", 60_000: "min", 3_600_000: "h"}.get(self.window_ms)
        return f"{self.limit}/{unit}" if unit else f"{self.limit}/{self.window_ms}ms"


DEFAULT_RATE = Rate(100, 60_000)


class TokenStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


@dataclass(frozen=True)
class TokenRecord:
    """What the service keeps of a token (never the token itself)."""

    id: str
    name: str
    scopes: frozenset[Scope]
    namespaces: tuple[str, ...]
    rate: Rate
    created_ms: int
    expires_ms: int | None = None
    revoked_ms: int | None = None
    last_used_ms: int | None = None

    def status(self, now_ms: int) -> TokenStatus:
        """Revoked first, then expired (at ``expires_ms`` exactly it is expired)."""
        if self.revoked_ms is not None:
            return TokenStatus.REVOKED
        if self.expires_ms is not None and now_ms >= self.expires_ms:
            return TokenStatus.EXPIRED
        return TokenStatus.ACTIVE


def seconds_up(ms: float) -> int:
    """Milliseconds as whole seconds, rounded up (Retry-After, RateLimit-Reset)."""
    return max(0, math.ceil(ms / 1000))

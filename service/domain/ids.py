"""Identifiers: the shape of ids clients choose, and ids cronstream makes."""

from __future__ import annotations

import hashlib
import re
import secrets
import time

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_ID = re.compile(ID_PATTERN)
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def is_valid_id(value: str) -> bool:
    return _ID.fullmatch(value) is not None


NAMESPACE_SEPARATOR = "/"
"""Between a namespace and an id in an internal id (``NS/ID``): no id can contain it."""


def is_internal_id(value: str) -> bool:
    """An id as cronstream keeps it: a bare id (namespace ``default``), or ``NS/ID`` with
    both parts valid ids. Clients send bare ids only; the API qualifies them."""
    namespace, sep, ident = value.partition(NAMESPACE_SEPARATOR)
    return is_valid_id(ident) and is_valid_id(namespace) if sep else is_valid_id(value)


def _encode(number: int, length: int) -> str:
    out = []
    for _ in range(length):
        number, rem = divmod(number, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """A new id that sorts by creation time: ms since the epoch, then 80 random bits (hex).

    The ticker makes one per fire, so this stays cheap.
    """
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{millis:011x}{secrets.token_hex(10)}"


def id_from_key(prefix: str, namespace: str, key: str) -> str:
    """A deterministic id for a create retried under the same Idempotency-Key."""
    digest = hashlib.sha256(f"{namespace}\x00{key}".encode()).digest()
    return f"{prefix}_k{_encode(int.from_bytes(digest[:16], 'big'), 25)}"

"""The log's hash chain: every entry carries the previous entry's hash and its own.

``hash = sha1(prev 0x1F type 0x1F v 0x1F sid 0x1F data 0x1F meta)`` over the stored
field bytes, where ``prev`` is the hash of the partition's previous entry ('' for
the first). Altering, deleting or reordering any entry breaks the chain at that
entry; the head (``cs:{p}:log:chain``) is the hash of the newest entry.
"""

from __future__ import annotations

import hashlib

SEPARATOR = b"\x1f"


def entry_hash(prev: bytes, type_: bytes, v: bytes, sid: bytes, data: bytes, meta: bytes) -> str:
    digest = hashlib.sha1(SEPARATOR.join((prev, type_, v, sid, data, meta)), usedforsecurity=False)
    return digest.hexdigest()


def chain_hash(fields: dict[str, str]) -> str:
    """The chain hash of an entry, from its stored fields (as strings)."""
    return entry_hash(
        fields.get("prev", "").encode(),
        fields.get("type", "").encode(),
        fields.get("v", "").encode(),
        fields.get("sid", "").encode(),
        fields.get("data", "").encode(),
        fields.get("meta", "").encode(),
    )

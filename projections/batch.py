"""Collects the view changes of a batch of events before they are applied at once."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from redis.asyncio import Redis

from projections import records

Record = records.Record

_LENGTH = struct.Struct(">I")
_HEAD = struct.Struct(">cI")


class ViewBatch:
    """Reads view records through a cache and records the changes to write.

    Handlers call ``get``/``put``/``index``; the projector turns the result into
    one atomic script call with the checkpoint move (``payload``, read by apply.lua).

    ``carried`` seeds the cache with the records the previous batch left (what the
    views hold once that batch is applied), so a batch computed while the previous
    one is still being written reads none of the keys that one writes.
    """

    def __init__(
        self, redis: Redis, prefix: str, carried: dict[str, Record | None] | None = None
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self._records: dict[str, Record | None] = dict(carried) if carried else {}
        self._touched: set[str] = set()
        self._dirty: set[str] = set()
        self._index: dict[tuple[str, str], bool] = {}

    def key(self, name: str) -> str:
        return self.prefix + name

    async def prefetch(self, names: Iterable[str]) -> None:
        """Read many records in one round trip (a batch usually touches many)."""
        wanted = dict.fromkeys(names)
        self._touched.update(wanted)
        missing = [n for n in wanted if n not in self._records]
        if not missing:
            return
        raws = await self.redis.mget([self.key(n) for n in missing])
        for name, raw in zip(missing, raws, strict=True):
            self._records[name] = records.decode(name, raw) if raw is not None else None

    async def get(self, name: str) -> Record | None:
        if name not in self._records:
            raw = await self.redis.get(self.key(name))
            self._records[name] = records.decode(name, raw) if raw is not None else None
        self._touched.add(name)
        record = self._records[name]
        return dict(record) if record is not None else None

    def put(self, name: str, record: Record) -> None:
        self._records[name] = record
        self._touched.add(name)
        self._dirty.add(name)

    def index(self, name: str, member: str, present: bool) -> None:
        self._index[(name, member)] = present

    def carried(self) -> dict[str, Record | None]:
        """The records this batch read or wrote, as the views hold them once it is applied."""
        return {name: self._records[name] for name in self._touched}

    def payload(self) -> bytes:
        """Every change, framed for apply.lua: per record an op ``S`` (set) or ``D``
        (delete), per index and direction an op ``A`` (add) or ``R`` (remove) with its
        members; each op is a byte, the name and the argument, each length-prefixed.
        Changes to different keys commute, so their order is free."""
        parts: list[bytes] = []
        head, length = _HEAD.pack, _LENGTH.pack
        for name in self._dirty:
            record = self._records[name]
            encoded = name.encode()
            if record is None:
                parts += (head(b"D", len(encoded)), encoded, length(1), b"-")
            else:
                value = records.encode(name, record)
                parts += (head(b"S", len(encoded)), encoded, length(len(value)), value)
        grouped: dict[tuple[str, bool], list[bytes]] = {}
        for (name, member), present in self._index.items():
            encoded = member.encode()
            grouped.setdefault((name, present), []).extend((length(len(encoded)), encoded))
        for (name, present), members in grouped.items():
            encoded, framed = name.encode(), b"".join(members)
            parts += (head(b"A" if present else b"R", len(encoded)), encoded)
            parts += (length(len(framed)), framed)
        return b"".join(parts)

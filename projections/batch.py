"""Collects the view changes of a batch of events before they are applied at once."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

Record = dict[str, Any]


class ViewBatch:
    """Reads view records through a cache and records the changes to write.

    Handlers call ``get``/``put``/``index``; the projector turns the result into
    one atomic script call with the checkpoint move.
    """

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._records: dict[str, Record | None] = {}
        self._dirty: set[str] = set()
        self._index: dict[tuple[str, str], bool] = {}

    def key(self, name: str) -> str:
        return self.prefix + name

    async def prefetch(self, names: list[str]) -> None:
        """Read many records in one round trip (a batch usually touches many)."""
        wanted = [n for n in dict.fromkeys(names) if n not in self._records]
        if not wanted:
            return
        raws = await self.redis.mget([self.key(n) for n in wanted])
        for name, raw in zip(wanted, raws, strict=True):
            self._records[name] = orjson.loads(raw) if raw is not None else None

    async def get(self, name: str) -> Record | None:
        if name not in self._records:
            raw = await self.redis.get(self.key(name))
            self._records[name] = orjson.loads(raw) if raw is not None else None
        record = self._records[name]
        return dict(record) if record is not None else None

    def put(self, name: str, record: Record) -> None:
        self._records[name] = record
        self._dirty.add(name)

    def index(self, name: str, member: str, present: bool) -> None:
        self._index[(name, member)] = present

    def operations(self) -> tuple[list[str], list[Any]]:
        """View keys and, for each, an operation code and argument (see apply.lua)."""
        keys: list[str] = []
        args: list[Any] = []
        for name in sorted(self._dirty):
            record = self._records[name]
            keys.append(self.key(name))
            if record is None:
                args += ["D", "-"]
            else:
                args += ["S", orjson.dumps(record, option=orjson.OPT_SORT_KEYS)]
        for (name, member), present in sorted(self._index.items()):
            keys.append(self.key(name))
            args += ["A" if present else "R", member]
        return keys, args

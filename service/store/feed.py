"""The global event feed: every partition's log, merged, behind one cursor.

A cursor holds one position per partition, joined by ``.`` (with one partition it
is simply the stream id). Each event's ``position`` in the feed is the cursor just
after it, so a reader that resumes after any event's position misses nothing and
sees nothing twice, whatever the partitions' relative timing.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from service.store.eventstore import EventStore, StoredEvent, parse_position

START = "0-0"


def parse_cursor(cursor: str | None, partitions: int) -> list[str]:
    """Per-partition positions from a cursor; raise ValueError when malformed."""
    if not cursor:
        return [START] * partitions
    parts = cursor.split(".")
    if len(parts) != partitions:
        raise ValueError(f"cursor must have {partitions} position(s), not {len(parts)}")
    out = []
    for part in parts:
        try:
            ms, seq = parse_position(part)
        except ValueError as exc:
            raise ValueError(f"malformed cursor position {part!r}") from exc
        if not (0 <= ms < 2**64 and 0 <= seq < 2**64):
            raise ValueError(f"malformed cursor position {part!r}")
        out.append(f"{ms}-{seq}")
    return out


def format_cursor(positions: list[str]) -> str:
    return ".".join(positions)


FEED_ROUNDS = 10
"""How many reads one page of a filtered feed may take to find the events it wants."""


async def read_feed(
    store: EventStore,
    cursor: str | None,
    limit: int,
    keep: Callable[[StoredEvent], bool] | None = None,
) -> tuple[list[tuple[str, StoredEvent]], str]:
    """Up to ``limit`` events after ``cursor`` as (feed position, event), and the next cursor.

    With ``keep``, only the events it wants; the others still move the cursor past them,
    so a page can hold fewer than ``limit`` (even none) while more lie ahead."""
    partitions = store.keys.partitions
    positions = parse_cursor(cursor, partitions)
    out: list[tuple[str, StoredEvent]] = []
    for _ in range(FEED_ROUNDS if keep else 1):
        batches = [await store.read(p, positions[p], limit) for p in range(partitions)]
        # only the first ``limit`` of the merge are surely in log order across partitions
        merged = list(
            heapq.merge(
                *batches, key=lambda event: (parse_position(event.position), event.partition)
            )
        )[:limit]
        for event in merged:
            if len(out) >= limit:
                break
            positions[event.partition] = event.position
            if keep is None or keep(event):
                out.append((format_cursor(positions), event))
        if len(out) >= limit or len(merged) < limit:
            break
    return out, format_cursor(positions)

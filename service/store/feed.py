"""The global event feed: every partition's log, merged, behind one cursor.

A cursor holds one position per partition, joined by ``.`` (with one partition it
is simply the stream id). Each event's ``position`` in the feed is the cursor just
after it, so a reader that resumes after any event's position misses nothing and
sees nothing twice, whatever the partitions' relative timing.
"""

from __future__ import annotations

import heapq

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


async def read_feed(
    store: EventStore, cursor: str | None, limit: int
) -> tuple[list[tuple[str, StoredEvent]], str]:
    """Up to ``limit`` events after ``cursor`` as (feed position, event), and the next cursor."""
    partitions = store.keys.partitions
    positions = parse_cursor(cursor, partitions)
    batches = [await store.read(p, positions[p], limit) for p in range(partitions)]
    merged = heapq.merge(
        *batches, key=lambda event: (parse_position(event.position), event.partition)
    )
    out: list[tuple[str, StoredEvent]] = []
    for event in merged:
        if len(out) >= limit:
            break
        positions[event.partition] = event.position
        out.append((format_cursor(positions), event))
    return out, format_cursor(positions)

"""Consume cronstream's event log directly with your own Redis consumer group.

Every partition's log is a Redis stream, ``<prefix>:{<p>}:log`` (``cs:{0}:log``
with the defaults). A consumer group of your own gives you at-least-once
delivery with acknowledgements, independent of cronstream's own readers::

    python examples/consumer_group.py --redis redis://127.0.0.1:6379/0 \\
        --group billing --consumer billing-1

On start it first re-reads its own pending entries (delivered before but never
acknowledged: it crashed mid-way), then reads new ones with ``XREADGROUP >``,
handles each and ``XACK``s it. Handle idempotently: after a crash an entry is
delivered again. Entries are the event envelope: type, v, sid, data (JSON), meta
(JSON), prev/hash (the chain). ``v`` is the schema version as written: upcast old
versions yourself or read through ``GET /v1/events`` instead.

Needs ``redis`` (redis-py), which cronstream already depends on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import redis

BLOCK_MS = 5000
COUNT = 100


def log_keys(prefix: str, partitions: int) -> list[str]:
    return [f"{prefix}:{{{p}}}:log" for p in range(partitions)]


def ensure_group(client: redis.Redis, streams: list[str], group: str, start: str) -> None:
    for stream in streams:
        try:
            client.xgroup_create(stream, group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: keep its position
                raise


def handle(stream: str, entry_id: str, fields: dict[str, str]) -> None:
    """What this consumer does with an event: print it. Replace with your own."""
    data = json.loads(fields.get("data", "{}"))
    print(
        f"{stream} {entry_id}  {fields.get('type'):<18} {fields.get('sid'):<24} {json.dumps(data)}"
    )
    sys.stdout.flush()


def consume(client: redis.Redis, args: argparse.Namespace) -> int:
    streams = log_keys(args.prefix, args.partitions)
    ensure_group(client, streams, args.group, args.start)
    handled = 0

    def process(stream: str, entries: list[Any]) -> bool:
        nonlocal handled
        for entry_id, fields in entries:
            handle(stream, entry_id, fields)
            client.xack(stream, args.group, entry_id)  # after handling: at least once
            handled += 1
            if args.max_events and handled >= args.max_events:
                return True
        return False

    # 1. this consumer's pending entries (delivered before, never acknowledged)
    for stream in streams:
        after = "0"
        while True:
            reply: Any = client.xreadgroup(args.group, args.consumer, {stream: after}, count=COUNT)
            entries = reply[0][1] if reply else []
            if not entries:
                break
            if process(stream, entries):
                return 0
            after = entries[-1][0]
    # 2. new entries, from every partition
    while True:
        reply = client.xreadgroup(
            args.group, args.consumer, dict.fromkeys(streams, ">"), count=COUNT, block=BLOCK_MS
        )
        for stream, entries in reply or []:
            if process(stream, entries):
                return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--prefix", default=os.environ.get("CRONSTREAM_KEY_PREFIX", "cs"))
    parser.add_argument(
        "--partitions", type=int, default=int(os.environ.get("CRONSTREAM_PARTITIONS", "1"))
    )
    parser.add_argument("--group", required=True, help="your consumer group's name")
    parser.add_argument("--consumer", required=True, help="this process's name in the group")
    parser.add_argument(
        "--start", default="0", help="where a new group starts: 0 (whole log) or $ (new only)"
    )
    parser.add_argument("--max-events", type=int, default=0, help="stop after N events")
    args = parser.parse_args(argv)
    client = redis.Redis.from_url(args.redis, decode_responses=True)
    try:
        return consume(client, args)
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())

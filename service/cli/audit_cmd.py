"""``cronstream audit`` and ``replay``: a schedule's history and past states, from the log.

They read Redis directly and answer from the log (and archives) alone, never from
a view, so they work on a keyspace whose views are stale or gone. The archive is
the one ``archive`` recorded, unless ``--archive`` or $CRONSTREAM_ARCHIVE_DIR name
a copy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from service.api import render
from service.cli.common import add_data_dir, add_output_option, settings, with_redis
from service.cli.history_view import emit_history
from service.cli.output import emit
from service.domain.timeutil import parse_instant, to_rfc3339
from service.store.keys import Keyspace

if TYPE_CHECKING:
    from service.cli.common import Subparsers

REPLAY_COLUMNS = ("id", "workflow_id", "status", "version", "spec.cron", "updated_at", "note")


def add_parsers(sub: Subparsers) -> None:
    audit = sub.add_parser(
        "audit", help="every event of a schedule: time, actor, what changed, trigger, outcome"
    )
    audit.add_argument("schedule_id")
    audit.add_argument("--from", dest="start", type=_instant, help="RFC 3339 instant")
    audit.add_argument("--to", dest="end", type=_instant, help="RFC 3339 instant")
    _common(audit, default_output="table")
    audit.set_defaults(func=run_audit)

    replay = sub.add_parser(
        "replay", help="the schedules as they stood at an instant or log position, from the log"
    )
    when = replay.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", type=_instant, help="RFC 3339 instant")
    when.add_argument("--position", help="a log position (stream id) or a feed cursor")
    replay.add_argument("--schedule", help="only this schedule")
    _common(replay, default_output="json")
    replay.set_defaults(func=run_replay)


def _common(parser: argparse.ArgumentParser, default_output: str) -> None:
    parser.add_argument(
        "--archive",
        type=Path,
        default=None,
        help="archive directory (default $CRONSTREAM_ARCHIVE_DIR, else the one `archive` recorded)",
    )
    add_output_option(parser, default_output)
    add_data_dir(parser)


def _instant(text: str) -> int:
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _archive_override(args: argparse.Namespace) -> Path | None:
    """``--archive``, else $CRONSTREAM_ARCHIVE_DIR; None reads the recorded archive."""
    found: Path | None = args.archive or settings(args).archive_dir
    return found


def run_audit(args: argparse.Namespace) -> int:
    from service.audit.history import audit

    override = _archive_override(args)

    async def work(redis: Redis, keys: Keyspace) -> int:
        items = await audit(
            redis, keys, args.schedule_id, start=args.start, end=args.end, archive_dir=override
        )
        if not items:
            print(f"cronstream: no events of schedule {args.schedule_id!r}", file=sys.stderr)
            return 1
        # as `schedule history` prints it: one change a line, `field: old -> new`
        emit_history({"schedule_id": args.schedule_id, "items": items}, args.output)
        return 0

    return with_redis(args, work)


def run_replay(args: argparse.Namespace) -> int:
    from service.audit.replay import Point, position_point, replay

    override = _archive_override(args)

    async def work(redis: Redis, keys: Keyspace) -> int:
        if args.position is not None:
            point = position_point(args.position, keys, args.schedule)
        else:
            point = Point(at=args.at)
        result = await replay(redis, keys, point, schedule_id=args.schedule, archive_dir=override)
        now = args.at if args.at is not None else (result.last_time or 0)
        header: dict[str, Any] = {
            "at": to_rfc3339(now) if now else None,
            "position": args.position,
            "events": result.events,
        }
        if args.schedule is not None:
            record = result.schedule(args.schedule)
            if record is None:
                print(
                    f"cronstream: schedule {args.schedule!r} did not exist at that point",
                    file=sys.stderr,
                )
                return 1
            emit(render.schedule(record, now), args.output, REPLAY_COLUMNS)
            return 0
        items = [render.schedule(r, now) for r in result.live_schedules()]
        emit({**header, "items": items}, args.output, REPLAY_COLUMNS)
        return 0

    return with_redis(args, work)

"""``cronstream verify``, ``archive`` and ``restore``: the log's integrity and its archive.

They talk to Redis directly (REDIS_URL, or the embedded Redis under --data-dir),
like ``projections rebuild``. Also runnable as ``python -m service.cli.archive_cmd``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from service.cli.common import add_data_dir, with_redis
from service.store.keys import Keyspace

if TYPE_CHECKING:
    from service.audit.archive import ArchiveReport
    from service.cli.common import Subparsers

STOP_AT_ENV = "CRONSTREAM_ARCHIVE_STOP_AT"
"""Test hook: the archive process stops itself (SIGSTOP) at this step (see archive.STEPS)."""
DATA_DIR_HELP = "embedded Redis data dir"


def add_parsers(sub: Subparsers) -> None:
    verify = sub.add_parser("verify", help="check the hash chain of the log (and archive)")
    verify.add_argument("--archive", type=Path, default=None, help="archive directory to include")
    add_data_dir(verify, DATA_DIR_HELP)
    verify.set_defaults(func=run_verify)

    archive = sub.add_parser(
        "archive", help="move log entries every consumer has passed to files, then trim"
    )
    archive.add_argument("--before", required=True, help="archive entries older than this instant")
    archive.add_argument("--to", required=True, type=Path, help="archive directory")
    archive.add_argument(
        "--segment-entries", type=int, default=100_000, help="entries per segment file"
    )
    add_data_dir(archive, DATA_DIR_HELP)
    archive.set_defaults(func=run_archive)

    restore = sub.add_parser("restore", help="put an archive back into an empty Redis")
    restore.add_argument("directory", type=Path, help="archive directory")
    add_data_dir(restore, DATA_DIR_HELP)
    restore.set_defaults(func=run_restore)


def run_verify(args: argparse.Namespace) -> int:
    from service.audit.verify import summary, verify

    async def work(redis: Redis, keys: Keyspace) -> int:
        report = await verify(redis, keys, args.archive)
        print(summary(report))
        return 0 if report.intact else 1

    return with_redis(args, work)


def _stop_at(step: str) -> None:
    if os.environ.get(STOP_AT_ENV) == step:
        print(f"stopping at {step}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)


def run_archive(args: argparse.Namespace) -> int:
    from migrations.keyspace import check_keyspace
    from service.audit.archive import archive
    from service.domain.timeutil import parse_instant
    from service.store.segments import ArchiveError

    try:
        before_ms = parse_instant(args.before)
    except ValueError as exc:
        print(f"--before: {exc}", file=sys.stderr)
        return 2

    async def work(redis: Redis, keys: Keyspace) -> int:
        await check_keyspace(redis, keys)
        try:
            report = await archive(
                redis,
                keys,
                before_ms,
                args.to,
                segment_entries=args.segment_entries,
                on_step=_stop_at,
            )
        except ArchiveError as exc:
            print(f"archive stopped, nothing more trimmed: {exc}", file=sys.stderr)
            return 1
        _print_archive(report, args.to)
        return 0

    return with_redis(args, work)


def _print_archive(report: ArchiveReport, directory: Path) -> None:
    for part in report.partitions:
        discarded = (
            f"; discarded {len(part.discarded)} unfinished file(s)" if part.discarded else ""
        )
        print(
            f"partition {part.partition}: archived {part.entries} entries in "
            f"{part.segments} segment(s) ({part.bytes:,} bytes), trimmed {part.trimmed} "
            f"from the log; bound: {part.reason}" + discarded
        )
    print(f"archived {report.entries} entries to {directory} in {report.seconds:.2f}s")


def run_restore(args: argparse.Namespace) -> int:
    from migrations.keyspace import check_keyspace
    from service.audit.restore import RestoreRefused, restore

    async def work(redis: Redis, keys: Keyspace) -> int:
        try:
            await check_keyspace(redis, keys)
            report = await restore(redis, keys, args.directory)
        except RestoreRefused as exc:
            print(f"restore refused: {exc}", file=sys.stderr)
            return 1
        model = report.write_model
        print(
            f"restored {report.entries} entries in {report.partitions} partition(s) from "
            f"{args.directory} in {report.load_seconds:.2f}s; write model: "
            f"{model.aggregates} aggregates, runs {dict(sorted(model.runs.items()))}; "
            f"views: {report.views.events} events rebuilt"
        )
        return 0

    return with_redis(args, work)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cronstream", description=__doc__)
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

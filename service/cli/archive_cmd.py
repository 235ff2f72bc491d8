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

from service.cli.common import add_data_dir, settings, with_redis
from service.store.keys import Keyspace

if TYPE_CHECKING:
    from service.audit.archive import ArchiveReport
    from service.cli.common import Subparsers

ARCHIVE_MISSING = 3
"""``verify``'s exit status when a partition's archive cannot be read (1: a broken chain)."""
ARCHIVE_HELP = (
    "archive directory (default $CRONSTREAM_ARCHIVE_DIR, else the one `archive` recorded)"
)
STOP_AT_ENV = "CRONSTREAM_ARCHIVE_STOP_AT"
"""Test hook: the archive process stops itself (SIGSTOP) at this step (see archive.STEPS)."""
DATA_DIR_HELP = "embedded Redis data dir"


def add_parsers(sub: Subparsers) -> None:
    verify = sub.add_parser(
        "verify",
        help="check the hash chain of the archive and the log "
        f"(exit 1: broken; {ARCHIVE_MISSING}: the archive cannot be read)",
    )
    verify.add_argument("--archive", type=Path, default=None, help=ARCHIVE_HELP)
    add_data_dir(verify, DATA_DIR_HELP)
    verify.set_defaults(func=run_verify)

    archive = sub.add_parser(
        "archive", help="move log entries every consumer has passed to files, then trim"
    )
    archive.add_argument("--before", required=True, help="archive entries older than this instant")
    archive.add_argument(
        "--to",
        type=Path,
        default=None,
        help="archive directory (default $CRONSTREAM_ARCHIVE_DIR, else where the last run "
        "archived)",
    )
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

    override = args.archive or settings(args).archive_dir

    async def work(redis: Redis, keys: Keyspace) -> int:
        report = await verify(redis, keys, override)
        print(summary(report))
        if report.breaks:
            return 1
        return ARCHIVE_MISSING if report.unreadable else 0

    return with_redis(args, work)


def _stop_at(step: str) -> None:
    if os.environ.get(STOP_AT_ENV) == step:
        print(f"stopping at {step}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)


def run_archive(args: argparse.Namespace) -> int:
    from migrations.keyspace import check_keyspace
    from service.audit.archive import archive
    from service.domain.timeutil import parse_instant
    from service.store.archive_record import recorded_directory
    from service.store.segments import ArchiveError

    try:
        before_ms = parse_instant(args.before)
    except ValueError as exc:
        print(f"--before: {exc}", file=sys.stderr)
        return 2

    async def work(redis: Redis, keys: Keyspace) -> int:
        await check_keyspace(redis, keys)
        directory = args.to or settings(args).archive_dir
        if directory is None:
            directory = await recorded_directory(redis, keys)
            problem = _recorded_problem(directory)
            if problem:
                print(f"archive: {problem}", file=sys.stderr)
                return 2
        assert directory is not None
        try:
            report = await archive(
                redis,
                keys,
                before_ms,
                directory,
                segment_entries=args.segment_entries,
                on_step=_stop_at,
            )
        except ArchiveError as exc:
            print(f"archive stopped, nothing more trimmed: {exc}", file=sys.stderr)
            return 1
        _print_archive(report, directory)
        return 0

    return with_redis(args, work)


def _recorded_problem(directory: Path | None) -> str:
    """Why the recorded directory cannot be archived to ("" when it can)."""
    if directory is None:
        return (
            "no directory: pass --to DIR or set CRONSTREAM_ARCHIVE_DIR "
            "(later runs default to the directory the last one recorded)"
        )
    if not directory.is_dir():
        # creating it afresh would start an archive that does not hold the earlier segments
        return (
            f"the recorded archive directory {directory} is not there: put it back, or pass "
            "--to with where it is now"
        )
    return ""


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
    print(
        f"archived {report.entries} entries to {directory.resolve()} in {report.seconds:.2f}s; "
        "the API, audit, replay and verify find them there"
    )


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

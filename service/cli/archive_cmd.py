"""``cronstream verify``, ``archive`` and ``restore``: the log's integrity and its archive.

They talk to Redis directly (REDIS_URL, or the embedded Redis under --data-dir),
like ``projections rebuild``. Also runnable as ``python -m service.cli.archive_cmd``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

from service.config import Settings

STOP_AT_ENV = "CRONSTREAM_ARCHIVE_STOP_AT"
"""Test hook: the archive process stops itself (SIGSTOP) at this step (see archive.STEPS)."""


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    verify = sub.add_parser("verify", help="check the hash chain of the log (and archive)")
    verify.add_argument("--archive", type=Path, default=None, help="archive directory to include")
    _data_dir(verify)
    verify.set_defaults(func=run_verify)

    archive = sub.add_parser(
        "archive", help="move log entries every consumer has passed to files, then trim"
    )
    archive.add_argument("--before", required=True, help="archive entries older than this instant")
    archive.add_argument("--to", required=True, type=Path, help="archive directory")
    archive.add_argument(
        "--segment-entries", type=int, default=100_000, help="entries per segment file"
    )
    _data_dir(archive)
    archive.set_defaults(func=run_archive)

    restore = sub.add_parser("restore", help="put an archive back into an empty Redis")
    restore.add_argument("directory", type=Path, help="archive directory")
    _data_dir(restore)
    restore.set_defaults(func=run_restore)


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, default=None, help="embedded Redis data dir")


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env().with_overrides(data_dir=getattr(args, "data_dir", None))


def run_verify(args: argparse.Namespace) -> int:
    from service.audit.verify import summary, verify
    from service.server import redis_for
    from service.store.keys import Keyspace

    settings = _settings(args)

    async def go() -> bool:
        async with redis_for(settings) as conn:
            report = await verify(
                conn.client, Keyspace(settings.key_prefix, settings.partitions), args.archive
            )
        print(summary(report))
        return report.intact

    return 0 if asyncio.run(go()) else 1


def _stop_at(step: str) -> None:
    if os.environ.get(STOP_AT_ENV) == step:
        print(f"stopping at {step}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)


def run_archive(args: argparse.Namespace) -> int:
    from migrations.keyspace import check_keyspace
    from service.audit.archive import archive
    from service.domain.timeutil import parse_instant
    from service.server import redis_for
    from service.store.keys import Keyspace
    from service.store.segments import ArchiveError

    try:
        before_ms = parse_instant(args.before)
    except ValueError as exc:
        print(f"--before: {exc}", file=sys.stderr)
        return 2
    settings = _settings(args)

    async def go() -> int:
        async with redis_for(settings) as conn:
            keys = Keyspace(settings.key_prefix, settings.partitions)
            await check_keyspace(conn.client, keys)
            try:
                report = await archive(
                    conn.client,
                    keys,
                    before_ms,
                    args.to,
                    segment_entries=args.segment_entries,
                    on_step=_stop_at,
                )
            except ArchiveError as exc:
                print(f"archive stopped, nothing more trimmed: {exc}", file=sys.stderr)
                return 1
        for part in report.partitions:
            print(
                f"partition {part.partition}: archived {part.entries} entries in "
                f"{part.segments} segment(s) ({part.bytes:,} bytes), trimmed {part.trimmed} "
                f"from the log; bound: {part.reason}"
                + (
                    f"; discarded {len(part.discarded)} unfinished file(s)"
                    if part.discarded
                    else ""
                )
            )
        print(f"archived {report.entries} entries to {args.to} in {report.seconds:.2f}s")
        return 0

    return asyncio.run(go())


def run_restore(args: argparse.Namespace) -> int:
    from migrations.keyspace import check_keyspace
    from service.audit.restore import RestoreRefused, restore
    from service.server import redis_for
    from service.store.keys import Keyspace

    settings = _settings(args)

    async def go() -> int:
        async with redis_for(settings) as conn:
            keys = Keyspace(settings.key_prefix, settings.partitions)
            try:
                await check_keyspace(conn.client, keys)
                report = await restore(conn.client, keys, args.directory)
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

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cronstream", description=__doc__)
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

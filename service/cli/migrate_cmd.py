"""``cronstream migrate``: bring the Redis keyspace to this build's layout version."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from service.cli.common import add_data_dir, with_redis
from service.store.keys import Keyspace

if TYPE_CHECKING:
    from service.cli.common import Subparsers


def add_parsers(sub: Subparsers) -> None:
    migrate = sub.add_parser("migrate", help="bring the Redis keyspace to this build's version")
    migrate.add_argument(
        "--wait",
        type=float,
        default=30.0,
        help="seconds to wait for another migrate's lock before refusing (default 30)",
    )
    migrate.add_argument(
        "--partitions",
        type=_partition_count,
        default=None,
        metavar="N",
        help="re-partition the keyspace into N partitions, offline: stop every cronstream "
        "process first; then start them with CRONSTREAM_PARTITIONS=N",
    )
    add_data_dir(migrate)
    migrate.set_defaults(func=run_migrate)


def _partition_count(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--partitions must be a positive integer, not {raw!r}")
    return value


def run_migrate(args: argparse.Namespace) -> int:
    from migrations.keyspace import migrate

    async def work(redis: Redis, keys: Keyspace) -> int:
        report = await migrate(redis, keys, wait_s=args.wait, partitions=args.partitions)
        if report.stamped_fresh:
            print(f"fresh keyspace: recorded version {report.after}")
        elif not report.applied:
            print(f"keyspace already at version {report.after}: nothing to do")
        else:
            for line in report.applied:
                print(f"applied {line}")
            print(f"keyspace migrated from version {report.before} to {report.after}")
        moved = report.repartitioned
        if moved is not None:
            resumed = f" (resumed at its {moved.resumed} phase)" if moved.resumed else ""
            print(
                f"re-partitioned from {moved.before} to {moved.after} partitions{resumed}: "
                f"{moved.entries} entries moved and re-chained ({moved.renumbered} renumbered), "
                f"{moved.kept} records kept, {moved.dropped} dropped, in {moved.seconds:.1f}s; "
                f"start cronstream with CRONSTREAM_PARTITIONS={moved.after}"
            )
        return 0

    return with_redis(args, work)

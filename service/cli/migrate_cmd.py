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
    add_data_dir(migrate)
    migrate.set_defaults(func=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    from migrations.keyspace import migrate

    async def work(redis: Redis, keys: Keyspace) -> int:
        report = await migrate(redis, keys, wait_s=args.wait)
        if report.stamped_fresh:
            print(f"fresh keyspace: recorded version {report.after}")
        elif not report.applied:
            print(f"keyspace already at version {report.after}: nothing to do")
        else:
            for line in report.applied:
                print(f"applied {line}")
            print(f"keyspace migrated from version {report.before} to {report.after}")
        return 0

    return with_redis(args, work)

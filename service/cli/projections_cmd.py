"""``cronstream projections rebuild``: rebuild the read-side views from the log."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from service.cli.common import add_data_dir, settings, with_redis
from service.store.keys import Keyspace

if TYPE_CHECKING:
    from service.cli.common import Subparsers


def add_parsers(sub: Subparsers) -> None:
    proj = sub.add_parser("projections", help="manage the read-side views")
    proj_sub = proj.add_subparsers(dest="action", required=True)
    rebuild = proj_sub.add_parser("rebuild", help="drop every view and rebuild it from the log")
    rebuild.add_argument(
        "--shadow",
        action="store_true",
        help="build beside the live views and diff them; the live views stay",
    )
    rebuild.add_argument(
        "--switch",
        action="store_true",
        help="with --shadow: switch to the shadow views if nothing differs",
    )
    rebuild.add_argument(
        "--force",
        action="store_true",
        help="with --shadow --switch: switch even if something differs",
    )
    rebuild.add_argument(
        "--archive",
        type=Path,
        default=None,
        metavar="DIR",
        help="the archive of a trimmed log (default $CRONSTREAM_ARCHIVE_DIR, else the one "
        "`archive` recorded)",
    )
    add_data_dir(rebuild)
    rebuild.set_defaults(func=run_rebuild)


def run_rebuild(args: argparse.Namespace) -> int:
    from migrations.keyspace import check_keyspace
    from projections.rebuild import rebuild, shadow_rebuild
    from service.store.archive_record import recorded_directory

    async def work(redis: Redis, keys: Keyspace) -> int:
        await check_keyspace(redis, keys)
        archive_dir = (
            args.archive or settings(args).archive_dir or await recorded_directory(redis, keys)
        )
        if args.shadow:
            shadow = await shadow_rebuild(
                redis, keys, args.switch, force=args.force, archive_dir=archive_dir
            )
            print(shadow.summary())
            return 0 if shadow.empty else 1
        report = await rebuild(redis, keys, archive_dir=archive_dir)
        print(
            f"rebuilt {report.partitions} partition(s): {report.events} events in "
            f"{report.seconds:.2f}s ({report.events_per_second:,.0f} events/s), "
            f"{report.dropped_keys} view keys dropped"
        )
        return 0

    return with_redis(args, work)

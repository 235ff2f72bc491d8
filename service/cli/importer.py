"""``cronstream import apscheduler``: an APScheduler 3 job store as a file for ``apply``.

Reading the store needs only the store (see service/importers/apscheduler_store.py);
``--apply`` then applies the file as ``cronstream apply FILE`` does, to Redis directly.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from service.cli.common import add_data_dir, duration_text

if TYPE_CHECKING:
    from service.cli.common import Subparsers
    from service.importers.apscheduler import ImportResult

EXAMPLES = """\
examples:
  cronstream import apscheduler --jobstore sqlite:///jobs.sqlite --out schedules/apscheduler.yaml
  cronstream import apscheduler --jobstore redis://127.0.0.1:6379/0 --apply"""


def add_parsers(sub: Subparsers) -> None:
    """Register ``import`` and its sub-command ``apscheduler``."""
    parser = sub.add_parser("import", help="import jobs from another scheduler")
    commands = parser.add_subparsers(dest="import_command", required=True)
    aps = commands.add_parser(
        "apscheduler",
        help="convert an APScheduler 3 job store into workflows and schedules",
        description="Read every job of an APScheduler 3 job store (Redis or SQLAlchemy) and "
        "write the workflows and schedules they become as a YAML file for `cronstream "
        "apply` (stdout by default), or apply it with --apply. Jobs that cannot be "
        "converted are listed on stderr with the reason. The store is only read.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    aps.add_argument(
        "--jobstore",
        required=True,
        metavar="URL",
        help="redis://HOST:PORT/DB (RedisJobStore) or a SQLAlchemy URL such as sqlite:///jobs.db",
    )
    aps.add_argument("--table", default="apscheduler_jobs", help="SQLAlchemyJobStore's tablename")
    aps.add_argument("--jobs-key", default="apscheduler.jobs", help="RedisJobStore's jobs_key")
    aps.add_argument("--out", type=Path, help="write the YAML here instead of stdout")
    aps.add_argument(
        "--timeout",
        type=duration_text,
        default="1h",
        help="each workflow's attempt time limit (APScheduler has none; default 1h)",
    )
    aps.add_argument(
        "--apply",
        action="store_true",
        help="apply the file at once, as `cronstream apply` would (talks to Redis directly)",
    )
    add_data_dir(aps)
    aps.set_defaults(func=run_apscheduler)


def run_apscheduler(args: argparse.Namespace) -> int:
    from service.importers.apscheduler import convert_jobs
    from service.importers.apscheduler_store import read_jobstore

    jobs = read_jobstore(args.jobstore, table=args.table, jobs_key=args.jobs_key)
    result = convert_jobs(jobs, int(time.time() * 1000), timeout=args.timeout)
    text = yaml_text(result)
    report(result, len(jobs), sys.stderr)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    elif not args.apply:
        sys.stdout.write(text)
    if not args.apply or not result.schedules:
        return 0
    if args.out is not None:
        return apply_file(args, args.out)
    with tempfile.TemporaryDirectory(prefix="cronstream-import-") as folder:
        path = Path(folder) / "apscheduler.yaml"
        path.write_text(text)
        return apply_file(args, path)


def yaml_text(result: ImportResult) -> str:
    """The file ``apply`` reads, in the layout of ``service.manifests.files.dump_yaml``
    (see service/importers/yaml_out.py for why it has a writer of its own)."""
    from service.importers.yaml_out import dump

    if not result.schedules:
        return ""
    return dump({"workflows": result.workflows, "schedules": result.schedules})


def apply_file(args: argparse.Namespace, path: Path) -> int:
    """``cronstream apply PATH``, with this command's --data-dir."""
    from service.cli import apply as apply_cmd

    applied = argparse.Namespace(
        paths=[path],
        dry_run=False,
        prune=False,
        keep_overrides=False,
        data_dir=args.data_dir,
        output="table",
    )
    return apply_cmd.run(applied)


def report(result: ImportResult, total: int, err: TextIO) -> None:
    """What was converted, changed and left out, on stderr (stdout is the file)."""
    err.write(
        f"{total} jobs: {len(result.schedules)} schedules and {len(result.workflows)} workflows, "
        f"{len(result.skipped)} not converted\n"
    )
    for job_id, note in result.notes:
        err.write(f"  note: job {job_id!r}: {note}\n")
    for skipped in result.skipped:
        err.write(f"  not converted: job {skipped.job_id!r}: {skipped.reason}\n")

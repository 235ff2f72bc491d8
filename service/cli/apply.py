"""``cronstream apply``: make the service match files of workflows and schedules.

Like ``token`` and ``namespace``, apply talks to Redis directly (REDIS_URL, or the
embedded Redis under --data-dir): it reads every resource's write model in a few round
trips and appends in batches (see service/manifests/reconcile.py for why).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson
from redis.asyncio import Redis

from service.cli.common import add_data_dir, add_output_option, settings, with_redis
from service.cli.output import emit_document
from service.store.keys import Keyspace

if TYPE_CHECKING:
    from service.cli.common import Subparsers
    from service.manifests.plan import Change, FieldDiff
    from service.manifests.reconcile import Report

ORDER = ("create", "update", "delete", "keep", "unchanged", "failed")
WORDS = {
    "create": "to create",
    "update": "to update",
    "delete": "to delete",
    "keep": "override kept",
    "unchanged": "unchanged",
    "failed": "failed",
}
DONE = {"create": "created", "update": "updated", "delete": "deleted"}


def add_parsers(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "apply",
        help="make workflows and schedules what YAML files declare (talks to Redis directly)",
        description="Read every file (a directory: its *.yaml and *.yml files), validate them "
        "all, then create, update and (with --prune) delete workflows and schedules to match. "
        "Nothing is written when a file is invalid.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="DIR|FILE")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    parser.add_argument(
        "--prune",
        action="store_true",
        help="delete what earlier applies created and the files no longer declare "
        "(given files: only what those files kept; given directories: all of it)",
    )
    parser.add_argument(
        "--keep-overrides",
        action="store_true",
        help="leave schedules changed through the API since the last apply as they are "
        "(the default reverts them to the files)",
    )
    add_data_dir(parser)
    add_output_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    async def work(redis: Redis, keys: Keyspace) -> int:
        from migrations.keyspace import check_keyspace
        from service.manifests.files import InvalidFiles
        from service.manifests.plan import Options
        from service.manifests.reconcile import (
            Report,
            apply,
            collections_paused,
            plan,
            read_manifest,
        )
        from service.store.eventstore import EventStore

        await check_keyspace(redis, keys)
        store = EventStore(redis, keys)
        options = Options(args.prune, args.keep_overrides, settings(args).outbound_policy())
        with collections_paused():
            try:
                manifest = await read_manifest(store, args.paths)
                planned = await plan(store, manifest, options)
            except InvalidFiles as exc:
                return invalid(exc, sys.stderr)
            report = Report(planned) if args.dry_run else await apply(store, planned, options)
        show(report, args.output, args.dry_run, sys.stdout)
        for failed in report.failed:
            print(
                f"cronstream: {failed.change.kind} {failed.change.id}: {failed.error}",
                file=sys.stderr,
            )
        return 1 if report.failed else 0

    return with_redis(args, work)


def invalid(exc: Any, err: TextIO) -> int:
    """Every problem of the files, one a line, and the exit code of a refusal."""
    for error in exc.errors:
        err.write(f"cronstream: {error}\n")
    err.write("cronstream: nothing was applied\n")
    return 1


def show(report: Report, fmt: str, dry_run: bool, out: TextIO) -> None:
    if emit_document(document(report, dry_run), fmt, out):
        return
    for change in report.plan.changes:
        out.write(change_text(change))
    if report.plan.changes:
        out.write("\n")
    counts = report.plan.counts() if dry_run else report.counts()
    for source, count in counts.items():
        out.write(f"{source}: {summary(count) or 'nothing declared'}\n")
    total: Counter[str] = sum(counts.values(), Counter())
    if dry_run:
        out.write(f"Plan: {summary(total) or 'nothing declared'} (dry run: nothing applied)\n")
    else:
        done = ", ".join(f"{total[k]} {DONE[k]}" for k in DONE if total[k])
        out.write(f"Applied: {done or 'no changes'}; {report.appended} events appended\n")


def change_text(change: Change) -> str:
    from service.manifests.plan import SYMBOLS

    reason = f"  {change.reason}" if change.reason else ""
    lines = [f"{SYMBOLS[change.action]} {change.kind} {change.id}  ({change.source}){reason}\n"]
    lines += [f"    {diff_text(d)}\n" for d in change.diffs]
    return "".join(lines)


def diff_text(diff: FieldDiff) -> str:
    return f"{diff.field}: {_value(diff.before)} -> {_value(diff.after)}"


def _value(value: Any) -> str:
    return "(unset)" if value is None else orjson.dumps(value).decode()


def summary(count: Counter[str]) -> str:
    return ", ".join(f"{count[k]} {WORDS[k]}" for k in ORDER if count[k] > 0)


def document(report: Report, dry_run: bool) -> dict[str, Any]:
    """The plan and its outcome as one JSON/YAML document."""
    results = {(a.change.kind, a.change.id): a for a in report.applied}
    changes = []
    for change in report.plan.changes:
        item: dict[str, Any] = {
            "action": change.action.value,
            "kind": change.kind,
            "id": change.id,
            "source": change.source,
            "reason": change.reason or None,
            "diff": [{"field": d.field, "live": d.before, "file": d.after} for d in change.diffs],
        }
        applied = results.get((change.kind, change.id))
        if applied is not None:
            item["version"] = applied.version
            item["error"] = applied.error
        changes.append(item)
    counts = report.plan.counts() if dry_run else report.counts()
    return {
        "dry_run": dry_run,
        "changes": changes,
        "files": {source: dict(count) for source, count in counts.items()},
        "appended": report.appended,
    }

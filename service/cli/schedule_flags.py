"""The flags of ``schedule create`` and ``schedule update``: one per field of a schedule
(``service/domain/schedule.py``: ``ScheduleConfig``, ``SchedulePolicy``;
``service/domain/spec.py``: ``Spec``), so no JSON file is needed.

``create`` sends the body the flags describe (over ``-f FILE`` when given);
``update`` sends a JSON merge patch holding only the flags given, so whatever is not
named stays as it is. A list flag (``--cron``, ``--interval``, ``--tag``, …) replaces
the whole list; ``--unset FIELD`` puts a field back to its default.
"""

from __future__ import annotations

import argparse
from typing import Any

from service.cli.common import duration_text, instant_text, json_value, read_json_file
from service.cli.spec_options import interval_option
from service.domain.policies import CatchupPolicy, OverlapPolicy

FIELD_FLAGS = {
    "id": "--id",
    "note": "--note",
    "workflow_id": "--workflow",
    "name": "--name",
    "description": "--description",
    "spec": "--cron/--interval",
    "spec.cron": "--cron",
    "spec.intervals": "--interval",
    "spec.exclude_cron": "--exclude-cron",
    "spec.timezone": "--timezone",
    "spec.jitter": "--jitter",
    "spec.start_at": "--start",
    "spec.end_at": "--end",
    "policy.overlap": "--overlap",
    "policy.catchup": "--catchup",
    "policy.catchup_window": "--catchup-window",
    "policy.catchup_max": "--catchup-max",
    "policy.buffer_max": "--buffer-max",
    "policy.pause_on_failure": "--pause-on-failure",
    "input": "--input",
    "max_actions": "--max-actions",
    "tags": "--tag",
}
"""The flag that sets each API field, so an API error names what the user typed."""

UNSETTABLE = (
    "name",
    "description",
    "input",
    "max_actions",
    "tags",
    "spec.cron",
    "spec.intervals",
    "spec.exclude_cron",
    "spec.timezone",
    "spec.jitter",
    "spec.start_at",
    "spec.end_at",
    "policy.overlap",
    "policy.catchup",
    "policy.catchup_window",
    "policy.catchup_max",
    "policy.buffer_max",
    "policy.pause_on_failure",
)

_SCALARS = {  # argparse dest -> API field path, for flags whose value is sent as given
    "workflow_id": "workflow_id",
    "name": "name",
    "description": "description",
    "tags": "tags",
    "max_actions": "max_actions",
    "cron": "spec.cron",
    "intervals": "spec.intervals",
    "exclude_cron": "spec.exclude_cron",
    "timezone": "spec.timezone",
    "jitter": "spec.jitter",
    "start_at": "spec.start_at",
    "end_at": "spec.end_at",
    "overlap": "policy.overlap",
    "catchup": "policy.catchup",
    "catchup_window": "policy.catchup_window",
    "catchup_max": "policy.catchup_max",
    "buffer_max": "policy.buffer_max",
    "pause_on_failure": "policy.pause_on_failure",
}


def add_schedule_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", help="JSON body (create) or merge patch (update); - stdin")
    parser.add_argument("--workflow", dest="workflow_id", metavar="ID", help="the workflow to run")
    parser.add_argument("--name")
    parser.add_argument("--description")
    parser.add_argument(
        "--tag", action="append", dest="tags", metavar="TAG", help="a tag (repeatable)"
    )
    _add_spec_flags(parser.add_argument_group("when it fires (spec)"))
    _add_policy_flags(parser.add_argument_group("policies"))
    data = parser.add_argument_group("run input")
    given = data.add_mutually_exclusive_group()
    given.add_argument("--input", type=json_value, metavar="JSON", help="run input as JSON")
    given.add_argument("--input-file", metavar="FILE", help="run input from a JSON file (- stdin)")


def _add_spec_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--cron", action="append", metavar="EXPR", help="cron expression (repeatable)"
    )
    group.add_argument(
        "--interval",
        "--every",
        action="append",
        dest="intervals",
        type=interval_option,
        metavar="EVERY[/OFFSET]",
        help="interval from the Unix epoch, e.g. 15m or 1h/15m (repeatable)",
    )
    group.add_argument(
        "--exclude-cron", action="append", metavar="EXPR", help="times to skip (repeatable)"
    )
    group.add_argument(
        "--timezone", "--tz", metavar="ZONE", help="IANA time zone of the cron expressions"
    )
    group.add_argument(
        "--jitter", type=duration_text, metavar="DURATION", help="random delay up to this, e.g. 30s"
    )
    group.add_argument(
        "--start",
        dest="start_at",
        type=instant_text,
        metavar="INSTANT",
        help="no fire before (RFC 3339)",
    )
    group.add_argument(
        "--end",
        dest="end_at",
        type=instant_text,
        metavar="INSTANT",
        help="no fire after (RFC 3339)",
    )


def _add_policy_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--overlap", choices=[p.value for p in OverlapPolicy], help="while a run is running"
    )
    group.add_argument(
        "--catchup", choices=[p.value for p in CatchupPolicy], help="times missed while down"
    )
    group.add_argument(
        "--catchup-window", type=duration_text, metavar="DURATION", help="how far back to catch up"
    )
    group.add_argument("--catchup-max", type=int, metavar="N", help="at most N catch-up runs")
    group.add_argument("--buffer-max", type=int, metavar="N", help="at most N runs held (buffer_*)")
    group.add_argument(
        "--pause-on-failure",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pause the schedule when a scheduled run fails after its retries",
    )
    group.add_argument("--max-actions", type=int, metavar="N", help="complete after N fires")


def schedule_body(args: argparse.Namespace) -> dict[str, Any]:
    """The body (or patch) the flags describe, over ``-f FILE`` when given."""
    body: dict[str, Any] = read_json_file(args.file) if args.file else {}
    if not isinstance(body, dict):
        raise ValueError(f"{args.file}: must hold a JSON object")
    for path in getattr(args, "unset", None) or ():
        put(body, path, None)
    for dest, path in _SCALARS.items():
        value = getattr(args, dest, None)
        if value is not None:
            put(body, path, value)
    if args.input is not None:
        body["input"] = args.input.value
    elif args.input_file is not None:
        body["input"] = read_json_file(args.input_file)
    return body


def put(body: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path, making the objects on the way."""
    *parents, last = path.split(".")
    node = body
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value

"""The ``cronstream`` command (also ``python -m service``).

``serve``, ``projections``, ``migrate``, ``audit``, ``replay``, ``verify``, ``archive``
and ``restore`` talk to Redis; ``workflow``, ``schedule`` and ``runs`` are thin clients
of the HTTP API at ``CRONSTREAM_URL``; ``spec`` works offline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import urllib.error
from pathlib import Path
from typing import Any

import orjson

from service.cli import archive_cmd, replay_cmd, spec_cmd
from service.cli.client import ApiClient, ApiError
from service.cli.output import emit
from service.config import ALL_ROLES, Settings
from service.errors import CronstreamError

SCHEDULE_COLUMNS = ("id", "workflow_id", "status", "spec.cron", "spec.timezone", "next_run_at")
WORKFLOW_COLUMNS = ("id", "name", "target.type", "version", "updated_at")
HISTORY_COLUMNS = ("at", "type", "actor", "position")
RUN_COLUMNS = (
    "id",
    "schedule_id",
    "workflow_id",
    "trigger.type",
    "status",
    "queued_at",
    "finished_at",
)
ATTEMPT_COLUMNS = ("attempt", "outcome", "status", "error", "started_at", "finished_at")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cronstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service (all roles by default)")
    serve.add_argument(
        "--roles",
        default=",".join(ALL_ROLES),
        help=f"comma-separated roles (default: all of {','.join(ALL_ROLES)})",
    )
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8080)")
    _data_dir(serve)
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        "--log-format",
        choices=("json", "text"),
        default="json",
        help="one JSON object per line (default), or text for a terminal",
    )
    serve.set_defaults(func=run_serve)

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
        help="the archive of a trimmed log (cronstream archive --to DIR)",
    )
    _data_dir(rebuild)
    rebuild.set_defaults(func=run_rebuild)

    _workflow_commands(sub)
    _schedule_commands(sub)
    _run_commands(sub)
    spec_cmd.add_parser(sub)
    replay_cmd.add_parsers(sub)
    archive_cmd.add_parsers(sub)
    return parser


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="embedded Redis data (default $CRONSTREAM_DATA_DIR or ./.cronstream)",
    )


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("CRONSTREAM_URL", "http://127.0.0.1:8080"),
        help="API address (default $CRONSTREAM_URL or http://127.0.0.1:8080)",
    )
    parser.add_argument("--output", "-o", choices=("table", "json"), default="table")


def _workflow_commands(sub: Any) -> None:
    workflow = sub.add_parser("workflow", help="define and inspect workflows")
    actions = workflow.add_subparsers(dest="action", required=True)
    put = actions.add_parser("put", help="define or replace a workflow")
    put.add_argument("id")
    put.add_argument("-f", "--file", help="JSON body file ('-' for stdin)")
    put.add_argument("--name")
    put.add_argument("--http", metavar="URL", help="target: an HTTP webhook")
    put.add_argument("--method", default=None)
    put.add_argument("--python", metavar="MODULE:FUNCTION", help="target: a Python handler")
    put.add_argument("--none", action="store_true", help="target: none (the event is the action)")
    put.add_argument("--input-schema", metavar="FILE", help="JSON Schema file for run inputs")
    for name in ("get", "delete"):
        action = actions.add_parser(name, help=f"{name} a workflow")
        action.add_argument("id")
    listing = actions.add_parser("list", help="list workflows")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")
    run = actions.add_parser("run", help="run a workflow now (trigger: manual)")
    run.add_argument("id")
    run.add_argument("--input", help="run input as JSON")
    run.add_argument("--idempotency-key")
    for action in actions.choices.values():
        _client_options(action)
        action.set_defaults(func=run_workflow)


def _run_commands(sub: Any) -> None:
    runs = sub.add_parser("runs", help="run history; cancel and retry runs")
    actions = runs.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="runs, newest first")
    listing.add_argument("--schedule", dest="schedule_id")
    listing.add_argument("--workflow", dest="workflow_id")
    listing.add_argument("--status")
    listing.add_argument("--trigger", choices=("schedule", "manual", "api", "backfill"))
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")
    for name in ("get", "cancel", "retry"):
        action = actions.add_parser(name, help=f"{name} a run")
        action.add_argument("id")
        if name == "cancel":
            action.add_argument("--terminate", action="store_true", help="stop it at once")
    for action in actions.choices.values():
        _client_options(action)
        action.set_defaults(func=run_runs)


def run_runs(args: argparse.Namespace) -> int:
    client = ApiClient(args.url)
    if args.action == "list":
        query = {
            k: getattr(args, k)
            for k in ("schedule_id", "workflow_id", "status", "trigger", "limit", "cursor")
        }
        reply = client.request("GET", "/v1/runs", query=query)
    elif args.action == "get":
        reply = client.request("GET", f"/v1/runs/{args.id}")
        if args.output == "table":
            emit(reply.body, "table", RUN_COLUMNS)
            emit({"items": reply.body["attempts"]}, "table", ATTEMPT_COLUMNS)
            return 0
    elif args.action == "cancel":
        reply = client.request("POST", f"/v1/runs/{args.id}/cancel", {"terminate": args.terminate})
        emit(reply.body, args.output, ("run_id", "outcome"))
        return 0
    else:
        reply = client.request("POST", f"/v1/runs/{args.id}/retry", {})
        emit(reply.body, args.output, ("run_id", "outcome"))
        return 0
    emit(reply.body, args.output, RUN_COLUMNS)
    return 0


def _schedule_commands(sub: Any) -> None:
    schedule = sub.add_parser("schedule", help="create and manage schedules")
    actions = schedule.add_subparsers(dest="action", required=True)
    for name, text in (("create", "create a schedule"), ("update", "change a schedule")):
        action = actions.add_parser(name, help=text)
        if name == "update":
            action.add_argument("id")
            action.add_argument("--if-match", help="only if the schedule is at this version")
        else:
            action.add_argument("--id")
            action.add_argument("--paused", action="store_true")
            action.add_argument("--note")
            action.add_argument("--idempotency-key")
        action.add_argument("-f", "--file", help="JSON body (create) or merge patch (update)")
        action.add_argument("--workflow", dest="workflow_id")
        action.add_argument("--name")
        action.add_argument("--description")
        action.add_argument("--cron", action="append", help="cron expression (repeatable)")
        action.add_argument("--every", action="append", help="interval such as 15m (repeatable)")
        action.add_argument("--tz", dest="timezone", help="IANA time zone (default UTC)")
        action.add_argument("--tag", action="append", dest="tags")
        action.add_argument("--input", help="run input as JSON")
    listing = actions.add_parser("list", help="list schedules")
    listing.add_argument("--workflow", dest="workflow_id")
    listing.add_argument("--status", choices=("active", "paused", "completed"))
    listing.add_argument("--tag")
    listing.add_argument("--limit", type=int)
    listing.add_argument("--cursor")
    for name in ("get", "delete", "history"):
        action = actions.add_parser(name, help=f"{name} of a schedule")
        action.add_argument("id")
    for name in ("pause", "resume"):
        action = actions.add_parser(name, help=f"{name} a schedule")
        action.add_argument("id")
        action.add_argument("--note", default="")
    trigger = actions.add_parser("trigger", help="run the schedule's workflow now")
    trigger.add_argument("id")
    trigger.add_argument("--input", help="run input as JSON (default: the schedule's)")
    trigger.add_argument("--overlap", help="overlap policy for this run")
    trigger.add_argument("--idempotency-key")
    backfill = actions.add_parser("backfill", help="run every nominal time in a range")
    backfill.add_argument("id")
    backfill.add_argument("--start", required=True, help="RFC 3339 instant")
    backfill.add_argument("--end", required=True, help="RFC 3339 instant")
    backfill.add_argument("--overlap")
    fires = actions.add_parser("fires", help="the outcome of every nominal time in a range")
    fires.add_argument("id")
    fires.add_argument("--from", dest="start", required=True)
    fires.add_argument("--to", dest="end", required=True)
    for action in actions.choices.values():
        _client_options(action)
        action.set_defaults(func=run_schedule)


def _read_json_file(path: str) -> Any:
    raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    return orjson.loads(raw)


def _schedule_body(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    body = dict(base)
    for name in ("workflow_id", "name", "description", "tags"):
        value = getattr(args, name, None)
        if value is not None:
            body[name] = value
    spec = dict(body.get("spec") or {})
    if args.cron is not None:
        spec["cron"] = args.cron
    if args.every is not None:
        spec["intervals"] = [{"every": every} for every in args.every]
    if args.timezone is not None:
        spec["timezone"] = args.timezone
    if spec:
        body["spec"] = spec
    if args.input is not None:
        body["input"] = orjson.loads(args.input)
    return body


def run_schedule(args: argparse.Namespace) -> int:
    client = ApiClient(args.url)
    action = args.action
    if action == "create":
        body = _schedule_body(args, _read_json_file(args.file) if args.file else {})
        for name in ("id", "note"):
            if getattr(args, name):
                body[name] = getattr(args, name)
        if args.paused:
            body["paused"] = True
        headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
        reply = client.request("POST", "/v1/schedules", body, headers=headers)
    elif action == "update":
        patch = _schedule_body(args, _read_json_file(args.file) if args.file else {})
        headers = {"If-Match": f'"{args.if_match}"'} if args.if_match else {}
        reply = client.request("PATCH", f"/v1/schedules/{args.id}", patch, headers=headers)
    elif action == "list":
        query = {k: getattr(args, k) for k in ("workflow_id", "status", "tag", "limit", "cursor")}
        reply = client.request("GET", "/v1/schedules", query=query)
    elif action == "get":
        reply = client.request("GET", f"/v1/schedules/{args.id}")
    elif action == "delete":
        client.request("DELETE", f"/v1/schedules/{args.id}")
        print(f"deleted schedule {args.id}", file=sys.stderr)
        return 0
    elif action in ("pause", "resume"):
        reply = client.request("POST", f"/v1/schedules/{args.id}/{action}", {"note": args.note})
    elif action == "trigger":
        payload: dict[str, Any] = {}
        if args.input is not None:
            payload["input"] = orjson.loads(args.input)
        if args.overlap:
            payload["overlap"] = args.overlap
        headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
        reply = client.request("POST", f"/v1/schedules/{args.id}/trigger", payload, headers=headers)
        emit(reply.body, args.output, ("run_id", "fired", "skipped", "dropped", "duplicate"))
        return 0
    elif action == "backfill":
        window: dict[str, Any] = {"start": args.start, "end": args.end}
        if args.overlap:
            window["overlap"] = args.overlap
        reply = client.request("POST", f"/v1/schedules/{args.id}/backfill", window)
        emit(
            reply.body,
            args.output,
            ("nominal_times", "fired", "skipped", "dropped", "already_backfilled"),
        )
        return 0
    elif action == "fires":
        reply = client.request(
            "GET", f"/v1/schedules/{args.id}/fires", query={"from": args.start, "to": args.end}
        )
        emit(reply.body, args.output, ("nominal_time", "outcome", "detail"))
        return 0
    else:  # history
        reply = client.request("GET", f"/v1/schedules/{args.id}/history", query={"limit": 1000})
        emit(reply.body, args.output, HISTORY_COLUMNS)
        return 0
    emit(reply.body, args.output, SCHEDULE_COLUMNS)
    return 0


def run_workflow(args: argparse.Namespace) -> int:
    client = ApiClient(args.url)
    if args.action == "put":
        body: dict[str, Any] = _read_json_file(args.file) if args.file else {}
        if args.name is not None:
            body["name"] = args.name
        if args.http:
            body["target"] = {"type": "http", "url": args.http}
            if args.method:
                body["target"]["method"] = args.method
        elif args.python:
            body["target"] = {"type": "python", "handler": args.python}
        elif args.none:
            body["target"] = {"type": "none"}
        if args.input_schema:
            body["input_schema"] = _read_json_file(args.input_schema)
        reply = client.request("PUT", f"/v1/workflows/{args.id}", body)
    elif args.action == "get":
        reply = client.request("GET", f"/v1/workflows/{args.id}")
    elif args.action == "list":
        reply = client.request(
            "GET", "/v1/workflows", query={"limit": args.limit, "cursor": args.cursor}
        )
    elif args.action == "run":
        body = {"input": orjson.loads(args.input)} if args.input is not None else {}
        headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
        reply = client.request("POST", f"/v1/workflows/{args.id}/runs", body, headers=headers)
        emit(reply.body, args.output, ("run_id", "duplicate"))
        return 0
    else:
        client.request("DELETE", f"/v1/workflows/{args.id}")
        print(f"deleted workflow {args.id}", file=sys.stderr)
        return 0
    emit(reply.body, args.output, WORKFLOW_COLUMNS)
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env().with_overrides(data_dir=getattr(args, "data_dir", None))


def run_serve(args: argparse.Namespace) -> int:
    from service.server import serve
    from service.telemetry import setup_logging

    setup_logging(args.log_level, args.log_format)
    roles = tuple(r.strip() for r in args.roles.split(",") if r.strip())
    unknown = sorted(set(roles) - set(ALL_ROLES))
    if unknown:
        print(f"cronstream: unknown role(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    settings = _settings(args).with_overrides(
        host=args.host, port=args.port, roles=roles, metrics_port_given=args.port is not None
    )
    asyncio.run(serve(settings))
    return 0


def run_rebuild(args: argparse.Namespace) -> int:
    from migrations.keyspace import check_keyspace
    from projections.rebuild import rebuild, shadow_rebuild
    from service.server import redis_for
    from service.store.keys import Keyspace

    settings = _settings(args)

    async def go() -> int:
        async with redis_for(settings) as conn:
            keys = Keyspace(settings.key_prefix, settings.partitions)
            await check_keyspace(conn.client, keys)
            if args.shadow:
                shadow = await shadow_rebuild(
                    conn.client, keys, args.switch, force=args.force, archive_dir=args.archive
                )
                print(shadow.summary())
                return 0 if shadow.empty else 1
            report = await rebuild(conn.client, keys, archive_dir=args.archive)
            print(
                f"rebuilt {report.partitions} partition(s): {report.events} events in "
                f"{report.seconds:.2f}s ({report.events_per_second:,.0f} events/s), "
                f"{report.dropped_keys} view keys dropped"
            )
            return 0

    return asyncio.run(go())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ApiError as exc:
        print(f"cronstream: {exc}", file=sys.stderr)
        for err in exc.body.get("errors", []):
            print(f"  {err.get('field')}: {err.get('message')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(
            f"cronstream: cannot reach the API at {getattr(args, 'url', '?')}: {exc.reason}",
            file=sys.stderr,
        )
        return 1
    except (CronstreamError, OSError, ValueError) as exc:
        print(f"cronstream: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""The ``cronstream`` command (also ``python -m service``)."""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
from importlib import metadata
from typing import TextIO

from service.cli import (
    apply,
    archive_cmd,
    audit_cmd,
    events_cmd,
    importer,
    migrate_cmd,
    namespace_cmd,
    notify,
    projections_cmd,
    runs_cmd,
    schedule_cmd,
    secret_cmd,
    serve_cmd,
    spec_cmd,
    token_cmd,
    workflow_cmd,
)
from service.cli.client import ApiError
from service.errors import CronstreamError

DESCRIPTION = """\
Event-sourced scheduling of workflows on Redis Streams.

serve, apply, projections, migrate, audit, replay, verify, archive, restore and
token talk to Redis; workflow, schedule, runs and events are clients of the HTTP API at
$CRONSTREAM_URL (default http://127.0.0.1:8080), sending $CRONSTREAM_TOKEN as a
bearer token when set; spec works offline.
Run `cronstream COMMAND --help` for a command's options."""


TOKEN_HINT = (
    "set CRONSTREAM_TOKEN to a token with the scope this needs "
    "(`cronstream token create` makes one)"
)


def version() -> str:
    """The installed package's version (``unknown`` when run from a bare checkout)."""
    try:
        return metadata.version("cronstream")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """One sub-command group per module, in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(
        prog="cronstream",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cronstream {version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd.add_parsers(sub)
    projections_cmd.add_parsers(sub)
    workflow_cmd.add_parsers(sub)
    secret_cmd.add_parsers(sub)
    schedule_cmd.add_parsers(sub)
    apply.add_parsers(sub)
    importer.add_parsers(sub)
    runs_cmd.add_parsers(sub)
    events_cmd.add_parsers(sub)
    spec_cmd.add_parser(sub)
    audit_cmd.add_parsers(sub)
    migrate_cmd.add_parsers(sub)
    archive_cmd.add_parsers(sub)
    token_cmd.add_parsers(sub)
    namespace_cmd.add_parsers(sub)
    notify.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors are one message on stderr and a non-zero exit, never a
    traceback. A reader that goes away (``cronstream runs list | head -1``) ends the
    command quietly with 0, as ``cat`` would."""
    args = build_parser().parse_args(argv)
    try:
        code = _run(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _drop_stdout()
        return 0


def _run(args: argparse.Namespace) -> int:
    try:
        code: int = args.func(args)
        return code
    except BrokenPipeError:
        raise
    except ApiError as exc:
        print_api_error(exc, getattr(args, "field_flags", {}), sys.stderr)
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


def print_api_error(exc: ApiError, field_flags: dict[str, str], err: TextIO) -> None:
    """A problem once: its detail, or its title with one line per field when it names
    fields (the detail then only repeats them). A field gets the flag that sets it."""
    errors = [e for e in exc.body.get("errors") or [] if isinstance(e, dict)]
    if not errors:
        err.write(f"cronstream: {exc}\n")
        if exc.status == 401:
            err.write(f"  {TOKEN_HINT}\n")
        return
    err.write(f"cronstream: {exc.status}: {exc.body.get('title') or 'invalid request'}\n")
    for error in errors:
        field = str(error.get("field"))
        flag = flag_of(field, field_flags)
        named = f"{field} ({flag})" if flag else field
        err.write(f"  {named}: {error.get('message')}\n")


def flag_of(field: str, field_flags: dict[str, str]) -> str | None:
    """The flag for an API field path: the longest known prefix (``spec.cron.0`` → --cron)."""
    parts = field.split(".")
    for end in range(len(parts), 0, -1):
        flag = field_flags.get(".".join(parts[:end]))
        if flag:
            return flag
    return None


def _drop_stdout() -> None:
    # Whatever is still buffered can never be written; point stdout at /dev/null so the
    # interpreter's final flush does not fail again and print a second error.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is not a real file (tests capture it): nothing to flush at exit
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())

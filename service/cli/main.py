"""The ``cronstream`` command (also ``python -m service``).

``serve``, ``projections``, ``migrate``, ``audit``, ``replay``, ``verify``, ``archive``
and ``restore`` talk to Redis; ``workflow``, ``schedule`` and ``runs`` are thin clients
of the HTTP API at ``CRONSTREAM_URL``; ``spec`` works offline.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error

from service.cli import (
    archive_cmd,
    audit_cmd,
    migrate_cmd,
    projections_cmd,
    runs_cmd,
    schedule_cmd,
    serve_cmd,
    spec_cmd,
    workflow_cmd,
)
from service.cli.client import ApiError
from service.errors import CronstreamError


def build_parser() -> argparse.ArgumentParser:
    """One sub-command group per module, in the order ``--help`` lists them."""
    parser = argparse.ArgumentParser(prog="cronstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd.add_parsers(sub)
    projections_cmd.add_parsers(sub)
    workflow_cmd.add_parsers(sub)
    schedule_cmd.add_parsers(sub)
    runs_cmd.add_parsers(sub)
    spec_cmd.add_parser(sub)
    audit_cmd.add_parsers(sub)
    migrate_cmd.add_parsers(sub)
    archive_cmd.add_parsers(sub)
    return parser


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

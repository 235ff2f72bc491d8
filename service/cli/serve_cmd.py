"""``cronstream serve``: run the service's roles in this process."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from service.cli.common import add_data_dir, settings
from service.config import ALL_ROLES, INSECURE_HOST, is_loopback

if TYPE_CHECKING:
    from service.cli.common import Subparsers


def add_parsers(sub: Subparsers) -> None:
    serve = sub.add_parser("serve", help="run the service (all roles by default)")
    serve.add_argument(
        "--roles",
        default=",".join(ALL_ROLES),
        help=f"comma-separated roles (default: all of {','.join(ALL_ROLES)})",
    )
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument(
        "--insecure-dev",
        action="store_true",
        help="no tokens and no rate limits, to try cronstream on this machine: "
        "listens on 127.0.0.1 only (the default asks for a token on every /v1 request)",
    )
    serve.add_argument("--port", type=int, default=None, help="port (default 8080)")
    serve.add_argument(
        "--allow-private-targets",
        action="store_true",
        help="webhooks may reach loopback, private and link-local addresses, such as a "
        "receiver on this machine (as CRONSTREAM_ALLOW_PRIVATE_TARGETS=1; the default "
        "refuses them)",
    )
    add_config_dir(serve)
    add_data_dir(serve)
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        "--log-format",
        choices=("json", "text"),
        default="json",
        help="one JSON object per line (default), or text for a terminal",
    )
    serve.set_defaults(func=run_serve)


def add_config_dir(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--config-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="apply the workflow and schedule files of DIR at start and after each change "
        "(as `cronstream apply DIR`; see docs/schedules-as-code.md)",
    )
    serve.add_argument(
        "--config-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="how often --config-dir is looked at (default 1; from 0.05 to 3600)",
    )
    serve.add_argument(
        "--config-prune",
        action="store_true",
        help="--config-dir deletes what its files kept and no longer declare",
    )
    serve.add_argument(
        "--config-keep-overrides",
        action="store_true",
        help="--config-dir leaves schedules changed through the API as they are",
    )


def run_serve(args: argparse.Namespace) -> int:
    from service.server import serve, tune_gc
    from service.telemetry import setup_logging

    setup_logging(args.log_level, args.log_format)
    roles = tuple(r.strip() for r in args.roles.split(",") if r.strip())
    unknown = sorted(set(roles) - set(ALL_ROLES))
    if unknown:
        print(f"cronstream: unknown role(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    config = settings(args).with_overrides(
        host=args.host,
        port=args.port,
        roles=roles,
        metrics_port_given=args.port is not None,
        allow_private_targets=args.allow_private_targets or None,
        config_dir=args.config_dir,
        config_interval_s=args.config_interval,
        config_prune=args.config_prune or None,
        config_keep_overrides=args.config_keep_overrides or None,
    )
    if args.config_dir is not None and not args.config_dir.is_dir():
        print(f"cronstream: --config-dir {args.config_dir}: not a directory", file=sys.stderr)
        return 2
    if args.insecure_dev:
        config = config.with_overrides(auth=False)
        if not is_loopback(config.host):
            print(f"cronstream: {INSECURE_HOST.format(host=config.host)}", file=sys.stderr)
            return 2
    tune_gc()
    asyncio.run(serve(config))
    return 0

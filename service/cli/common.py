"""What the command modules share: common options, settings, Redis for the commands
that talk to it directly, and reading JSON files.

The server stack is imported inside the functions that need it, so the thin API
clients (``workflow``, ``schedule``, ``runs``) and ``spec`` start quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis

from service.cli.output import FORMATS
from service.config import Settings
from service.domain import namespaces
from service.domain.timeutil import parse_duration, parse_instant
from service.store.keys import Keyspace

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

DATA_DIR_HELP = "embedded Redis data (default $CRONSTREAM_DATA_DIR or ./.cronstream)"

Work = Callable[[Redis, Keyspace], Awaitable[int]]


def add_data_dir(parser: argparse.ArgumentParser, help: str = DATA_DIR_HELP) -> None:
    parser.add_argument("--data-dir", type=Path, default=None, help=help)


NAMESPACE_ENV = "CRONSTREAM_NAMESPACE"


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """``--url`` and ``--output`` of the commands that call the HTTP API."""
    parser.add_argument(
        "--url",
        default=os.environ.get("CRONSTREAM_URL", "http://127.0.0.1:8080"),
        help="API address (default $CRONSTREAM_URL or http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get(NAMESPACE_ENV) or None,
        help=f"the namespace to act in, sent as {namespaces.HEADER} (default ${NAMESPACE_ENV}, "
        "else the API's choice: default, or the token's only namespace)",
    )
    add_output_option(parser)


def add_output_option(parser: argparse.ArgumentParser, default: str = "table") -> None:
    parser.add_argument(
        "--output",
        "-o",
        choices=FORMATS,
        default=default,
        help=f"table, json or yaml (default {default})",
    )


def settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env().with_overrides(data_dir=getattr(args, "data_dir", None))


def with_redis(args: argparse.Namespace, work: Work) -> int:
    """Run ``work`` on Redis (REDIS_URL, or the embedded one under --data-dir)."""
    from service.connection import redis_for

    config = settings(args)

    async def go() -> int:
        async with redis_for(config) as conn:
            return await work(conn.client, Keyspace(config.key_prefix, config.partitions))

    return asyncio.run(go())


def read_json_file(path: str) -> Any:
    """A JSON document from a file, or from stdin for ``-``."""
    raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{'stdin' if path == '-' else path}: invalid JSON: {exc}") from None


@dataclass(frozen=True)
class JsonValue:
    """A JSON option's value (``null`` included), told apart from an option not given."""

    value: Any


def json_value(text: str) -> JsonValue:
    """argparse type of a JSON option: argparse names the option when the text is not JSON."""
    try:
        return JsonValue(orjson.loads(text))
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON: {exc}") from None


def duration_text(text: str) -> str:
    """argparse type of a duration option: checked here, sent as typed."""
    try:
        parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def instant_text(text: str) -> str:
    """argparse type of an RFC 3339 instant option: checked here, sent as typed."""
    try:
        parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def idempotency_header(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}

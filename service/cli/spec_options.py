"""Spec options as people type them: intervals such as ``15m`` or ``1h/15m`` (every
hour, 15 minutes past), told apart from cron expressions, which have fields or an
``@`` name."""

from __future__ import annotations

import argparse
from typing import Any

from service.domain.timeutil import parse_duration


def parse_interval(text: str) -> dict[str, Any]:
    """``EVERY[/OFFSET]`` as the API's interval object; ValueError when malformed."""
    every, _, offset = text.strip().partition("/")
    parse_duration(every)
    interval: dict[str, Any] = {"every": every.strip()}
    if offset.strip():
        parse_duration(offset)
        interval["offset"] = offset.strip()
    return interval


def interval_option(text: str) -> dict[str, Any]:
    """argparse type of ``--interval``."""
    try:
        return parse_interval(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc} (expected EVERY[/OFFSET], e.g. 15m or 1h/15m)"
        ) from None


def looks_like_interval(text: str) -> bool:
    """True for ``15m``, ``PT15M``, ``1h/15m``; False for cron (fields, or ``@daily``)."""
    stripped = text.strip()
    if not stripped or stripped.startswith("@") or len(stripped.split()) > 1:
        return False
    try:
        parse_interval(stripped)
    except ValueError:
        return False
    return True

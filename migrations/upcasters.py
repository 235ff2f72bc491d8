"""Event upcasters: functions that lift an old event payload to the next version.

Register one function per (event type, from-version); reading an event applies
them in order until the payload reaches the version the code knows::

    @upcaster("ScheduleCreated", 1)
    def schedule_created_v1_to_v2(data):
        return {**data, "new_field": default}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register ``fn`` to turn ``event_type`` payloads of ``from_version`` into the next."""

    def add(fn: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in _UPCASTERS:
            raise ValueError(f"an upcaster for {event_type} v{from_version} is already registered")
        _UPCASTERS[key] = fn
        return fn

    return add


def upcast(event_type: str, version: int, data: Payload, bound: int = 100) -> tuple[int, Payload]:
    """Apply registered upcasters to ``data`` until none applies (at most ``bound`` steps)."""
    for _ in range(bound):
        fn = _UPCASTERS.get((event_type, version))
        if fn is None:
            return version, data
        data = fn(data)
        version += 1
    raise RuntimeError(f"upcasting {event_type} did not finish within {bound} steps")

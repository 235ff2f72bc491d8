"""Event upcasters: functions that lift an old event payload to the next version.

Register one function per (event type, from-version); reading an event applies
them in order until the payload reaches the version the code knows::

    @upcaster("ScheduleCreated", 1)
    def schedule_created_v1_to_v2(data):
        return {**data, "new_field": default}
"""

from __future__ import annotations

import re
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


# -- the registered upcasters, oldest first -------------------------------------------

# A pause by the pause-on-failure policy was, in v1, only recognisable by the note
# the worker wrote; v2 records the cause and the failed run as fields.
_RUN_FAILED_NOTE = re.compile(r"^paused after run (?P<run_id>\S+) failed$")


@upcaster("SchedulePaused", 1)
def schedule_paused_v1_to_v2(data: Payload) -> Payload:
    """v1 ``{note}`` -> v2 ``{note, cause, run_id}`` (cause inferred from the worker's note)."""
    found = _RUN_FAILED_NOTE.match(str(data.get("note", "")))
    if found is None:
        return {**data, "cause": "manual", "run_id": None}
    return {**data, "cause": "run_failed", "run_id": found["run_id"]}

"""Named policies and statuses (enums, never loose strings or booleans)."""

from __future__ import annotations

from enum import StrEnum


class OverlapPolicy(StrEnum):
    """What a fire does while an earlier run of the same schedule still runs."""

    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    BUFFER_ALL = "buffer_all"
    CANCEL_OTHER = "cancel_other"
    TERMINATE_OTHER = "terminate_other"
    ALLOW_ALL = "allow_all"


class CatchupPolicy(StrEnum):
    """Which nominal times missed during downtime are run."""

    LATEST = "latest"
    OLDEST = "oldest"
    ALL = "all"
    NONE = "none"


class ScheduleStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"

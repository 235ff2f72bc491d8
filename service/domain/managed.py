"""Resources kept by files: who keeps them, and how their events say so.

``apply`` (service/manifests) records ``managed`` on every event it writes: the tool
and the file the resource is declared in. A command that is not ``apply``'s and
changes a managed schedule writes events marked ``override``: the file no longer says
what the schedule does, until the next apply reverts it (or keeps it, if asked).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.domain.events import Event

APPLY = "apply"


class Managed(BaseModel):
    """The tool that keeps a resource and the file it is declared in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: Literal["apply"] = "apply"
    source: str = Field(min_length=1, max_length=1024)


class MaybeManaged(Event):
    """An event that ``apply`` may write (``managed``), or that overrides a managed
    resource (``override``). Both are left out of the payload when unset, so the events
    of resources no file keeps read as they always did."""

    managed: Managed | None = None
    override: bool = False

    def data(self) -> dict[str, Any]:
        payload = super().data()
        if payload.get("managed") is None:
            payload.pop("managed", None)
        if not payload.get("override"):
            payload.pop("override", None)
        return payload

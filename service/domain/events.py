"""Domain events: facts in the past tense, registered by name with a schema version.

An event's payload is a pydantic model; the envelope (type, v, sid, data, meta)
is added by the store. Old payload versions are upcast on read by ``migrations``.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

EVENT_TYPES: dict[str, type[Event]] = {}

E = TypeVar("E", bound="type[Event]")


class Event(BaseModel):
    """Base of every event payload. ``version`` is the payload's schema version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: ClassVar[int] = 1
    aggregate: ClassVar[str] = ""

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    def data(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def register(cls: E) -> E:
    """Register an event class under its class name."""
    name = cls.type_name()
    if name in EVENT_TYPES:
        raise ValueError(f"event type {name!r} is registered twice")
    EVENT_TYPES[name] = cls
    return cls


def event_class(name: str) -> type[Event] | None:
    return EVENT_TYPES.get(name)

"""Response models of the audit endpoints (history with changes and outcomes)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from service.api.models import HistoryItem


class Change(BaseModel):
    from_: Any = Field(alias="from")
    to: Any


class AuditItem(HistoryItem):
    effective_at: str = Field(
        description="When the event took effect: meta.effective_at if set, else `at`"
    )
    trigger: str | None = Field(
        description="schedule, manual, api or backfill for fires and runs; a pause's cause"
    )
    changes: dict[str, Change] | None = Field(
        description="Commands: field-level diff against the state before, by dotted path"
    )
    outcome: str | None = Field(description="Fires and runs: what happened, in a few words")


class AuditPage(BaseModel):
    items: list[AuditItem]
    next_cursor: str | None

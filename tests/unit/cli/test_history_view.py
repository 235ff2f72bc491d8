"""``schedule history`` as people read it: one change a line, with when, who and the note."""

from __future__ import annotations

from typing import Any

from service.cli.history_view import rows


def item(kind: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": kind,
        "at": "2026-01-01T00:00:00Z",
        "effective_at": "2026-01-01T00:00:00Z",
        "actor": "cli:ana@host",
        "changes": None,
        "outcome": None,
        "data": {},
    }
    return {**base, **fields}


def test_one_line_per_change_with_who_when_and_note() -> None:
    items = [
        item(
            "ScheduleCreated",
            changes={
                "spec.cron": {"from": None, "to": ["0 2 * * *"]},
                "spec.end_at": {"from": None, "to": None},
                "name": {"from": None, "to": ""},
                "policy.pause_on_failure": {"from": None, "to": False},
                "status": {"from": None, "to": "active"},
            },
            data={"note": "first"},
        ),
        item(
            "ScheduleUpdated",
            actor="cli:bo@host",
            changes={
                "spec.cron": {"from": ["0 2 * * *"], "to": ["30 3 * * *"]},
                "policy.overlap": {"from": "skip", "to": "allow_all"},
                "spec.end_at": {"from": "2027-01-01T00:00:00Z", "to": None},
            },
        ),
        item(
            "SchedulePaused",
            changes={"status": {"from": "active", "to": "paused"}},
            data={"note": "freeze", "cause": "manual"},
        ),
        item(
            "SchedulePaused",
            actor="worker:x",
            changes={"status": {"from": "active", "to": "paused"}},
            data={"note": "", "cause": "run_failed", "run_id": "run_1"},
        ),
        item("ScheduleFired", outcome="fired 2026-01-01T02:00:00Z as run run_2"),
    ]
    assert [(r["actor"], r["type"], r["change"], r["note"]) for r in rows(items)] == [
        ("cli:ana@host", "ScheduleCreated", 'spec.cron = ["0 2 * * *"]', "first"),
        ("cli:ana@host", "ScheduleCreated", "policy.pause_on_failure = false", "first"),
        ("cli:ana@host", "ScheduleCreated", "status = active", "first"),
        ("cli:bo@host", "ScheduleUpdated", 'spec.cron: ["0 2 * * *"] -> ["30 3 * * *"]', ""),
        ("cli:bo@host", "ScheduleUpdated", "policy.overlap: skip -> allow_all", ""),
        ("cli:bo@host", "ScheduleUpdated", "spec.end_at: 2027-01-01T00:00:00Z -> -", ""),
        ("cli:ana@host", "SchedulePaused", "status: active -> paused", "freeze"),
        ("worker:x", "SchedulePaused", "status: active -> paused", "paused by failed run run_1"),
        ("cli:ana@host", "ScheduleFired", "fired 2026-01-01T02:00:00Z as run run_2", ""),
    ]
    assert {r["at"] for r in rows(items)} == {"2026-01-01T00:00:00Z"}

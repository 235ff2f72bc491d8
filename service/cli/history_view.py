"""A schedule's history for people: one change a line, with when, who and the note.

The API's history items carry a field-level diff (``changes``: ``{"spec.cron":
{"from": …, "to": …}}``) and, for fires and runs, a short ``outcome``. A command
becomes one line per changed field; a fire or run event one line with its outcome.
"""

from __future__ import annotations

import sys
from typing import Any

from service.cli.output import emit_document, json_text, page_hint, table_lines

COLUMNS = ("at", "actor", "type", "change", "note")


def value_text(value: Any) -> str:
    """A changed value as typed in a flag: strings bare, anything else as JSON."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value or '""'
    return json_text(value)


def change_line(field: str, change: dict[str, Any], created: bool) -> str:
    """``spec.cron: ["0 2 * * *"] -> ["30 3 * * *"]``; a field set by a creation reads
    ``field = value``."""
    before, after = change.get("from"), change.get("to")
    if created and before is None:
        return f"{field} = {value_text(after)}"
    return f"{field}: {value_text(before)} -> {value_text(after)}"


def _set(value: Any) -> bool:
    return value not in (None, "", [], {})


def change_lines(item: dict[str, Any]) -> list[str]:
    """The lines of one history item: its changes, else its outcome, else its type."""
    changes: dict[str, Any] = item.get("changes") or {}
    created = item.get("type") == "ScheduleCreated"
    lines = [
        change_line(field, change, created)
        for field, change in changes.items()
        if isinstance(change, dict) and not (created and not _set(change.get("to")))
    ]
    if lines:
        return lines
    outcome = item.get("outcome")
    return [str(outcome)] if outcome else ["-"]


def note_of(item: dict[str, Any]) -> str:
    data = item.get("data") or {}
    note = str(data.get("note") or "")
    if data.get("cause") == "run_failed":
        why = f"paused by failed run {data.get('run_id') or ''}".rstrip()
        note = f"{note} ({why})" if note else why
    return note


def rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per change: every row repeats when and who, so each line stands alone."""
    out = []
    for item in items:
        note = note_of(item)
        for line in change_lines(item):
            out.append(
                {
                    "at": item.get("effective_at") or item.get("at"),
                    "actor": item.get("actor"),
                    "type": item.get("type"),
                    "change": line,
                    "note": note,
                }
            )
    return out


def emit_history(page: dict[str, Any], fmt: str) -> None:
    if emit_document(page, fmt):
        return
    lines = table_lines(rows(page.get("items") or []), COLUMNS)
    sys.stdout.write("".join(line + "\n" for line in lines))
    page_hint(page)

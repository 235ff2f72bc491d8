"""``cronstream schedule describe``: a schedule in words, like ``temporal schedule describe``.

Read from four API answers: the schedule (spec, policy, state, counters, the last
actions the view keeps), ``/next-runs`` (the next times with their jitter),
``/fires`` (the outcome of every nominal time lately: fired, skipped, missed,
excluded, paused…) and ``/runs`` (how each recent run ended).
"""

from __future__ import annotations

import time
from typing import Any

from service.cli.client import ApiClient
from service.cli.output import cell, table_lines
from service.domain.spec import Spec, next_fire_times
from service.domain.timeutil import parse_instant, to_rfc3339

POLICY_FIELDS = (
    "overlap",
    "catchup",
    "catchup_window",
    "catchup_max",
    "buffer_max",
    "pause_on_failure",
)
WINDOW_MIN_MS = 60_000
WINDOW_MAX_MS = 366 * 86_400_000
FIRES_PAGES = 10
"""``/fires`` lists at most 1000 times a call: a window is walked at most this many calls."""
RECENT_COLUMNS = (
    "nominal_time",
    "fired_at",
    "trigger",
    "outcome",
    "run_id",
    "run_status",
    "detail",
)
NEXT_COLUMNS = ("nominal", "actual")


def intervals_text(spec: dict[str, Any]) -> str:
    """``every 15m``, ``every 1h/15m`` (offset), comma-separated."""
    out = []
    for interval in spec.get("intervals") or []:
        offset = interval.get("offset")
        shown = interval.get("every", "?")
        if offset and offset not in ("0s", 0):
            shown += f"/{offset}"
        out.append(f"every {shown}")
    return ", ".join(out)


def spec_summary(spec: dict[str, Any]) -> str:
    """The cron expressions and intervals of a spec on one line, for a list."""
    parts = list(spec.get("cron") or [])
    if spec.get("intervals"):
        parts.append(intervals_text(spec))
    return ", ".join(parts)


def gather(client: ApiClient, sid: str, next_count: int, recent_count: int) -> dict[str, Any]:
    """What describe shows, as one document (the json and yaml outputs print it)."""
    schedule = client.request("GET", f"/v1/schedules/{sid}").body
    info = schedule.get("info") or {}
    next_actions: list[dict[str, Any]] = []
    remaining = info.get("remaining_actions")
    count = next_count if remaining is None else min(next_count, remaining)
    if schedule.get("status") == "active" and count > 0:
        query = {"count": count}
        next_actions = client.request("GET", f"/v1/schedules/{sid}/next-runs", query=query).body[
            "times"
        ]
    return {
        "schedule": schedule,
        "next_actions": next_actions,
        "recent_actions": recent_actions(client, schedule, recent_count),
    }


def recent_actions(client: ApiClient, schedule: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """The last ``count`` actions: the outcomes of the latest nominal times (fired, skipped,
    missed, paused…) and the manual fires and backfills the view kept, newest last, each
    with how its run ended."""
    sid = schedule["id"]
    now = int(time.time() * 1000)
    start = max(parse_instant(schedule["created_at"]), window_start(schedule["spec"], now, count))
    rows = [_fire_row(o) for o in _outcomes(client, sid, start, now) if o["outcome"] != "scheduled"]
    listed = {r["run_id"] or r["nominal_time"] for r in rows}
    kept: list[dict[str, Any]] = schedule.get("info", {}).get("recent_actions") or []
    for action in kept:
        if (action.get("run_id") or action["nominal_time"]) not in listed:
            rows.append(_action_row(action))
    rows.sort(key=lambda r: parse_instant(r["fired_at"] or r["nominal_time"]))
    rows = rows[-count:]
    statuses = _run_statuses(client, sid, max(count * 2, 20))
    for row in rows:
        row["run_status"] = statuses.get(row["run_id"]) if row["run_id"] else None
    return rows


def window_start(spec: dict[str, Any], now: int, count: int) -> int:
    """An instant with at least ``count`` nominal times of ``spec`` between it and ``now``
    (a year back at most), found offline with the spec engine, so ``/fires`` is asked for
    a window about that size whatever the spec's rate."""
    current = Spec.model_validate({k: v for k, v in spec.items() if k != "description"})
    span = WINDOW_MIN_MS
    while span < WINDOW_MAX_MS:
        times = next_fire_times(current, now - span, count)
        if len(times) == count and times[-1] <= now:
            return now - span
        span *= 4
    return now - WINDOW_MAX_MS


def _outcomes(client: ApiClient, sid: str, start: int, end: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(FIRES_PAGES):
        query = {"from": to_rfc3339(start), "to": to_rfc3339(end)}
        page = client.request("GET", f"/v1/schedules/{sid}/fires", query=query).body
        out += page["items"]
        if not page.get("truncated") or not page["items"]:
            break
        start = parse_instant(page["items"][-1]["nominal_time"]) + 1
    return out


def fire_run_id(detail: dict[str, Any]) -> str | None:
    """The run of a ``/fires`` outcome: the scheduled one, else the backfill's."""
    run_id = detail.get("run_id") or (detail.get("backfill") or {}).get("run_id")
    return str(run_id) if run_id else None


def fire_detail(detail: dict[str, Any]) -> str | None:
    """Why a ``/fires`` time did not run, or that its run was held or backfilled."""
    words = [str(detail["reason"])] if detail.get("reason") else []
    if detail.get("held") and not words:  # the reason, when given, says why it was held
        words.append("held: an earlier run was still running")
    if detail.get("backfill") and detail.get("run_id"):
        words.append(f"also backfilled as {detail['backfill'].get('run_id')}")
    return "; ".join(words) or None


def _fire_row(outcome: dict[str, Any]) -> dict[str, Any]:
    detail = outcome.get("detail") or {}
    trigger = "schedule" if outcome["outcome"] == "fired" else None
    if detail.get("backfill") and trigger is None:
        trigger = "backfill"
    fired_at = detail.get("fire_time") or (detail.get("backfill") or {}).get("fire_time")
    return {
        "nominal_time": outcome["nominal_time"],
        "fired_at": fired_at,
        "trigger": trigger,
        "outcome": outcome["outcome"],
        "run_id": fire_run_id(detail),
        "detail": fire_detail(detail),
    }


def _action_row(action: dict[str, Any]) -> dict[str, Any]:
    return {
        "nominal_time": action["nominal_time"],
        "fired_at": action.get("fire_time"),
        "trigger": action.get("trigger"),
        "outcome": action.get("outcome"),
        "run_id": action.get("run_id"),
        "detail": None,
    }


def _run_statuses(client: ApiClient, sid: str, limit: int) -> dict[str, str]:
    page = client.request("GET", f"/v1/schedules/{sid}/runs", query={"limit": min(limit, 500)})
    return {run["id"]: run["status"] for run in page.body.get("items") or []}


def render(report: dict[str, Any]) -> str:
    """The report as text: a field list, then the next and the recent actions as tables."""
    schedule = report["schedule"]
    lines = [f"{label:<10}  {value}" for label, value in fields(schedule)]
    lines += ["", "Next actions"]
    if report["next_actions"]:
        lines += ["  " + line for line in table_lines(report["next_actions"], NEXT_COLUMNS)]
    else:
        lines.append(f"  none ({schedule.get('status')})")
    lines += ["", "Recent actions"]
    if report["recent_actions"]:
        lines += ["  " + line for line in table_lines(report["recent_actions"], RECENT_COLUMNS)]
    else:
        lines.append("  none")
    return "".join(line + "\n" for line in lines)


def fields(schedule: dict[str, Any]) -> list[tuple[str, str]]:
    """The labelled lines at the top of describe."""
    spec, info = schedule.get("spec") or {}, schedule.get("info") or {}
    name = f" ({schedule['name']})" if schedule.get("name") else ""
    out = [
        ("Schedule", f"{schedule['id']}{name}"),
        ("Workflow", schedule.get("workflow_id", "-")),
        ("State", state_text(schedule)),
    ]
    words = spec.get("description") or [spec_summary(spec)]
    out += [("Spec" if i == 0 else "", line) for i, line in enumerate(words)]
    out += [
        ("", bounds_text(spec)),
        ("Policy", policy_text(schedule.get("policy") or {})),
        ("Actions", actions_text(schedule, info)),
        ("Counters", counters_text(info)),
        ("Running", cell(info.get("running_runs"))),
        (
            "Last run",
            f"{cell(schedule.get('last_run_at'))} ({cell(schedule.get('last_run_status'))})",
        ),
        ("Input", cell(schedule.get("input"))),
        ("Tags", cell(schedule.get("tags"))),
        ("Version", f"{schedule.get('version')} (updated {schedule.get('updated_at')})"),
    ]
    return out


def state_text(schedule: dict[str, Any]) -> str:
    note = schedule.get("note")
    return f"{schedule.get('status')}" + (f': "{note}"' if note else "")


def bounds_text(spec: dict[str, Any]) -> str:
    parts = [f"time zone {spec.get('timezone') or 'UTC'}", f"jitter {spec.get('jitter') or '0s'}"]
    if spec.get("start_at"):
        parts.append(f"from {spec['start_at']}")
    if spec.get("end_at"):
        parts.append(f"until {spec['end_at']}")
    if spec.get("exclude_cron"):
        parts.append("except " + ", ".join(f'"{e}"' for e in spec["exclude_cron"]))
    return "; ".join(parts)


def policy_text(policy: dict[str, Any]) -> str:
    return (
        f"overlap {policy.get('overlap')}; catch-up {policy.get('catchup')} within "
        f"{policy.get('catchup_window')}, at most {policy.get('catchup_max')}; "
        f"buffer at most {policy.get('buffer_max')}; "
        f"pause on failure {cell(bool(policy.get('pause_on_failure')))}"
    )


def actions_text(schedule: dict[str, Any], info: dict[str, Any]) -> str:
    taken = f"{info.get('action_count', 0)} taken"
    if schedule.get("max_actions") is None:
        return f"{taken}; no limit"
    return f"{taken}; {info.get('remaining_actions')} left of {schedule['max_actions']}"


def counters_text(info: dict[str, Any]) -> str:
    return (
        f"missed (catch-up) {info.get('missed_catchup_count', 0)}; "
        f"skipped (overlap) {info.get('overlap_skipped_count', 0)}; "
        f"dropped (buffer) {info.get('buffer_dropped_count', 0)}"
    )

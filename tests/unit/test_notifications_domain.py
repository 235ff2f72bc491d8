"""The notification rules: which events are occurrences of which trigger, what incident
each belongs to, and the decisions the store applies (thresholds, cooldowns, rates)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from service.domain.notifications import (
    ChannelConfig,
    Occurrence,
    RuleConfig,
    Trigger,
    in_cooldown,
    in_namespace,
    incident_of,
    lag_occurrence,
    matches,
    occurrence_of,
    over_rate,
    public_target,
    retry_delay_ms,
    should_retry,
    summary,
    threshold_crossed,
)

AT = 1_800_000_000_000


def occ(event_type: str, data: dict[str, Any], **run: str | None) -> Occurrence | None:
    return occurrence_of(event_type, data, ident="0:1-0", sid="nightly", at_ms=AT, **run)


def rule(**fields: Any) -> RuleConfig:
    return RuleConfig.model_validate({"channels": ["ops"], **fields})


@pytest.mark.parametrize(
    ("event_type", "data", "trigger"),
    [
        ("RunFailed", {"run_id": "r1", "error": "HTTP 500"}, Trigger.RUN_FAILED),
        ("RunTimedOut", {"run_id": "r1"}, Trigger.RUN_FAILED),
        ("RunDeadLettered", {"run_id": "r1", "reason": "x"}, Trigger.DEAD_LETTERED),
        (
            "FiresMissed",
            {"count": 3, "first": "a", "last": "b", "reason": "grace"},
            Trigger.FIRES_MISSED,
        ),
        (
            "FireSkipped",
            {"fire_id": "f", "reason": "overlap", "running": []},
            Trigger.OVERLAP_SKIPPED,
        ),
        ("SchedulePaused", {"cause": "run_failed", "run_id": "r1"}, Trigger.SCHEDULE_AUTO_PAUSED),
    ],
)
def test_watched_events_are_occurrences(
    event_type: str, data: dict[str, Any], trigger: Trigger
) -> None:
    found = occ(event_type, data, workflow_id="job", schedule_id="nightly")
    assert found is not None and found.trigger is trigger
    assert found.schedule_id == "nightly" and found.subject == "nightly"


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("RunSucceeded", {"run_id": "r1"}),
        ("RunAttemptFailed", {"run_id": "r1", "retry_at": "x"}),  # a retry follows
        ("SchedulePaused", {"cause": "manual"}),  # a person paused it
        ("FireSkipped", {"fire_id": "f", "reason": "backfilled", "running": []}),
        ("ScheduleCreated", {}),
    ],
)
def test_other_events_are_not(event_type: str, data: dict[str, Any]) -> None:
    assert occ(event_type, data) is None


def test_a_run_no_schedule_made_is_about_its_workflow() -> None:
    found = occ("RunFailed", {"run_id": "r1"}, workflow_id="job", schedule_id=None)
    assert found is not None and found.schedule_id is None and found.subject == "job"
    assert matches(rule(on="run_failed", workflow_id="job"), found)
    assert not matches(rule(on="run_failed", schedule_id="nightly"), found)
    assert not matches(rule(on="run_failed", workflow_id="other"), found)
    assert not matches(rule(on="run_failed", enabled=False), found)
    assert not matches(rule(on="dead_lettered"), found)


def test_incident_keys() -> None:
    failed = occ("RunFailed", {"run_id": "r1"}, workflow_id="job", schedule_id="nightly")
    missed = occ("FiresMissed", {"count": 2, "first": "a", "last": "b", "reason": "x"})
    assert failed is not None and missed is not None
    assert incident_of("a", rule(on="run_failed"), failed).key == "run_failed:r1"
    assert incident_of("a", rule(on="fires_missed"), missed).key == "fires_missed:0:1-0"
    windowed = incident_of("a", rule(on="run_failed", threshold=2, window_s=600), failed)
    start = AT - AT % 600_000
    assert windowed.key == f"run_failed:nightly:{start}" and windowed.window_start_ms == start


def test_the_ticker_is_behind_past_the_lag() -> None:
    assert lag_occurrence(0, None, AT, 60_000) is None
    assert lag_occurrence(0, AT - 60_000, AT, 60_000) is None
    behind = lag_occurrence(2, AT - 61_000, AT, 60_000)
    assert behind is not None and behind.subject == "partition-2"
    assert behind.details == {"partition": 2, "overdue": "1m1s"}
    told = incident_of("lag", rule(on="ticker_behind"), behind)
    assert told.window_start_ms is not None  # one incident a window, however long it lasts
    assert summary(told, 1).startswith("cronstream: the ticker is behind on partition 2")


def test_summaries_say_what_happened() -> None:
    failed = occ("RunFailed", {"run_id": "r1", "error": "HTTP 500"}, workflow_id="job")
    assert failed is not None
    text = summary(incident_of("a", rule(on="run_failed"), failed))
    assert text == "cronstream: run r1 failed (workflow job): HTTP 500"
    skipped = occ("FireSkipped", {"fire_id": "f", "reason": "overlap", "running": []})
    assert skipped is not None
    windowed = incident_of("a", rule(on="overlap_skipped", threshold=5), skipped)
    assert "skipped fires for overlap: 6 time(s) since" in summary(windowed, 6)


@pytest.mark.parametrize(
    ("count", "threshold", "crossed"), [(1, 0, True), (3, 3, False), (4, 3, True)]
)
def test_thresholds(count: int, threshold: int, crossed: bool) -> None:
    assert threshold_crossed(count, threshold) is crossed


@pytest.mark.parametrize(
    ("last", "at", "cooldown", "cooling"),
    [
        (None, AT, 1000, False),
        (AT, AT + 999, 1000, True),
        (AT, AT + 1000, 1000, False),
        (AT, AT - 999, 1000, True),  # an older event read late is in the cooldown too
        (AT, AT, 0, False),
    ],
)
def test_cooldowns(last: int | None, at: int, cooldown: int, cooling: bool) -> None:
    assert in_cooldown(last, at, cooldown) is cooling


def test_rates_and_retries() -> None:
    assert not over_rate(3, 3) and over_rate(4, 3)
    assert [retry_delay_ms(n, 1000) for n in (1, 2, 3)] == [1000, 2000, 4000]
    assert retry_delay_ms(30, 1000) == 300_000
    assert should_retry(1, True, 3) and not should_retry(3, True, 3)
    assert not should_retry(1, False, 3)


def test_secrets_are_left_out_of_what_is_shown() -> None:
    mail = {"type": "email", "host": "smtp.example.com", "from": "a@example.com"}
    mail |= {"to": ["b@example.com"], "username": "u", "password": "pw-123456"}
    config = ChannelConfig.model_validate({"target": mail})
    shown = public_target(config.target)
    assert "password" not in shown and shown["from"] == "a@example.com"
    slack = ChannelConfig.model_validate(
        {"target": {"type": "slack", "url": "https://x.example/T"}}
    )
    assert public_target(slack.target) == {"type": "slack"}


@pytest.mark.parametrize(
    "target",
    [
        {"type": "email", "host": "h", "from": "a@example.com", "to": []},
        {"type": "email", "host": "h;rm", "from": "a@example.com", "to": ["b@example.com"]},
        {"type": "webhook", "url": "http://user@example.com/"},
        {"type": "webhook", "url": "http://example.com/", "secret": "short"},
    ],
)
def test_bad_targets(target: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ChannelConfig.model_validate({"target": target})


def test_a_rule_watches_its_own_namespace_only() -> None:
    theirs = occ("RunFailed", {"run_id": "r1"}, workflow_id="team/job", schedule_id="team/s")
    ours = occ("RunFailed", {"run_id": "r2"}, workflow_id="job", schedule_id="s")
    assert theirs is not None and ours is not None
    kept = rule(on="run_failed", schedule_id="s")  # as the namespace named it
    assert matches(in_namespace("team/r", kept), theirs, "team")
    assert not matches(in_namespace("team/r", kept), ours, "team")
    assert matches(in_namespace("r", kept), ours, "default")
    assert not matches(in_namespace("r", kept), theirs, "default")
    assert in_namespace("team/r", kept).channels == ["team/ops"]
    lag = lag_occurrence(0, AT - 120_000, AT, 60_000)
    assert lag is not None and not matches(rule(on="ticker_behind"), lag, "team")
    told = summary(incident_of("team/r", kept, theirs))
    assert told == "cronstream: run r1 failed"  # ids as the namespace knows them


def test_a_summary_is_one_line() -> None:
    failed = occ("RunFailed", {"run_id": "r1", "error": "bad\r\nSubject: x"}, workflow_id="j")
    assert failed is not None
    text = summary(incident_of("a", rule(on="run_failed"), failed))
    assert "\n" not in text and "\r" not in text and text.endswith("bad Subject: x")

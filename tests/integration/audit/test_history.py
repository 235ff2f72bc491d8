"""A schedule's audit trail: field-level changes, outcomes, triggers; API and CLI."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.api.audit import AuditPage
from service.audit.history import diff
from service.cli import audit_cmd
from service.clock import FixedClock
from service.store.keys import Keyspace
from tests.integration.ticker.helpers import MINUTE, leader, setup


def test_diff_names_dotted_paths_and_compares_lists_whole() -> None:
    old = {"name": "a", "spec": {"cron": ["0 2 * * *"], "timezone": "UTC"}, "tags": []}
    new = {"name": "a", "spec": {"cron": ["0 3 * * *"], "timezone": "UTC", "jitter": "5s"}}
    assert diff(old, new) == {
        "spec.cron": {"from": ["0 2 * * *"], "to": ["0 3 * * *"]},
        "spec.jitter": {"from": None, "to": "5s"},
        "tags": {"from": [], "to": None},
    }
    assert diff(old, old) == {}


async def history(api: TestClient, sid: str = "s", **params: str) -> dict[str, Any]:
    r = await api.get(f"/v1/schedules/{sid}/history", params=params)
    assert r.status == 200, await r.text()
    page: dict[str, Any] = await r.json()
    AuditPage.model_validate(page)
    return page


async def scripted(api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock) -> None:
    await setup(api, target="none")
    ticker = await leader(redis, keys, clock)
    clock.advance(MINUTE)
    await ticker.tick(0)
    r = await api.patch(
        "/v1/schedules/s",
        json={"spec": {"cron": ["0 3 * * *"], "timezone": "Europe/Berlin"}, "tags": ["x"]},
        headers={"X-Actor": "bob"},
    )
    assert r.status == 200
    await api.post("/v1/schedules/s/pause", json={"note": "upgrade"}, headers={"X-Actor": "alice"})
    await api.post("/v1/schedules/s/resume")


async def test_history_shows_who_what_changed_trigger_and_outcome(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await scripted(api, redis, keys, clock)
    items = (await history(api))["items"]
    assert [i["type"] for i in items] == [
        "ScheduleCreated",
        "ScheduleFired",
        "RunQueued",
        "RunSucceeded",
        "ScheduleUpdated",
        "SchedulePaused",
        "ScheduleResumed",
    ]
    created, fired, queued, succeeded, updated, paused, resumed = items
    assert created["changes"]["status"] == {"from": None, "to": "active"}
    assert created["changes"]["spec.cron"] == {"from": None, "to": ["* * * * *"]}
    assert fired["trigger"] == "schedule" and fired["changes"] is None
    assert fired["outcome"].startswith("fired 2026-01-15T12:01:00Z as run run_")
    assert queued["trigger"] == "schedule" and queued["outcome"].endswith(" queued")
    assert succeeded["outcome"].endswith(" succeeded")
    assert updated["actor"] == "bob"
    assert updated["changes"] == {
        "spec.cron": {"from": ["* * * * *"], "to": ["0 3 * * *"]},
        "spec.timezone": {"from": "UTC", "to": "Europe/Berlin"},
        "tags": {"from": [], "to": ["x"]},
    }
    assert paused["actor"] == "alice" and paused["trigger"] == "manual"
    assert paused["changes"] == {"status": {"from": "active", "to": "paused"}}
    assert resumed["changes"] == {"status": {"from": "paused", "to": "active"}}
    assert created["effective_at"] == "2026-01-15T12:00:00Z"


async def test_changes_on_a_later_page_are_computed_from_the_earlier_events(
    api: TestClient, redis: Redis, keys: Keyspace, clock: FixedClock
) -> None:
    await scripted(api, redis, keys, clock)
    whole = (await history(api))["items"]
    paged = []
    cursor = None
    for _ in range(10):
        page = await history(api, limit="2", **({"cursor": cursor} if cursor else {}))
        paged += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == whole


async def test_history_of_an_unknown_schedule_is_404(api: TestClient) -> None:
    r = await api.get("/v1/schedules/nope/history")
    assert r.status == 404


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cronstream")
    audit_cmd.add_parsers(p.add_subparsers(dest="command", required=True))
    return p


async def run_cli(monkeypatch: pytest.MonkeyPatch, redis_url: str, *argv: str) -> int:
    monkeypatch.setenv("REDIS_URL", redis_url)
    args = parser().parse_args(list(argv))
    code: int = await asyncio.to_thread(args.func, args)
    return code


async def test_cli_audit_reads_the_log_between_instants(
    api: TestClient,
    redis: Redis,
    keys: Keyspace,
    clock: FixedClock,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await scripted(api, redis, keys, clock)
    # the views are not consulted: drop them all
    async for key in redis.scan_iter(match="cs:{0}:view:*"):
        await redis.delete(key)
    capsys.readouterr()
    assert await run_cli(monkeypatch, redis_url, "audit", "s", "--output", "json") == 0
    everything = orjson.loads(capsys.readouterr().out)
    assert everything["items"] == (await history(api))["items"]
    code = await run_cli(
        monkeypatch, redis_url, "audit", "s", "--from", "2026-01-15T12:00:30Z", "--output", "json"
    )
    assert code == 0
    later = orjson.loads(capsys.readouterr().out)["items"]
    # commands take effect at the injected clock's time; fires at their append time
    assert "ScheduleCreated" not in [i["type"] for i in later]
    assert later[-1]["changes"] == {"status": {"from": "paused", "to": "active"}}
    assert await run_cli(monkeypatch, redis_url, "audit", "s") == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["AT", "ACTOR", "TYPE", "CHANGE", "NOTE"]
    # one change a line, each with when and who (and the note)
    changes = [" ".join(line.split()[1:]) for line in table if "Schedule" in line]
    assert 'bob ScheduleUpdated spec.cron: ["* * * * *"] -> ["0 3 * * *"] -' in changes
    assert "bob ScheduleUpdated spec.timezone: UTC -> Europe/Berlin -" in changes
    assert "alice SchedulePaused status: active -> paused upgrade" in changes
    assert 'anonymous@127.0.0.1 ScheduleCreated spec.cron = ["* * * * *"] -' in changes
    assert await run_cli(monkeypatch, redis_url, "audit", "nope") == 1

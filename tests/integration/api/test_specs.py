"""Spec preview over HTTP, next runs of a stored schedule, and parity with the CLI."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestClient

from service.domain.spec import SpecPreview
from tests.integration.api.helpers import create_schedule, log_length, problem, put_workflow
from tests.process import cli


async def test_preview_gives_times_and_exclusions_without_writing(api: TestClient) -> None:
    before = await log_length(api)
    spec = {"cron": ["0 2 * * *"], "exclude_cron": ["0 2 * * SAT,SUN"], "timezone": "Europe/Berlin"}
    r = await api.post(
        "/v1/specs/preview", json={"spec": spec, "count": 3, "after": "2026-01-15T12:00:00Z"}
    )
    body = await r.json()
    assert r.status == 200, body
    SpecPreview.model_validate(body)
    # Thu 15 Jan 2026: next are Fri 16, (Sat 17, Sun 18 excluded), Mon 19, Tue 20
    assert [t["nominal"] for t in body["times"]] == [
        "2026-01-16T01:00:00Z",
        "2026-01-19T01:00:00Z",
        "2026-01-20T01:00:00Z",
    ]
    assert [t["actual"] for t in body["times"]] == [t["nominal"] for t in body["times"]]
    assert [(e["nominal"], e["reason"]) for e in body["excluded"]] == [
        ("2026-01-17T01:00:00Z", "exclude_cron[0]: 0 2 * * SAT,SUN"),
        ("2026-01-18T01:00:00Z", "exclude_cron[0]: 0 2 * * SAT,SUN"),
    ]
    assert await log_length(api) == before


async def test_preview_errors_name_the_field(api: TestClient) -> None:
    cases = [
        (
            {"spec": {"cron": ["61 * * * *"]}},
            "spec.cron.0",
            "minute field: 61 is out of range 0-59",
        ),
        (
            {"spec": {"cron": ["* * * * *"], "timezone": "Mars/Olympus"}},
            "spec.timezone",
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            {"spec": {"intervals": [{"every": "1m", "offset": "2m"}]}},
            "spec.intervals.0.offset",
            "offset must be smaller than every",
        ),
        ({"spec": {"cron": ["0 0 30 2 *"]}}, "spec.cron.0", "never"),
        ({"spec": {"cron": ["* * * * *"]}, "count": 0}, "count", "greater than or equal to 1"),
    ]
    for body, field, words in cases:
        err = await problem(await api.post("/v1/specs/preview", json=body), 422)
        assert err["errors"][0]["field"] == field, err
        assert words in err["errors"][0]["message"], err


async def test_next_runs_of_a_schedule_carry_its_jitter(api: TestClient) -> None:
    await put_workflow(api)
    spec = {"cron": ["*/15 * * * *"], "jitter": "5m"}
    view = await create_schedule(api, "q", spec=spec, max_actions=3)
    assert view["spec"]["description"] == ["Every 15 minutes"]
    assert len(view["next_run_times"]) == 3  # bounded by max_actions
    assert view["info"]["remaining_actions"] == 3
    r = await api.get(
        "/v1/schedules/q/next-runs", params={"count": "4", "after": "2026-01-15T12:00:00Z"}
    )
    body = await r.json()
    nominals = [t["nominal"] for t in body["times"]]
    assert nominals == [
        "2026-01-15T12:15:00Z",
        "2026-01-15T12:30:00Z",
        "2026-01-15T12:45:00Z",
        "2026-01-15T13:00:00Z",
    ]
    again = await (
        await api.get(
            "/v1/schedules/q/next-runs", params={"count": "4", "after": "2026-01-15T12:00:00Z"}
        )
    ).json()
    assert again == body  # deterministic jitter
    preview = await (
        await api.post(
            "/v1/specs/preview",
            json={"spec": spec, "count": 4, "after": "2026-01-15T12:00:00Z", "schedule_id": "q"},
        )
    ).json()
    assert preview == body
    assert any(t["actual"] != t["nominal"] for t in body["times"])
    for t in body["times"]:
        assert t["nominal"] <= t["actual"] < t["nominal"][:14] + "59:59Z"


async def test_cli_spec_next_and_the_preview_endpoint_agree(api: TestClient) -> None:
    exprs = ["30 2 * * *", "0 */6 * * MON-FRI"]
    after = "2026-03-27T00:00:00Z"
    offline = cli(
        "spec", "next", *exprs, "--tz", "America/New_York", "--after", after, "--count", "12"
    )
    assert offline.returncode == 0, offline.stderr
    body = await (
        await api.post(
            "/v1/specs/preview",
            json={
                "spec": {"cron": exprs, "timezone": "America/New_York"},
                "count": 12,
                "after": after,
            },
        )
    ).json()
    assert offline.stdout.split() == [t["nominal"] for t in body["times"]]
    as_json = cli(
        "spec",
        "next",
        *exprs,
        "--tz",
        "America/New_York",
        "--after",
        after,
        "--count",
        "12",
        "--json",
    )
    assert json.loads(as_json.stdout) == body

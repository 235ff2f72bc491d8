"""The console's doors, over HTTP (no browser needed): the token cookie, cross-site
forms, read-only tokens, the open console under --insecure-dev, and the /v1 routes the
console added (the forecast and a spec in words)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from service.api.app import create_app
from service.clock import FixedClock
from service.config import Settings
from service.console import client, pages
from service.domain.tokens import Scope
from service.store.embedded import free_port
from tests.integration.api.helpers import put_workflow
from tests.tokens import bearer, make_token

CSRF = re.compile(r'name="csrf" value="([^"]+)"')
HOURLY = {"cron": ["0 * * * *"]}


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field in the page"
    return found.group(1)


@pytest.fixture
async def secured(redis: Redis, settings: Settings, clock: FixedClock) -> AsyncIterator[TestClient]:
    app = create_app(replace(settings, auth=True), redis, clock=clock)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    admin = bearer(await make_token(redis, Scope.ADMIN))
    r = await client.put("/v1/workflows/wf", json={"target": {"type": "none"}}, headers=admin)
    assert r.status == 201, await r.text()
    body = {"id": "s", "workflow_id": "wf", "spec": HOURLY}
    assert (await client.post("/v1/schedules", json=body, headers=admin)).status == 201
    yield client
    await client.close()


async def sign_in(client: TestClient, token: str) -> str:
    """Sign in through the login form; the page's CSRF token afterwards."""
    page = await client.get("/console/login")
    form = {"csrf": csrf_of(await page.text()), "token": token, "next": "/console/schedules"}
    r = await client.post("/console/login", data=form, allow_redirects=False)
    assert r.status == 303, await r.text()
    cookie = r.headers.getall("Set-Cookie")
    kept = next(c for c in cookie if c.startswith("cs_console_token="))
    assert "HttpOnly" in kept and "SameSite=Strict" in kept and "Path=/" in kept
    schedules = await client.get("/console/schedules")
    assert schedules.status == 200
    return csrf_of(await schedules.text())


async def status_of(client: TestClient, redis: Redis, sid: str = "s") -> str:
    admin = bearer(await make_token(redis, Scope.ADMIN))
    body: dict[str, Any] = await (await client.get(f"/v1/schedules/{sid}", headers=admin)).json()
    return str(body["status"])


async def test_with_tokens_the_console_asks_for_one_and_keeps_it_in_a_strict_cookie(
    secured: TestClient, redis: Redis
) -> None:
    r = await secured.get("/console/schedules?status=active", allow_redirects=False)
    assert r.status == 303
    assert r.headers["Location"] == "/console/login?next=%2Fconsole%2Fschedules%3Fstatus%3Dactive"
    await sign_in(secured, await make_token(redis, Scope.ADMIN))
    page = await (await secured.get("/console/schedules")).text()
    assert 'href="/console/schedules/s"' in page and "Run now" in page
    # the token never reaches the page: only the cookie holds it
    assert "cs_" not in re.sub(r"cs_console_\w+", "", page)


async def test_a_wrong_token_is_refused_at_sign_in_and_sets_no_cookie(
    secured: TestClient, redis: Redis
) -> None:
    page = await secured.get("/console/login")
    form = {"csrf": csrf_of(await page.text()), "token": "cs_not-a-token", "next": "/"}
    r = await secured.post("/console/login", data=form, allow_redirects=False)
    assert r.status == 401
    assert "the token" in await r.text() or "token" in await r.text()
    assert not [c for c in r.headers.getall("Set-Cookie", []) if "cs_console_token" in c]


async def test_a_read_only_token_sees_no_write_buttons_and_cannot_write(
    secured: TestClient, redis: Redis
) -> None:
    token = await make_token(redis, Scope.SCHEDULES_READ, Scope.RUNS_READ, Scope.WORKFLOWS_READ)
    csrf = await sign_in(secured, token)
    listing = await (await secured.get("/console/schedules")).text()
    detail = await (await secured.get("/console/schedules/s")).text()
    for page in (listing, detail):
        assert "Run now" not in page and "Pause" not in page and "New schedule" not in page
        assert "read only" in page
    # a forged button still meets the API's scope check
    r = await secured.post("/console/schedules/s/pause", data={"csrf": csrf, "note": "x"})
    assert r.status == 403
    assert await status_of(secured, redis) == "active"


async def test_forms_from_other_sites_or_without_the_csrf_token_change_nothing(
    secured: TestClient, redis: Redis
) -> None:
    csrf = await sign_in(secured, await make_token(redis, Scope.ADMIN))
    url = "/console/schedules/s/pause"
    refused = [
        ({"note": "n"}, {}),
        ({"note": "n", "csrf": "forged" * 8}, {}),
        ({"note": "n", "csrf": csrf}, {"Origin": "https://evil.example"}),
        ({"note": "n", "csrf": csrf}, {"Sec-Fetch-Site": "cross-site"}),
    ]
    for form, headers in refused:
        r = await secured.post(url, data=form, headers=headers, allow_redirects=False)
        assert r.status == 403, (form, headers)
        assert await status_of(secured, redis) == "active"
    ok = {"Origin": str(secured.make_url("")).rstrip("/"), "Sec-Fetch-Site": "same-origin"}
    form = {"note": "quiet week", "csrf": csrf, "back": "https://evil.example/"}
    r = await secured.post(url, data=form, headers=ok, allow_redirects=False)
    assert r.status == 303 and r.headers["Location"] == "/console/schedules"
    assert await status_of(secured, redis) == "paused"


async def test_scripts_reach_the_api_through_the_console_only_with_the_csrf_token(
    secured: TestClient, redis: Redis
) -> None:
    body = {"spec": HOURLY, "count": 2, "after": "2026-01-15T12:00:00Z"}
    assert (await secured.post("/console/v1/specs/preview", json=body)).status == 401
    csrf = await sign_in(secured, await make_token(redis, Scope.SCHEDULES_READ))
    assert (await secured.post("/console/v1/specs/preview", json=body)).status == 403
    r = await secured.post("/console/v1/specs/preview", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status == 200
    assert [t["nominal"] for t in (await r.json())["times"]] == [
        "2026-01-15T13:00:00Z",
        "2026-01-15T14:00:00Z",
    ]
    # the token's scopes still hold: schedules:read cannot read runs
    assert (await secured.get("/console/v1/runs")).status == 403


async def test_signing_out_drops_the_token(secured: TestClient, redis: Redis) -> None:
    csrf = await sign_in(secured, await make_token(redis, Scope.ADMIN))
    r = await secured.post("/console/logout", data={"csrf": csrf}, allow_redirects=False)
    assert r.status == 303
    assert (await secured.get("/console/schedules", allow_redirects=False)).status == 303


async def test_without_tokens_the_console_opens_directly(api: TestClient) -> None:
    await put_workflow(api, "wf")
    r = await api.post("/v1/schedules", json={"id": "open", "workflow_id": "wf", "spec": HOURLY})
    assert r.status == 201
    home = await api.get("/", allow_redirects=False)
    assert home.status == 303 and home.headers["Location"] == "/console/schedules"
    page = await api.get("/console/schedules")
    assert page.status == 200
    text = await page.text()
    assert "open (insecure-dev)" in text and "Run now" in text and "Every hour" in text


async def test_an_invalid_cron_from_the_form_is_named_and_creates_nothing(api: TestClient) -> None:
    await put_workflow(api, "wf")
    form_page = await (await api.get("/console/schedules/new")).text()
    form = {
        "csrf": csrf_of(form_page),
        "id": "bad",
        "workflow_id": "wf",
        "cron": "61 * * * *",
        "timezone": "UTC",
    }
    r = await api.post("/console/schedules", data=form)
    assert r.status == 422
    text = await r.text()
    error = re.search(r'id="err-cron"[^>]*>([^<]+)<', text)
    assert error and "61" in error.group(1)
    assert (await (await api.get("/v1/schedules")).json())["items"] == []


async def test_the_forecast_marks_the_herd_of_a_hundred_schedules_on_the_hour(
    api: TestClient,
) -> None:
    await put_workflow(api, "wf")
    for i in range(100):
        body = {"id": f"herd-{i:03}", "workflow_id": "wf", "spec": HOURLY}
        assert (await api.post("/v1/schedules", json=body)).status == 201
    quiet = {"id": "quiet", "workflow_id": "wf", "spec": {"cron": ["17 3 * * *"]}}
    assert (await api.post("/v1/schedules", json=quiet)).status == 201
    r = await api.get("/v1/forecast?window=24h")
    assert r.status == 200
    body = await r.json()
    assert body["schedules"] == 101 and body["total"] == 100 * 24 + 1
    assert len(body["minute_counts"]) == 24 * 60
    # the clock stands at 12:00: the first herd is the next top of the hour, 13:00
    assert [h["at"] for h in body["herds"]][:2] == ["2026-01-15T12:00:00Z", "2026-01-15T13:00:00Z"]
    first = body["herds"][0]
    assert first["fires"] == 100 and first["more"] == 80 and first["schedules"][0] == "herd-000"
    week = await (await api.get("/v1/forecast?window=7d")).json()
    assert len(week["minute_counts"]) == 7 * 24 * 60 and len(week["herds"]) == 100
    assert (await api.get("/v1/forecast?window=1y")).status == 422


async def test_a_spec_in_words_with_its_dst_moves(api: TestClient) -> None:
    spec = {"cron": ["30 2 * * *"], "timezone": "America/New_York"}
    body = {"spec": spec, "at": ["2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"]}
    r = await api.post("/v1/specs/describe", json=body)
    assert r.status == 200
    answer = await r.json()
    assert answer["description"] == ["At 02:30, every day"]
    moved, plain = answer["times"]
    assert moved["local"] == "2024-03-10 03:00:00 EDT (UTC-0400)" and "DST starts" in moved["dst"]
    assert plain["dst"] is None
    bad = await api.post("/v1/specs/describe", json={"spec": {"cron": ["0 0 30 2 *"]}})
    assert bad.status == 422
    assert (await bad.json())["errors"][0]["field"].startswith("spec.cron")


async def test_delete_asks_first_and_then_deletes(api: TestClient) -> None:
    await put_workflow(api, "wf")
    r = await api.post("/v1/schedules", json={"id": "gone", "workflow_id": "wf", "spec": HOURLY})
    assert r.status == 201
    confirm = await api.get("/console/schedules/gone/delete")
    assert confirm.status == 200
    text = await confirm.text()
    assert "Delete schedule" in text and (await api.get("/v1/schedules/gone")).status == 200
    form = {"csrf": csrf_of(text)}
    done = await api.post("/console/schedules/gone/delete", data=form, allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == "/console/schedules"
    assert (await api.get("/v1/schedules/gone")).status == 404


async def test_a_schedule_page_reads_a_long_history_to_its_latest_change(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "HISTORY_PAGE", 5)
    await put_workflow(api, "wf")
    r = await api.post("/v1/schedules", json={"id": "busy", "workflow_id": "wf", "spec": HOURLY})
    assert r.status == 201
    for i in range(12):  # more events than a page of history holds
        r = await api.patch(
            "/v1/schedules/busy",
            json={"description": f"change {i}"},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status == 200
    assert (
        await api.post("/v1/schedules/busy/pause", json={"note": "the last word"})
    ).status == 200
    page = await (await api.get("/console/schedules/busy")).text()
    assert "the last word" in page and "change 11" in page


async def test_a_runs_trace_id_links_to_the_configured_viewer(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await put_workflow(api, "wf")
    r = await api.post("/v1/schedules", json={"id": "traced", "workflow_id": "wf", "spec": HOURLY})
    assert r.status == 201
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    fired = await api.post(
        "/v1/schedules/traced/trigger",
        json={},
        headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
    )
    run_id = (await fired.json())["run_id"]
    deadline = time.monotonic() + 10
    while (await api.get(f"/v1/runs/{run_id}")).status != 200:  # the view follows the log
        assert time.monotonic() < deadline, "the run never reached the runs view"
        await asyncio.sleep(0.02)
    plain = await (await api.get(f"/console/runs/{run_id}")).text()
    assert f"<code>{trace}</code>" in plain
    monkeypatch.setenv("CRONSTREAM_TRACE_URL", "https://traces.example/trace/{trace_id}")
    linked = await (await api.get(f"/console/runs/{run_id}")).text()
    assert f'href="https://traces.example/trace/{trace}"' in linked


async def test_a_queued_run_can_be_cancelled_from_its_page(api: TestClient) -> None:
    await put_workflow(api, "wf", target={"type": "http", "url": "http://127.0.0.1:9/"})
    r = await api.post("/v1/schedules", json={"id": "slow", "workflow_id": "wf", "spec": HOURLY})
    assert r.status == 201
    run_id = (await (await api.post("/v1/schedules/slow/trigger", json={})).json())["run_id"]
    deadline = time.monotonic() + 10
    while (await api.get(f"/v1/runs/{run_id}")).status != 200:  # no worker: it stays queued
        assert time.monotonic() < deadline, "the run never reached the runs view"
        await asyncio.sleep(0.02)
    page = await (await api.get(f"/console/runs/{run_id}")).text()
    assert "Cancel run" in page and "Retry run" not in page
    form = {"csrf": csrf_of(page)}
    done = await api.post(f"/console/runs/{run_id}/cancel", data=form, allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == f"/console/runs/{run_id}"
    while (await (await api.get(f"/v1/runs/{run_id}")).json())["status"] != "cancelled":
        assert time.monotonic() < deadline, "the run was not cancelled"
        await asyncio.sleep(0.02)
    assert "Cancel run" not in await (await api.get(f"/console/runs/{run_id}")).text()


async def test_an_api_that_cannot_be_reached_is_a_503_page(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the console's calls go to a port where nothing listens
    monkeypatch.setattr(client, "base_url", lambda request: f"http://127.0.0.1:{free_port()}")
    r = await api.get("/console/schedules")
    assert r.status == 503
    assert "the API did not answer" in await r.text()

"""The web console end to end in headless Chromium, against a real ``serve`` process."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from service.store.embedded import free_port
from tests.browser.conftest import Client
from tests.process import Service

pytestmark = pytest.mark.browser

HOURLY_AT_17 = {"cron": ["17 * * * *"]}


NOOP = {"type": "python", "handler": "tests.integration.runs.handlers:noop"}


def workflow(
    v1: Client, wid: str, schema: dict[str, object] | None = None, target: object = None
) -> None:
    body: dict[str, object] = {"target": target or {"type": "none"}}
    if schema is not None:
        body["input_schema"] = schema
    status, answer = v1.call("PUT", f"/v1/workflows/{wid}", body)
    assert status in (200, 201), answer


def schedule(v1: Client, sid: str, spec: dict[str, object], wid: str = "wf") -> None:
    status, answer = v1.call("POST", "/v1/schedules", {"id": sid, "workflow_id": wid, "spec": spec})
    assert status == 201, answer


def tab(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Trigger").get_by_role("link", name=name, exact=True)


def test_a_schedule_made_in_the_editor_fires_and_runs_show_their_trigger(
    page: Page, v1: Client
) -> None:
    workflow(v1, "tick", {"type": "object", "required": ["n"]}, NOOP)
    page.goto("/console/schedules/new")
    page.locator("#f-id").fill("every-second")
    page.get_by_label("Workflow", exact=True).select_option("tick")
    page.locator("#f-cron").fill("* * * * * *")
    expect(page.locator("#spec-words")).to_have_text("Every second")
    expect(page.locator("#preview-times li")).to_have_count(10)
    # the input is checked against the workflow's schema as it is typed
    page.locator("#f-input").fill('{"m": 1}')
    expect(page.locator("#err-input")).to_contain_text("input.n: is required")
    page.locator("#f-input").fill('{"n": 1}')
    expect(page.locator("#err-input")).to_be_hidden()
    page.get_by_role("button", name="Create schedule").click()
    expect(page).to_have_url(re.compile(r"/console/schedules/every-second$"))

    page.goto("/console/runs?schedule_id=every-second")
    # the page was drawn before the first fire: the event stream brings the run in
    scheduled = page.locator("tr[data-run] .trigger-schedule").first
    expect(scheduled).to_have_text("Scheduled")
    v1.call("POST", "/v1/schedules/every-second/pause", {"note": "enough"})

    page.goto("/console/schedules?q=every-second")
    page.locator('tr[data-schedule="every-second"]').get_by_role("button", name="Run now").click()
    expect(page).to_have_url(re.compile(r"/console/runs/run_"))
    expect(page.locator("h1 .trigger")).to_have_text("Manual")
    expect(page.locator("h1 .status")).to_have_text("succeeded")
    attempt = page.locator("table.list tbody tr").first
    expect(attempt).to_contain_text("succeeded")
    expect(attempt.locator("td").first).to_have_text("1")
    page.goto("/console/runs?schedule_id=every-second&trigger=manual")
    expect(page.locator("tr[data-run] .trigger")).to_have_text(["Manual"])


def test_pause_and_resume_from_the_list_with_notes_in_the_history(page: Page, v1: Client) -> None:
    workflow(v1, "wf")
    schedule(v1, "nightly-report", HOURLY_AT_17)
    page.goto("/console/schedules?q=nightly-report")
    row = page.locator('tr[data-schedule="nightly-report"]')
    row.get_by_label("Note for pausing nightly-report").fill("database maintenance")
    row.get_by_role("button", name="Pause").click()
    expect(row.locator(".chip")).to_have_text("paused")
    row.get_by_label("Note for resuming nightly-report").fill("maintenance done")
    row.get_by_role("button", name="Resume").click()
    expect(row.locator(".chip")).to_have_text("active")

    row.get_by_role("link", name="nightly-report").click()
    history = page.locator("#history")
    expect(history.locator("tr", has_text="SchedulePaused")).to_contain_text("database maintenance")
    expect(history.locator("tr", has_text="ScheduleResumed")).to_contain_text("maintenance done")
    expect(history.locator("tr", has_text="SchedulePaused")).to_contain_text("ui:console")


def test_an_invalid_cron_is_shown_at_the_field_and_creates_nothing(page: Page, v1: Client) -> None:
    workflow(v1, "wf")
    page.goto("/console/schedules/new")
    page.locator("#f-id").fill("broken")
    page.get_by_label("Workflow", exact=True).select_option("wf")
    page.locator("#f-cron").fill("61 * * * *")
    # live, from the preview
    expect(page.locator("#err-cron")).to_contain_text("61")
    expect(page.locator("#f-cron")).to_have_attribute("aria-invalid", "true")
    page.get_by_role("button", name="Create schedule").click()
    # and from the create the API refused
    expect(page.locator("#err-cron")).to_contain_text("61")
    expect(page.locator("#f-cron")).to_have_value("61 * * * *")
    assert v1.call("GET", "/v1/schedules/broken")[0] == 404


def test_runs_filtered_by_trigger_keep_the_filter_across_a_reload(page: Page, v1: Client) -> None:
    workflow(v1, "wf")
    schedule(v1, "mixed", HOURLY_AT_17)
    page.goto("/console/runs?schedule_id=mixed")
    expect(page.locator("#live-status")).to_have_text("live")
    for actor in ("cli:ops@host", "deploy-bot"):
        status, _ = v1.call("POST", "/v1/schedules/mixed/trigger", {}, {"X-Actor": actor})
        assert status == 201
    span = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T02:00:00Z"}
    assert v1.call("POST", "/v1/schedules/mixed/backfill", span)[0] == 200
    # no reload: the event stream brings the runs in
    expect(page.locator("tr[data-run]")).to_have_count(4)
    tab(page, "Backfill").click()
    expect(page).to_have_url(re.compile(r"trigger=backfill"))
    expect(page.locator("tr[data-run]")).to_have_count(2)
    page.reload()
    expect(tab(page, "Backfill")).to_have_attribute("aria-current", "true")
    expect(page.locator("tr[data-run] .trigger")).to_have_text(["Backfill", "Backfill"])
    tab(page, "API").click()
    expect(page.locator("tr[data-run] .trigger")).to_have_text(["API"])
    tab(page, "Manual").click()
    expect(page.locator("tr[data-run] .trigger")).to_have_text(["Manual"])
    assert "trigger=manual" in page.url and "schedule_id=mixed" in page.url


def test_the_forecast_shows_the_herd_of_a_hundred_schedules_on_the_hour(
    page: Page, v1: Client
) -> None:
    workflow(v1, "wf")
    for i in range(100):
        schedule(v1, f"herd-{i:03}", {"cron": ["0 * * * *"]})
    page.goto("/console/forecast")
    first = page.locator("#herds tbody tr").first
    expect(first).to_contain_text(":00:00Z")
    expect(first.locator("td").nth(1)).to_have_text("100")
    expect(first).to_contain_text("herd-000")
    expect(first).to_contain_text("and 80 more")
    expect(page.locator("#herds tbody tr")).to_have_count(24)
    assert page.locator("svg.bars rect.herd").count() >= 24
    page.get_by_role("link", name="Next 7 days").click()
    expect(page.locator("#herds tbody tr")).to_have_count(100)


def test_the_editor_marks_dst_and_shows_what_an_edit_changes(page: Page, v1: Client) -> None:
    workflow(v1, "wf")
    page.goto("/console/schedules/new")
    page.locator("#f-timezone").fill("America/New_York")
    # 02:30 on the second Sunday of March does not exist in New York: it runs at 03:00
    page.locator("#f-cron").fill("30 2 * 3 SUN#2")
    expect(page.locator("#preview-times li").first).to_contain_text("03:00:00 EDT")
    expect(page.locator("#preview-times li").first).to_contain_text("DST starts")

    schedule(v1, "daily-two", {"cron": ["0 2 * * *"]})
    page.goto("/console/schedules/daily-two/edit")
    expect(page.locator("#preview-times li")).to_have_count(10)
    page.get_by_role("button", name="Hourly").click()
    expect(page.locator("#preview-diff")).to_be_visible()
    expect(page.locator("#preview-added li").first).to_contain_text("appears")
    page.locator("#f-cron").fill("0 2,3 * * *")
    expect(page.locator("#preview-removed li")).to_have_count(0)
    page.get_by_role("button", name="Save changes").click()
    expect(page).to_have_url(re.compile(r"/console/schedules/daily-two$"))
    assert v1.call("GET", "/v1/schedules/daily-two")[1]["spec"]["cron"] == ["0 2,3 * * *"]


def test_reading_and_the_forms_need_no_javascript(
    browser: Browser, service: Service, v1: Client
) -> None:
    workflow(v1, "wf")
    schedule(v1, "plain-html", HOURLY_AT_17)
    context = browser.new_context(base_url=service.url, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/console/schedules?q=plain-html")
        row = page.locator('tr[data-schedule="plain-html"]')
        expect(row).to_contain_text("At minute 17")
        row.get_by_label("Note for pausing plain-html").fill("no script needed")
        row.get_by_role("button", name="Pause").click()
        expect(row.locator(".chip")).to_have_text("paused")
        row.get_by_role("link", name="plain-html").click()
        expect(page.locator("#history")).to_contain_text("no script needed")
        expect(page.locator("table.timeline")).to_be_visible()
        page.goto("/console/runs?trigger=manual")
        expect(tab(page, "Manual")).to_have_attribute("aria-current", "true")
    finally:
        context.close()


def test_a_failed_run_is_retried_from_its_page(page: Page, v1: Client) -> None:
    refused = {"type": "http", "url": f"http://127.0.0.1:{free_port()}/hook"}
    body = {"target": refused, "retry": {"max_attempts": 1}, "timeout": "1s"}
    assert v1.call("PUT", "/v1/workflows/unreachable", body)[0] in (200, 201)
    schedule(v1, "flaky", HOURLY_AT_17, wid="unreachable")
    status, fired = v1.call("POST", "/v1/schedules/flaky/trigger", {})
    assert status == 201
    page.goto(f"/console/runs/{fired['run_id']}")
    expect(page.locator("h1 .status")).to_have_text("failed")
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
    page.get_by_role("button", name="Retry run").click()
    expect(page.locator("table.list tbody tr")).to_have_count(2)
    expect(page.locator("h1 .status")).to_have_text("failed")

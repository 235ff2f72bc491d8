"""The console in a real browser: Debian's chromium, driven by Playwright, against a
``cronstream serve --insecure-dev`` process (API, projector, ticker and worker) on
127.0.0.1 and the session's Redis. One service and one browser per module; a page per
test. When a test fails, a screenshot of its page is saved under the artifacts
directory ($CRONSTREAM_TEST_ARTIFACTS, else cronstream-artifacts in the system's
temporary directory) and named in the report.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from service.store.embedded import RedisProcess
from tests.process import Service

ARTIFACTS = Path(
    os.environ.get("CRONSTREAM_TEST_ARTIFACTS")
    or Path(tempfile.gettempdir()) / "cronstream-artifacts"
)
CHROMIUM_NAMES = ("chromium", "chromium-browser")
WAIT_MS = 10_000
"""How long a page may take to show what a test expects (runs, live updates, 2 cores)."""
expect.set_options(timeout=WAIT_MS)


def chromium_path() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError(
        "the browser tests need Debian's chromium: apt-get install -y chromium "
        "(scripts/test installs it when run as root)"
    )


class Client:
    """The service's /v1 API over HTTP, for setting a test up and checking its effects."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers=headers or {}
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def service(
    redis_server: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    # a prefix of its own: other modules' tests flush the database when they start, not
    # while this module runs, and this module starts from an empty keyspace
    prefix = f"console{os.getpid()}x{id(tmp_path_factory) % 100000}"
    data = tmp_path_factory.mktemp("console") / "data"
    running = Service(data, redis_url=redis_server.url, CRONSTREAM_KEY_PREFIX=prefix)
    try:
        yield running.wait_healthy()
    finally:
        running.stop()


@pytest.fixture(scope="module")
def v1(service: Service) -> Client:
    return Client(service.url)


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
    )
    try:
        yield launched
    finally:
        launched.close()


@pytest.fixture
def page(browser: Browser, service: Service) -> Iterator[Page]:
    context = browser.new_context(base_url=service.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(WAIT_MS)
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    opened = getattr(item, "funcargs", {}).get("page")
    if report.when == "call" and report.failed and opened is not None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"{item.name}.png"
        try:
            opened.screenshot(path=str(shot), full_page=True)
            report.sections.append(("browser", f"screenshot of the page: {shot}"))
        except Exception as exc:  # the page may be gone with the failure
            report.sections.append(("browser", f"no screenshot ({exc})"))
    return report

"""Take the README's screenshots of the console in headless Chromium.

    python -m tests.browser.screenshots [--out docs/img]

Starts a redis-server and ``cronstream serve --insecure-dev`` on 127.0.0.1 in a
temporary directory, makes a few workflows and schedules (with a herd of schedules on
the hour and one whose webhook fails), waits for their first runs, saves the schedules
page and the forecast as PNG files, and stops everything it started.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from service.domain.addresses import ALLOW_PRIVATE_VAR
from service.store.embedded import free_port, start_redis_server
from tests.browser.conftest import Client, chromium_path
from tests.process import ROOT, Service

SCHEDULES: list[tuple[str, str, str, dict[str, Any], list[str]]] = [
    ("billing-invoices", "Invoices run", "billing", {"cron": ["0 6 1 * *"]}, ["finance"]),
    ("cache-warmup", "Warm the caches", "ops", {"cron": ["*/15 * * * *"]}, ["web"]),
    (
        "db-backup",
        "Database backup",
        "ops",
        {"cron": ["30 2 * * *"], "timezone": "Europe/Berlin", "jitter": "10m"},
        ["ops"],
    ),
    ("digest-email", "Morning digest", "mail", {"cron": ["0 8 * * MON-FRI"]}, ["mail"]),
    ("etl-nightly", "Nightly ETL", "etl", {"cron": ["0 1 * * *"]}, ["data"]),
    ("feed-refresh", "Partner feed", "partner", {"cron": ["* * * * *"]}, ["partners"]),
    ("metrics-rollup", "Metrics roll-up", "etl", {"intervals": [{"every": "5m"}]}, ["data"]),
    ("reports-weekly", "Weekly report", "mail", {"cron": ["0 9 * * MON"]}, ["mail"]),
]
HERD = 40


def seed(v1: Client) -> None:
    dead_end = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: the runs fail
    workflows = {
        "billing": {"target": {"type": "none"}},
        "ops": {"target": {"type": "none"}},
        "mail": {"target": {"type": "none"}},
        "etl": {"target": {"type": "none"}},
        "sync": {"target": {"type": "none"}},
        "partner": {
            "target": {"type": "http", "url": dead_end},
            "retry": {"max_attempts": 1},
            "timeout": "1s",
        },
    }
    for wid, body in workflows.items():
        assert v1.call("PUT", f"/v1/workflows/{wid}", body)[0] in (200, 201)
    for sid, name, wid, spec, tags in SCHEDULES:
        body = {"id": sid, "name": name, "workflow_id": wid, "spec": spec, "tags": tags}
        assert v1.call("POST", "/v1/schedules", body)[0] == 201
    for i in range(HERD):
        body = {"id": f"sync-shard-{i:02}", "workflow_id": "sync", "spec": {"cron": ["0 * * * *"]}}
        assert v1.call("POST", "/v1/schedules", body)[0] == 201
    v1.call("POST", "/v1/schedules/reports-weekly/pause", {"note": "holiday freeze"})
    for sid in ("db-backup", "etl-nightly", "feed-refresh"):
        v1.call("POST", f"/v1/schedules/{sid}/trigger", {}, {"X-Actor": "cli:ops@example"})


def wait_for_failure(v1: Client, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, body = v1.call("GET", "/v1/schedules/feed-refresh")
        if status == 200 and body.get("last_run_status") == "failed":
            return
        time.sleep(0.2)
    raise SystemExit("the failing schedule's run did not fail in time")


def shoot(url: str, out: Path) -> None:
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(base_url=url, viewport={"width": 1360, "height": 820})
            page.goto("/console/schedules")
            page.screenshot(path=str(out / "console-schedules.png"))
            page.goto("/console/forecast")
            page.screenshot(path=str(out / "console-forecast.png"))
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        redis = start_redis_server(Path(tmp) / "redis", appendonly=False)
        service: Service | None = None
        try:
            service = Service(Path(tmp) / "data", redis_url=redis.url, **{ALLOW_PRIVATE_VAR: "1"})
            v1 = Client(service.wait_healthy().url)
            seed(v1)
            wait_for_failure(v1)
            shoot(service.url, args.out)
        finally:
            if service is not None:
                service.stop()
            redis.stop()
    print(f"saved {args.out / 'console-schedules.png'} and {args.out / 'console-forecast.png'}")


if __name__ == "__main__":
    main()

"""``serve`` takes the outbound policy from its environment: without the opt-in, its
API refuses a literal loopback webhook URL and its worker refuses to deliver to a name
that means loopback. Loopback only: nothing is ever sent elsewhere."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from service.store.embedded import RedisProcess
from tests.fault.target_thread import thread_target
from tests.process import Service

pytestmark = pytest.mark.slow

HINT = "refused; set CRONSTREAM_ALLOW_PRIVATE_TARGETS=1 or CRONSTREAM_TARGET_ALLOWLIST to allow it"


def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def finished_run(base: str, run_id: str, timeout_s: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, run = call("GET", f"{base}/v1/runs/{run_id}")
        if status == 200 and run["status"] in ("succeeded", "failed"):
            return dict(run)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish within {timeout_s}s")


def test_serve_refuses_loopback_targets_unless_its_environment_allows_them(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    with thread_target() as target:
        port = target.url.rsplit(":", 1)[1]
        service = Service(
            tmp_path / "data",
            redis_url=redis_server.url,
            CRONSTREAM_KEY_PREFIX="outbound",
            CRONSTREAM_ALLOW_PRIVATE_TARGETS="0",  # the suite opts in: this process does not
        ).wait_healthy()
        try:
            base = service.url
            literal = {"target": {"type": "http", "url": f"{target.url}/ok"}}
            status, problem = call("PUT", f"{base}/v1/workflows/literal", literal)
            assert status == 422, problem
            assert problem["errors"][0]["field"] == "target.url"
            assert problem["errors"][0]["message"].endswith(HINT)

            named = {"target": {"type": "http", "url": f"http://localhost:{port}/ok"}}
            assert call("PUT", f"{base}/v1/workflows/named", named)[0] == 201
            status, made = call("POST", f"{base}/v1/workflows/named/runs", {"input": {}})
            assert status == 201, made
            run = finished_run(base, made["run_id"])
        finally:
            assert service.stop() == 0, service.output()
        assert run["status"] == "failed"
        [attempt] = run["attempts"]
        assert attempt["error"] == f"target address 127.0.0.1 (localhost) is loopback: {HINT}"
        assert target.calls == []


def test_serve_delivers_where_its_allowlist_says(
    tmp_path: Path, redis_server: RedisProcess
) -> None:
    with thread_target() as target:
        port = target.url.rsplit(":", 1)[1]
        service = Service(
            tmp_path / "data",
            redis_url=redis_server.url,
            CRONSTREAM_KEY_PREFIX="allowlisted",
            CRONSTREAM_ALLOW_PRIVATE_TARGETS="0",
            CRONSTREAM_TARGET_ALLOWLIST="127.0.0.1/32",
        ).wait_healthy()
        try:
            base = service.url
            listed = {"target": {"type": "http", "url": f"{target.url}/ok"}}
            assert call("PUT", f"{base}/v1/workflows/listed", listed)[0] == 201
            status, made = call("POST", f"{base}/v1/workflows/listed/runs", {"input": {}})
            assert status == 201, made
            run = finished_run(base, made["run_id"])
            unlisted = {"target": {"type": "http", "url": f"http://127.0.0.2:{port}/ok"}}
            status, problem = call("PUT", f"{base}/v1/workflows/unlisted", unlisted)
        finally:
            assert service.stop() == 0, service.output()
        assert run["status"] == "succeeded"
        assert target.count("/ok") == 1
        assert status == 422 and problem["errors"][0]["field"] == "target.url"

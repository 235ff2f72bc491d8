"""``serve --config-dir`` as a real process: applies at start, and a change once."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis

from service.store.embedded import free_port
from tests.process import ROOT, env, http_status, wait_until

pytestmark = pytest.mark.slow

FILE = """\
workflows:
  - id: wf1
    target: {type: none}
schedules:
  - id: s1
    workflow_id: wf1
    spec: {cron: ["0 2 * * *"]}
"""


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def serve(
    config_dir: Path, port: int, redis_url: str, prefix: str, log: Path
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                sys.executable, "-m", "service", "serve", "--insecure-dev",
                "--port", str(port), "--data-dir", str(config_dir.parent / "data"),
                "--config-dir", str(config_dir), "--config-interval", "0.1",
            ],
            env=env(REDIS_URL=redis_url, CRONSTREAM_KEY_PREFIX=prefix),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )  # fmt: skip


def test_a_file_changed_while_serve_runs_is_applied_once(tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "jobs.yaml").write_text(FILE)
    port, prefix, log = free_port(), f"cd{uuid.uuid4().hex[:8]}", tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}"
    process = serve(config, port, redis_url, prefix, log)
    try:
        schedule = f"{url}/v1/schedules/s1"
        wait_until(lambda: http_status(schedule) == 200, 30, "the files applied at start")
        (config / "jobs.yaml").write_text(FILE.replace("0 2 * * *", "30 2 * * *"))
        wait_until(
            lambda: get(schedule)["spec"]["cron"] == ["30 2 * * *"], 10, "the change applied"
        )
        # a later change is a barrier: once it is applied, the watcher has looked at
        # the first one's final content more than once
        barrier = "schedules:\n" + FILE.split("schedules:\n")[1].replace("s1", "s9")
        (config / "more.yaml").write_text(barrier)
        wait_until(lambda: http_status(f"{url}/v1/schedules/s9") == 200, 10, "the barrier")
        history = get(f"{schedule}/history")["items"]
        assert [item["type"] for item in history] == ["ScheduleCreated", "ScheduleUpdated"]
        client = sync_redis.Redis.from_url(redis_url)
        try:
            assert client.xlen(f"{prefix}:{{0}}:log") == 4  # wf1, s1, its change, s9
        finally:
            client.close()
    finally:
        process.terminate()
        assert process.wait(timeout=20) == 0, log.read_text()
    assert log.read_text().count("config dir applied") == 3, log.read_text()

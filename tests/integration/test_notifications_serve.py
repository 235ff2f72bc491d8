"""``cronstream serve`` tells: a channel and a rule made with ``cronstream notify``, a run
that fails in the serve process's worker, and a signed webhook at a local receiver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from standardwebhooks import Webhook

from service.store.embedded import RedisProcess
from service.store.secrets import generate_key
from tests.process import Service


@pytest.fixture
def service(redis_server: RedisProcess, tmp_path: Path) -> Iterator[Service]:
    running = Service(
        tmp_path / "data",
        redis_url=redis_server.url,
        CRONSTREAM_KEY_PREFIX="notifytest",
        CRONSTREAM_SECRET_KEY=generate_key(),
    ).wait_healthy()
    yield running
    assert running.stop() == 0, running.output()


def cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> str:
    from service.cli.main import main

    code = main([*args, "--url", url])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


async def test_serve_tells_a_failed_run_to_a_channel_made_with_the_cli(
    service: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        calls.append((dict(request.headers), await request.read()))
        return web.Response(status=500 if request.path == "/fail" else 204)

    app = web.Application()
    app.router.add_post("/{name}", hook)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    base = f"http://127.0.0.1:{receiver.port}"
    try:
        secret = cli(
            capsys, service.url, "notify", "channel", "put", "ops", "--webhook", base + "/ops"
        )
        cli(
            capsys,
            service.url,
            "notify",
            "rule",
            "put",
            "failed",
            "--on",
            "run_failed",
            "--channel",
            "ops",
        )
        async with aiohttp.ClientSession(service.url) as api:
            body = {"target": {"type": "http", "url": base + "/fail"}, "retry": {"max_attempts": 1}}
            assert (await api.put("/v1/workflows/job", json=body)).status == 201
            made = await api.post("/v1/workflows/job/runs", json={})
            run_id = (await made.json())["run_id"]
        deadline = time.monotonic() + 15
        while not [c for c in calls if c[0].get("webhook-id", "").startswith("ntf_")]:
            assert time.monotonic() < deadline, service.output()
            await asyncio.sleep(0.05)
    finally:
        await receiver.close()

    [(headers, payload)] = [c for c in calls if "webhook-signature" in c[0]]
    told = Webhook(secret.strip()).verify(payload, headers)
    assert told["run_id"] == run_id and told["rule"] == "failed"
    listed = orjson.loads(cli(capsys, service.url, "notify", "list", "-o", "json"))
    [record] = listed["items"]
    assert record["status"] == "sent" and record["channel"] == "ops"
    shown = cli(capsys, service.url, "notify", "channel", "show", "ops", "-o", "json")
    assert secret.strip() not in shown and orjson.loads(shown)["secrets"] == ["secret"]

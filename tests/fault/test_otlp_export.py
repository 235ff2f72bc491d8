"""The service as a process exports spans over OTLP/HTTP (protobuf) and logs JSON lines."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from service.store.embedded import RedisProcess, free_port, start_redis_server
from tests.process import Service, wait_until

pytestmark = pytest.mark.slow


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[ExportTraceServiceRequest] = []
        self.content_types: list[str] = []
        self.lock = threading.Lock()

    def span_names(self) -> set[str]:
        with self.lock:
            return {
                span.name
                for req in self.requests
                for rs in req.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            }


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    done: asyncio.Event | None = None

    async def traces(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        with state.lock:
            state.requests.append(message)
            state.content_types.append(request.headers.get("Content-Type", ""))
        return web.Response(status=200, content_type="application/x-protobuf")

    async def serve() -> None:
        nonlocal done
        done = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", state.port).start()
        ready.set()
        await done.wait()
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield state
    assert done is not None
    loop.call_soon_threadsafe(done.set)
    thread.join(10)
    loop.close()


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    server = start_redis_server(tmp_path / "redis", appendonly=False)
    yield server
    server.stop()


def test_spans_reach_an_otlp_receiver_as_protobuf(
    tmp_path: Path, redis_proc: RedisProcess, receiver: Receiver
) -> None:
    service = Service(
        tmp_path / "data",
        redis_url=redis_proc.url,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_SERVICE_NAME="cronstream-under-test",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.port}",
        OTEL_BSP_SCHEDULE_DELAY="100",
    ).wait_healthy()
    try:
        request = urllib.request.Request(
            f"{service.url}/v1/workflows/w",
            data=b'{"target": {"type": "none"}}',
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 201
        wait_until(
            lambda: {"PUT /v1/workflows/{id}", "cronstream.append"} <= receiver.span_names(),
            20,
            "spans at the receiver",
        )
    finally:
        assert service.stop() == 0
    assert all(ct == "application/x-protobuf" for ct in receiver.content_types)
    resource = receiver.requests[0].resource_spans[0].resource
    names = {a.value.string_value for a in resource.attributes if a.key == "service.name"}
    assert names == {"cronstream-under-test"}
    # logs: one JSON object per line, with level, message and logger
    lines = [line for line in service.output().splitlines() if line.startswith("{")]
    assert lines, service.output()
    for line in lines:
        entry = json.loads(line)
        assert {"level", "message", "logger", "time"} <= set(entry)

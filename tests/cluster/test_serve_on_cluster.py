"""``cronstream serve`` (every role, tokens on) on a 3-node Redis Cluster through
``REDIS_URL=redis+cluster://``: fires, runs, views, the event stream, archive and verify,
with six partitions spread over the three nodes."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.cluster import RedisCluster

from service.cli.main import main
from service.domain.timeutil import parse_instant, to_rfc3339
from service.store.keys import Keyspace
from service.store.local_cluster import LocalCluster
from service.store.tokens import new_token
from tests.cluster.conftest import flush, node_of
from tests.fault.target_thread import ThreadTarget, thread_target
from tests.process import Service, wait_until

pytestmark = pytest.mark.slow

PARTITIONS = 6
KEYS = Keyspace(partitions=PARTITIONS)
SCHEDULES = [f"s{i}" for i in range(12)]
TOKEN = re.compile(r"cs_[0-9A-Za-z]{36}")
FIRE_TYPES = (b"ScheduleFired", b"FiresMissed", b"FireSkipped")


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


@pytest.fixture(scope="module")
def target() -> Iterator[ThreadTarget]:
    with thread_target() as started:
        yield started


@pytest.fixture(scope="module")
def served(
    cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, Api]]:
    flush(cluster)
    token = new_token()
    service = Service(
        tmp_path_factory.mktemp("serve") / "data",
        redis_url=cluster.url,
        insecure_dev=False,
        CRONSTREAM_PARTITIONS=str(PARTITIONS),
        CRONSTREAM_ADMIN_TOKEN=token,
        CRONSTREAM_LEASE_TTL_MS="2000",
        CRONSTREAM_RATE_LIMIT="100000/min",
    )
    try:
        service.wait_healthy(30)
        yield service, Api(service.url, token)
    finally:
        assert service.stop() == 0, service.output()


@pytest.fixture
def cli_env(cluster: LocalCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's direct commands, run in this process, talk to the cluster."""
    monkeypatch.setenv("REDIS_URL", cluster.url)
    monkeypatch.setenv("CRONSTREAM_PARTITIONS", str(PARTITIONS))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """The CLI in this process: exit code, and what it printed."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


@pytest.fixture(scope="module")
def scheduled(served: tuple[Service, Api], target: ThreadTarget) -> Api:
    """Workflow ``hook`` (a webhook to the local target) and schedules firing every
    second, spread over every partition."""
    _, api = served
    port = target.url.rsplit(":", 1)[1]
    workflow = {"target": {"type": "http", "url": f"http://localhost:{port}/hook"}}
    assert api.call("PUT", "/v1/workflows/hook", workflow)[0] in (200, 201)
    spec = {"cron": ["* * * * * *"]}
    for sid in SCHEDULES:
        body = {"id": sid, "workflow_id": "hook", "spec": spec}
        status, reply = api.call("POST", "/v1/schedules", body)
        assert status == 201, reply
    assert {KEYS.partition_of(sid) for sid in SCHEDULES} == set(range(PARTITIONS))
    return api


def fires_by_schedule(client: RedisCluster) -> dict[str, list[int]]:
    """Every nominal time each schedule fired, from the partitions' logs."""
    fired: dict[str, list[int]] = {}
    for p in range(PARTITIONS):
        for _eid, fields in client.xrange(KEYS.log(p)):
            if fields[b"type"] in FIRE_TYPES:
                assert fields[b"type"] == b"ScheduleFired", fields
                data = orjson.loads(fields[b"data"])
                nominal = parse_instant(str(data["nominal_time"]))
                fired.setdefault(fields[b"sid"].decode(), []).append(nominal)
    return fired


def succeeded(client: RedisCluster) -> dict[str, list[str]]:
    """The runs of each schedule that succeeded, from the partitions' logs."""
    runs: dict[str, list[str]] = {sid: [] for sid in SCHEDULES}
    for p in range(PARTITIONS):
        for _eid, fields in client.xrange(KEYS.log(p)):
            if fields[b"type"] == b"RunSucceeded":
                runs[fields[b"sid"].decode()].append(orjson.loads(fields[b"data"])["run_id"])
    return runs


def test_the_partitions_live_on_every_node(cluster_client: RedisCluster) -> None:
    nodes = {node_of(cluster_client, KEYS.log(p)) for p in range(PARTITIONS)}
    assert len(nodes) == 3


def test_schedules_fire_runs_run_and_views_follow(
    scheduled: Api, target: ThreadTarget, cluster_client: RedisCluster
) -> None:
    api = scheduled
    wait_until(
        lambda: all(len(ids) >= 2 for ids in succeeded(cluster_client).values()),
        15,
        "two succeeded runs of every schedule in the log",
    )

    runs = succeeded(cluster_client)

    def every_view_shows_the_runs() -> bool:
        for sid, run_ids in runs.items():
            status, view = api.call("GET", f"/v1/schedules/{sid}")
            assert status == 200, view
            if view["info"]["action_count"] < 2:
                return False
            for run_id in run_ids:
                status, run = api.call("GET", f"/v1/runs/{run_id}")
                if status != 200 or run["status"] != "succeeded":
                    return False
        return True

    wait_until(every_view_shows_the_runs, 15, "the schedule and run views")
    assert target.count("/hook") >= 2 * len(SCHEDULES)
    status, listing = api.call("GET", "/v1/schedules?limit=100")
    assert status == 200
    assert sorted(item["id"] for item in listing["items"]) == sorted(SCHEDULES)
    for sid, nominals in fires_by_schedule(cluster_client).items():
        assert len(nominals) == len(set(nominals)), f"{sid} fired a nominal time twice"
        assert sorted(nominals) == list(range(min(nominals), max(nominals) + 1, 1000)), sid


def test_the_event_stream_follows_every_partition(
    served: tuple[Service, Api], scheduled: Api
) -> None:
    """The stream replays each partition's log and then follows them all as they grow
    (each partition's log is on its node: one blocked read per partition)."""
    service, api = served
    request = urllib.request.Request(f"{service.url}/v1/events/stream?type=ScheduleFired")
    request.add_header("Authorization", f"Bearer {api.token}")
    since = int(time.time() * 1000) + 1000
    replayed: set[int] = set()
    followed: set[int] = set()
    deadline = time.monotonic() + 15
    with urllib.request.urlopen(request, timeout=10) as stream:
        while followed != set(range(PARTITIONS)) and time.monotonic() < deadline:
            line = stream.readline()
            if line.startswith(b"data: "):
                event = orjson.loads(line[6:])
                fresh = parse_instant(event["at"]) > since
                (followed if fresh else replayed).add(int(event["partition"]))
    assert replayed == set(range(PARTITIONS))
    assert followed == set(range(PARTITIONS))


def test_tokens_made_by_the_cli_are_checked_and_rate_limited_on_the_cluster(
    served: tuple[Service, Api], cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _, api = served
    code, out = run(capsys, "token", "create", "--scopes", "schedules:read", "--rate", "3/min")
    assert code == 0, out
    limited = Api(api.url, TOKEN.findall(out)[0])
    statuses = [limited.call("GET", "/v1/schedules")[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert Api(api.url, new_token()).call("GET", "/v1/schedules")[0] == 401


def test_archive_and_verify_on_the_cluster(
    scheduled: Api,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    cluster_client: RedisCluster,
) -> None:
    before = sum(cluster_client.xlen(KEYS.log(p)) for p in range(PARTITIONS))
    directory = tmp_path / "archive"
    cutoff = to_rfc3339(int(time.time() * 1000))
    code, out = run(capsys, "archive", "--before", cutoff, "--to", str(directory))
    assert code == 0, out
    after = sum(cluster_client.xlen(KEYS.log(p)) for p in range(PARTITIONS))
    assert after < before, "the archive trimmed the logs"
    code, out = run(capsys, "verify", "--archive", str(directory))
    assert code == 0, out


def test_readiness_and_metrics_read_every_partition(served: tuple[Service, Api]) -> None:
    service, api = served
    status, ready = api.call("GET", "/readyz")
    assert status == 200, ready
    assert {f"ticker.{p}" for p in range(PARTITIONS)} <= set(ready["checks"])
    request = urllib.request.Request(f"{service.url}/metrics")
    request.add_header("Authorization", f"Bearer {api.token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        text = answer.read().decode()
    for p in range(PARTITIONS):
        assert f'partition="{p}"' in text


def test_rebuild_replay_and_audit_on_the_cluster(
    scheduled: Api, cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    api = scheduled

    def actions() -> int:
        status, view = api.call("GET", f"/v1/schedules/{SCHEDULES[0]}")
        assert status == 200, view
        return int(view["info"]["action_count"])

    wait_until(lambda: actions() >= 2, 15, "two fires in the view")
    before = actions()
    code, out = run(capsys, "projections", "rebuild")
    assert code == 0 and f"rebuilt {PARTITIONS} partition(s)" in out, out
    assert actions() >= before  # dropped and built again from the logs
    code, out = run(capsys, "replay", "--at", to_rfc3339(int(time.time() * 1000)), "-o", "json")
    assert code == 0, out
    assert {item["id"] for item in json.loads(out)["items"]} == set(SCHEDULES)
    code, out = run(capsys, "audit", SCHEDULES[0])
    assert code == 0 and "ScheduleFired" in out, out


def test_migrate_takes_its_lock_on_the_cluster(
    served: tuple[Service, Api], cli_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(capsys, "migrate", "--wait", "5")
    assert code == 0, out

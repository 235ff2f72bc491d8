"""``cronstream migrate --partitions N`` on a 3-node Redis Cluster: a keyspace that has
fired on 2 partitions moves to 5, every event in its aggregate's new partition and in
order, the chains intact, and ``serve`` fires on from where it stopped, none twice."""

from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.cluster import RedisCluster

from service.cli.main import main
from service.domain.timeutil import parse_instant
from service.store.keys import Keyspace
from service.store.local_cluster import LocalCluster
from tests.cluster.conftest import flush
from tests.process import Service, wait_until

pytestmark = pytest.mark.slow

BEFORE, AFTER = Keyspace(partitions=2), Keyspace(partitions=5)
SCHEDULES = [f"s{i}" for i in range(8)]
MANIFEST = "workflows:\n  - id: wf\n    target: {type: none}\nschedules:\n" + "".join(
    f"  - id: {sid}\n    workflow_id: wf\n    spec: {{cron: ['* * * * * *']}}\n"
    for sid in SCHEDULES
)

Events = dict[str, list[tuple[bytes, bytes, bytes]]]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out + err


def events(client: RedisCluster, keys: Keyspace) -> tuple[Events, set[str]]:
    """Each aggregate's (type, v, data) in log order, and aggregates found outside
    their partition."""
    out: Events = defaultdict(list)
    misplaced = set()
    for p in range(keys.partitions):
        for _eid, fields in client.xrange(keys.log(p)):
            sid = fields[b"sid"].decode()
            out[sid].append((fields[b"type"], fields[b"v"], fields[b"data"]))
            if keys.partition_of(sid) != p:
                misplaced.add(sid)
    return dict(out), misplaced


def fired(history: Events) -> dict[str, list[int]]:
    return {
        sid: [
            parse_instant(str(orjson.loads(data)["nominal_time"]))
            for kind, _v, data in entries
            if kind == b"ScheduleFired"
        ]
        for sid, entries in history.items()
        if sid in SCHEDULES
    }


def view(service: Service, sid: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{service.url}/v1/schedules/{sid}", timeout=10) as answer:
        body: dict[str, Any] = json.loads(answer.read())
        return body


def test_a_keyspace_that_fired_moves_to_five_partitions_and_fires_on(
    cluster: LocalCluster,
    cluster_client: RedisCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flush(cluster)
    monkeypatch.setenv("REDIS_URL", cluster.url)
    monkeypatch.setenv("CRONSTREAM_PARTITIONS", "2")
    (tmp_path / "schedules.yaml").write_text(MANIFEST)
    code, out = run(capsys, "apply", str(tmp_path / "schedules.yaml"))
    assert code == 0, out
    assert {BEFORE.partition_of(s) for s in SCHEDULES} == {0, 1}

    def serve(partitions: int) -> Service:
        return Service(
            tmp_path / f"serve-{partitions}",
            redis_url=cluster.url,
            CRONSTREAM_PARTITIONS=str(partitions),
            CRONSTREAM_LEASE_TTL_MS="2000",
        ).wait_healthy(30)

    service = serve(2)
    try:
        wait_until(
            lambda: all(len(f) >= 2 for f in fired(events(cluster_client, BEFORE)[0]).values()),
            20,
            "two fires of every schedule on 2 partitions",
        )
    finally:
        assert service.stop() == 0, service.output()
    before, _ = events(cluster_client, BEFORE)

    monkeypatch.setenv("CRONSTREAM_PARTITIONS", "5")
    code, out = run(capsys, "migrate", "--partitions", "5")
    assert code == 0, out
    total = sum(len(entries) for entries in before.values())
    assert f"re-partitioned from 2 to 5 partitions: {total} entries moved" in out, out

    after, misplaced = events(cluster_client, AFTER)
    assert after == before and not misplaced  # every event, in its aggregate's order
    assert len({AFTER.partition_of(s) for s in SCHEDULES}) >= 3
    assert {cluster_client.keyslot(AFTER.log(p)) for p in range(5)} != {
        cluster_client.keyslot(AFTER.log(0))
    }  # the new partitions live in different slots
    code, out = run(capsys, "verify")
    assert code == 0 and "chain intact" in out, out

    last = {sid: max(times) for sid, times in fired(before).items()}
    service = serve(5)
    try:
        wait_until(
            lambda: all(
                max(times) > last[sid]
                for sid, times in fired(events(cluster_client, AFTER)[0]).items()
            ),
            20,
            "every schedule firing again on 5 partitions",
        )
        wait_until(
            lambda: all(view(service, sid)["info"]["action_count"] > len(fired(before)[sid])
                        for sid in SCHEDULES),
            20,
            "the views counting the fires before and after",
        )  # fmt: skip
    finally:
        assert service.stop() == 0, service.output()
    for sid, times in fired(events(cluster_client, AFTER)[0]).items():
        assert len(times) == len(set(times)), f"{sid} fired a time twice"
        assert times == sorted(times)

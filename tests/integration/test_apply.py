"""apply against a real Redis: create, update, delete, no-op, overrides, invalid files."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from service.audit.write_model import rebuild_write_model
from service.commands import SCHEDULES, CommandService, ProjectionWaiter, RequestContext
from service.domain import schedule as sched
from service.manifests import files
from service.manifests.files import InvalidFiles, load_files
from service.manifests.plan import Options
from service.manifests.reconcile import Report, apply, apply_paths, plan, read_manifest
from service.store.eventstore import EventStore
from service.store.keys import Keyspace
from service.store.namespaces import NamespaceQuotas

A = """\
workflows:
  - id: wf1
    target: {type: none}
schedules:
  - id: s1
    workflow_id: wf1
    spec: {cron: ["0 2 * * *"]}
  - id: s2
    workflow_id: wf1
    spec: {intervals: [{every: 5m}]}
    policy: {overlap: buffer_one}
"""
WRITTEN = [("workflow", "wf1"), ("schedule", "s1"), ("schedule", "s2")]
B = """\
schedules:
  - id: s3
    workflow_id: wf1
    spec: {cron: ["*/10 * * * *"]}
"""


async def log_length(redis: Redis, keys: Keyspace) -> int:
    return sum([int(await redis.xlen(keys.log(p))) for p in range(keys.partitions)])


async def run(
    redis: Redis, keys: Keyspace, path: Path, dry_run: bool = False, **options: Any
) -> Report:
    return await apply_paths(EventStore(redis, keys), [path], Options(**options), dry_run=dry_run)


def actions(report: Report) -> list[tuple[str, str, str]]:
    return [(c.action.value, c.kind, c.id) for c in report.plan.changes]


async def test_apply_creates_updates_prunes_and_a_second_apply_appends_nothing(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(A)
    (tmp_path / "b.yaml").write_text(B)
    dry = await run(redis, keys, tmp_path, dry_run=True)
    assert actions(dry) == [
        ("create", "workflow", "wf1"),
        ("create", "schedule", "s1"),
        ("create", "schedule", "s2"),
        ("create", "schedule", "s3"),
    ]
    assert await log_length(redis, keys) == 0
    report = await run(redis, keys, tmp_path)
    assert report.appended == 4 == await log_length(redis, keys)
    assert {s: dict(c) for s, c in report.counts().items()} == {
        "a.yaml": {"create": 3},
        "b.yaml": {"create": 1},
    }
    again = await run(redis, keys, tmp_path)
    assert again.plan.changes == [] and again.appended == 0
    assert await log_length(redis, keys) == 4
    assert dict(again.plan.unchanged) == {"a.yaml": 3, "b.yaml": 1}

    (tmp_path / "a.yaml").write_text(
        A.replace('"0 2 * * *"', '"30 2 * * *"') + "    paused: true\n"
    )
    (tmp_path / "b.yaml").unlink()
    report = await run(redis, keys, tmp_path)
    assert actions(report) == [("update", "schedule", "s1"), ("update", "schedule", "s2")]
    [s1, s2] = report.plan.changes
    assert [(d.field, d.before, d.after) for d in s1.diffs] == [
        ("spec.cron", ["0 2 * * *"], ["30 2 * * *"])
    ]
    assert [(d.field, d.before, d.after) for d in s2.diffs] == [("paused", False, True)]
    assert report.appended == 2  # s1 updated, s2 paused
    store = EventStore(redis, keys)
    snapshot, _ = await store.load("schedule", "s3")
    assert snapshot is not None and not snapshot["deleted"]  # no --prune: kept

    pruned = await run(redis, keys, tmp_path, prune=True)
    assert actions(pruned) == [("delete", "schedule", "s3")]
    assert [(a.change.id, a.version, a.error) for a in pruned.applied] == [("s3", 2, None)]
    assert pruned.plan.changes[0].reason == "pruned: no longer declared in b.yaml"
    snapshot, _ = await store.load("schedule", "s3")
    assert snapshot is not None and snapshot["deleted"]
    before = await log_length(redis, keys)
    final = await run(redis, keys, tmp_path, prune=True)
    assert final.plan.changes == [] and await log_length(redis, keys) == before


async def test_the_events_record_the_file_and_the_tool(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(A)
    await run(redis, keys, tmp_path)
    [event] = await EventStore(redis, keys).read_aggregate("schedule", "s2")
    assert event.type == "ScheduleCreated"
    assert event.data["managed"] == {"by": "apply", "source": "a.yaml"}
    assert event.meta["actor"] == "apply"


async def wait_for_view(
    api: TestClient, sid: str, check: Any, timeout_s: float = 5
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body: dict[str, Any] = await (await api.get(f"/v1/schedules/{sid}")).json()
        if check(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.02)


async def test_an_api_change_is_an_override_that_apply_reverts_unless_kept(
    api: TestClient, redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(A)
    await run(redis, keys, tmp_path)
    view = await wait_for_view(api, "s1", lambda v: v.get("source") == "a.yaml")
    assert (view["managed_by"], view["override"], view["divergence"]) == ("apply", False, {})

    patched = await api.patch("/v1/schedules/s1", json={"spec": {"cron": ["15 3 * * *"]}})
    assert patched.status == 200, await patched.text()
    assert (await api.post("/v1/schedules/s1/pause", json={"note": "incident"})).status == 200
    view = await wait_for_view(api, "s1", lambda v: v["paused"])
    assert view["override"] is True
    assert view["divergence"]["paused"] == {"file": False, "live": True}
    assert view["divergence"]["spec"]["file"]["cron"] == ["0 2 * * *"]
    assert view["divergence"]["spec"]["live"]["cron"] == ["15 3 * * *"]
    events = await EventStore(redis, keys).read_aggregate("schedule", "s1")
    assert [e.data.get("override") for e in events] == [None, True, True]

    length = await log_length(redis, keys)
    kept = await run(redis, keys, tmp_path, keep_overrides=True)
    assert actions(kept) == [("keep", "schedule", "s1")]
    assert await log_length(redis, keys) == length

    reverted = await run(redis, keys, tmp_path)
    assert actions(reverted) == [("update", "schedule", "s1")]
    assert reverted.plan.changes[0].reason == "reverts an override"
    view = await wait_for_view(api, "s1", lambda v: not v["override"])
    assert (view["override"], view["paused"], view["spec"]["cron"]) == (False, False, ["0 2 * * *"])


async def test_an_invalid_file_changes_nothing(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(A)
    (tmp_path / "z.yaml").write_text(B.replace("*/10 * * * *", "*/10 * * *"))
    with pytest.raises(InvalidFiles) as caught:
        await run(redis, keys, tmp_path)
    assert [str(e) for e in caught.value.errors] == [
        "z.yaml:4:19: spec.cron.0: expected 5 fields "
        "(minute hour day-of-month month day-of-week) or 6 with seconds first, got 4",
    ]
    (tmp_path / "z.yaml").write_text(B.replace("wf1", "missing"))
    with pytest.raises(InvalidFiles, match=r"z\.yaml:2:1: workflow_id: workflow 'missing'"):
        await run(redis, keys, tmp_path)
    assert await log_length(redis, keys) == 0


async def test_a_resource_changed_after_the_plan_is_decided_again(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(A)
    store = EventStore(redis, keys)
    await run(redis, keys, tmp_path)
    (tmp_path / "a.yaml").write_text(A.replace("buffer_one", "skip"))
    options = Options()
    planned = await plan(store, load_files([tmp_path]), options)
    assert actions(Report(planned)) == [("update", "schedule", "s2")]
    # someone pauses s2 between the plan and the apply: the append expects version 1
    commands = CommandService(store, ProjectionWaiter(redis, keys), wait_timeout_s=0)
    await commands.execute(SCHEDULES, "s2", sched.PauseSchedule("s2"), RequestContext())
    report = await apply(store, planned, options)
    assert report.failed == []
    state, version = await commands.load(SCHEDULES, "s2")
    assert state.config.policy.overlap == "skip" and state.status == "active"
    assert version == 4  # created, paused by hand, then changed and resumed as declared
    # the same plan again: the first append's key is found, nothing is appended twice
    length = await log_length(redis, keys)
    again = await apply(store, planned, options)
    assert again.failed == [] and await log_length(redis, keys) == length


async def test_apply_leaves_a_schedule_paused_by_a_failure_paused(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(A)
    store = EventStore(redis, keys)
    await run(redis, keys, tmp_path)
    commands = CommandService(store, ProjectionWaiter(redis, keys), wait_timeout_s=0)
    failed = sched.PauseSchedule("s1", "paused after run r1 failed", run_id="r1")
    await commands.execute(SCHEDULES, "s1", failed, RequestContext())
    report = await run(redis, keys, tmp_path)
    assert report.plan.changes == [] and report.plan.counts()["a.yaml"]["unchanged"] == 3
    state, _ = await commands.load(SCHEDULES, "s1")
    assert state.status == "paused" and sched.divergence(state) == {}


async def test_a_file_validated_before_is_not_parsed_again(
    redis: Redis, keys: Keyspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.yaml").write_text(A)
    (tmp_path / "b.yaml").write_text(B)
    store = EventStore(redis, keys)
    first = await read_manifest(store, [tmp_path])
    parsed: list[str] = []
    parse = files.parse_yaml

    def counting(text: bytes, source: str) -> Any:
        parsed.append(source)
        return parse(text, source)

    monkeypatch.setattr(files, "parse_yaml", counting)
    again = await read_manifest(store, [tmp_path])
    assert parsed == []
    assert [(d.id, d.data, d.line) for d in again.schedules] == [
        (d.id, d.data, d.line) for d in first.schedules
    ]
    (tmp_path / "b.yaml").write_text(B.replace("*/10", "*/20"))
    changed = await read_manifest(store, [tmp_path])
    assert parsed == ["b.yaml"]
    assert changed.schedules[-1].config.spec.cron == ["*/20 * * * *"]
    kept = [key async for key in redis.scan_iter(match=keys.validated_file("*"))]
    assert len(kept) == 2  # one per file, its last content


async def test_apply_over_several_partitions(redis: Redis, tmp_path: Path) -> None:
    keys = Keyspace("parts", 3)
    (tmp_path / "a.yaml").write_text(A + "".join(
        f"  - id: extra-{i}\n    workflow_id: wf1\n    spec: {{cron: ['{i} * * * *']}}\n"
        for i in range(20)
    ))  # fmt: skip
    report = await run(redis, keys, tmp_path)
    assert report.appended == 23 == await log_length(redis, keys)
    assert {keys.partition_of(f"extra-{i}") for i in range(20)} == {0, 1, 2}
    ids = ["extra-3", "nope", "s1", "extra-17", "wf1"]
    loaded = await EventStore(redis, keys).load_many("schedule", ids)
    assert [(s is not None, v) for s, v in loaded] == [
        (True, 1), (False, 0), (True, 1), (True, 1), (False, 0)
    ]  # fmt: skip
    assert loaded[3][0] is not None and loaded[3][0]["config"]["spec"]["cron"] == ["17 * * * *"]
    assert (await run(redis, keys, tmp_path)).appended == 0


async def test_the_default_namespace_quota_holds_for_files(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    await NamespaceQuotas(redis, keys).set("default", {"max_schedules": 2, "max_catchup": 10})
    (tmp_path / "a.yaml").write_text(A)
    with pytest.raises(InvalidFiles) as caught:  # catchup_max is 100 unless set
        await run(redis, keys, tmp_path)
    assert [str(e) for e in caught.value.errors] == [
        "a.yaml:5:1: policy.catchup_max: namespace default allows at most 10",
        "a.yaml:8:1: policy.catchup_max: namespace default allows at most 10",
    ]
    await NamespaceQuotas(redis, keys).set("default", {"max_catchup": None})
    (tmp_path / "b.yaml").write_text(B)
    with pytest.raises(InvalidFiles, match="namespace default allows 2; this apply would leave 3"):
        await run(redis, keys, tmp_path)
    assert await log_length(redis, keys) == 0
    (tmp_path / "b.yaml").unlink()
    assert (await run(redis, keys, tmp_path)).appended == 3


async def test_a_pruned_workflow_goes_with_its_stored_secrets(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(A)
    (tmp_path / "b.yaml").write_text("workflows:\n  - id: old\n    target: {type: none}\n")
    await run(redis, keys, tmp_path)
    secrets = keys.signing_secrets(keys.partition_of("old"), "old")
    await redis.hset(secrets, "s1", "sealed")  # as a stored secret would be
    (tmp_path / "b.yaml").unlink()
    report = await run(redis, keys, tmp_path, prune=True)
    assert actions(report) == [("delete", "workflow", "old")]
    assert await redis.exists(secrets) == 0
    snapshot, _ = await EventStore(redis, keys).load("workflow", "old")
    assert snapshot is not None and snapshot["deleted"]


async def test_the_write_model_rebuilt_from_the_log_is_the_one_apply_wrote(
    redis: Redis, keys: Keyspace, tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(A)
    store = EventStore(redis, keys)
    await run(redis, keys, tmp_path)
    commands = CommandService(store, ProjectionWaiter(redis, keys), wait_timeout_s=0)
    await commands.execute(SCHEDULES, "s1", sched.PauseSchedule("s1"), RequestContext())
    (tmp_path / "a.yaml").write_text(A.replace("buffer_one", "skip") + "    paused: true\n")
    await run(redis, keys, tmp_path, keep_overrides=True)

    async def states() -> dict[str, bytes]:
        names = [keys.state(0, kind, i) for kind, i in WRITTEN]
        return {name: await redis.hget(name, "state") for name in names}

    before = await states()
    await rebuild_write_model(redis, keys)
    assert await states() == before

"""Schedules that fire every second, and the check that each of their nominal seconds
fired exactly once: what the ticker fault tests (one Redis or a Redis Cluster) judge
leases moving between processes by."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from migrations.keyspace import check_keyspace
from service.commands import SCHEDULES, WORKFLOWS, CommandService, ProjectionWaiter, RequestContext
from service.connection import connect
from service.domain import schedule as sched
from service.domain import workflow as wf
from service.domain.spec import Spec
from service.domain.timeutil import parse_instant
from service.store.eventstore import EventStore
from service.store.keys import Keyspace


def create_schedules(url: str, keys: Keyspace, count: int) -> list[str]:
    """Workflow ``w`` (target none) and ``count`` schedules firing every second, catching
    up on every missed second, on a fresh keyspace (stamped, as serve would)."""

    async def create() -> list[str]:
        client = connect(url, 5.0)
        try:
            await check_keyspace(client, keys)
            commands = CommandService(
                EventStore(client, keys), ProjectionWaiter(client, keys), wait_timeout_s=0
            )
            workflow = wf.WorkflowConfig.model_validate({"target": {"type": "none"}})
            await commands.execute(WORKFLOWS, "w", wf.PutWorkflow("w", workflow), RequestContext())
            config = sched.ScheduleConfig.model_validate(
                {
                    "workflow_id": "w",
                    "spec": Spec(cron=["* * * * * *"]).model_dump(mode="json"),
                    "policy": {"catchup": "all", "overlap": "allow_all"},
                }
            )
            sids = [f"s{i:03d}" for i in range(count)]
            for sid in sids:
                await commands.execute(
                    SCHEDULES, sid, sched.CreateSchedule(sid, config), RequestContext()
                )
            return sids
        finally:
            await client.aclose()

    return asyncio.run(create())


def fires(client: Any, keys: Keyspace) -> dict[str, list[tuple[int, int]]]:
    """(nominal ms, epoch) of every fire, per schedule, from every partition's log (a
    synchronous client of one Redis or of a cluster); every fire of a schedule that
    catches up on everything is a ScheduleFired."""
    out: dict[str, list[tuple[int, int]]] = {}
    for p in range(keys.partitions):
        for _eid, fields in client.xrange(keys.log(p)):
            if fields[b"type"] in (b"ScheduleFired", b"FiresMissed", b"FireSkipped"):
                assert fields[b"type"] == b"ScheduleFired", fields
                data = orjson.loads(fields[b"data"])
                nominal = parse_instant(str(data["nominal_time"]))
                out.setdefault(fields[b"sid"].decode(), []).append((nominal, int(data["epoch"])))
    return out


def assert_exactly_once(client: Any, keys: Keyspace, sids: list[str]) -> set[int]:
    """Every nominal second up to each schedule's high-water mark fired once; return the
    fencing epochs the fires were made under."""
    records = fires(client, keys)
    epochs: set[int] = set()
    for sid in sids:
        nominals = [n for n, _ in records.get(sid, [])]
        assert len(nominals) == len(set(nominals)), f"{sid} fired a nominal time twice"
        hwm = int(client.hget(keys.hwm(keys.partition_of(sid)), sid) or 0)
        assert sorted(nominals) == list(range(min(nominals), hwm + 1, 1000)), f"{sid} lost one"
        epochs |= {e for _, e in records[sid]}
    return epochs

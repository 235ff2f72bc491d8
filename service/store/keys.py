"""Every Redis key, stream and group name cronstream uses, built in one place.

Keys of partition ``p`` carry the hash tag ``{p}`` so a Lua script or MULTI can
touch them together on a Redis Cluster.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

PROJECTION_VIEWS = "views"


def partition_of(aggregate_id: str, partitions: int) -> int:
    """A stable partition for an aggregate id (crc32, the same in every process)."""
    return zlib.crc32(aggregate_id.encode()) % partitions


@dataclass(frozen=True)
class Keyspace:
    prefix: str = "cs"
    partitions: int = 1

    def partition_of(self, aggregate_id: str) -> int:
        return partition_of(aggregate_id, self.partitions)

    def _p(self, p: int) -> str:
        return f"{self.prefix}:{{{p}}}"

    # keyspace-wide
    @property
    def meta(self) -> str:
        return f"{self.prefix}:meta"

    @property
    def migrate_lock(self) -> str:
        """Held (SET NX PX, a token) by the one ``cronstream migrate`` that may run.

        Its hash tag is the meta key's whole name, so both hash to one slot and
        lock.lua may touch them together on a Redis Cluster."""
        return f"{{{self.meta}}}:lock"

    def state_prefix(self, p: int, kind: str) -> str:
        """Start of every write-model hash of one kind (for a keyspace migration's SCAN)."""
        return self.state(p, kind, "")

    # write side
    def log(self, p: int) -> str:
        return f"{self._p(p)}:log"

    def state(self, p: int, kind: str, aggregate_id: str) -> str:
        return f"{self._p(p)}:state:{kind}:{aggregate_id}"

    def aggregate_events(self, p: int, kind: str, aggregate_id: str) -> str:
        return f"{self._p(p)}:events:{kind}:{aggregate_id}"

    def due(self, p: int) -> str:
        return f"{self._p(p)}:due"

    def chain(self, p: int) -> str:
        """The hash of the newest entry of the partition's log (the chain's head)."""
        return f"{self.log(p)}:chain"

    def wake(self, p: int) -> str:
        """Pub/sub channel the append script publishes to when a schedule is due now."""
        return f"{self.due(p)}:wake"

    def hwm(self, p: int) -> str:
        return f"{self._p(p)}:hwm"

    def lease(self, p: int, role: str = "") -> str:
        """The partition's lease: the ticker's, or (``role``) another role's, such as the
        projector processes' that divide the partitions among them."""
        return f"{self._p(p)}:lease:{role}" if role else f"{self._p(p)}:lease"

    def epoch(self, p: int, role: str = "") -> str:
        return f"{self._p(p)}:epoch:{role}" if role else f"{self._p(p)}:epoch"

    def queue(self, p: int) -> str:
        return f"{self._p(p)}:queue"

    def running(self, p: int, schedule_id: str) -> str:
        return f"{self._p(p)}:running:{schedule_id}"

    def buffer(self, p: int, schedule_id: str) -> str:
        return f"{self._p(p)}:buffer:{schedule_id}"

    def run_prefix(self, p: int) -> str:
        return f"{self._p(p)}:run:"

    def run(self, p: int, run_id: str) -> str:
        return self.run_prefix(p) + run_id

    def retries(self, p: int) -> str:
        return f"{self._p(p)}:retries"

    def dead(self, p: int) -> str:
        return f"{self._p(p)}:dead"

    def backfilled(self, p: int, schedule_id: str) -> str:
        return f"{self._p(p)}:backfilled:{schedule_id}"

    def archived(self, p: int) -> str:
        """Where the partition's archive lives and below which position its log was trimmed
        (written by the archive run's trim, read by everything that reads history)."""
        return f"{self._p(p)}:archived"

    def idem(self, p: int, key: str) -> str:
        return f"{self._p(p)}:idem:{key}"

    def op(self, p: int, token: str) -> str:
        """The reply of one script call, kept briefly so a retried call repeats nothing."""
        return f"{self._p(p)}:op:{token}"

    def signing_secrets(self, p: int, workflow_id: str) -> str:
        """A workflow's stored signing secrets, encrypted (service/store/secrets.py): kept
        outside the log, so never in an event, a view or an archive."""
        return f"{self._p(p)}:signing:{workflow_id}"

    def members(self, role: str) -> str:
        """The live processes of a role (``tickers``): a sorted set of owner tokens scored by
        their last heartbeat (Redis ms), under one hash tag so one script prunes and counts it."""
        return f"{self.prefix}:{{members}}:{role}"

    def validated_file(self, name_digest: str) -> str:
        """What validating a schedule file gave (service/manifests/files.py), by a digest
        of the file's name: one per file, its content's digest first, so ``apply`` parses
        a file once per change of it."""
        return f"{self.prefix}:{{files}}:validated:{name_digest}"

    # circuit breakers: one hash per target host, all under one hash tag so the
    # breaker script can keep the list of hosts in step on a Redis Cluster
    def breaker(self, host: str) -> str:
        return f"{self.prefix}:{{breaker}}:host:{host}"

    @property
    def breaker_hosts(self) -> str:
        return f"{self.prefix}:{{breaker}}:hosts"

    # API tokens: one hash per token id (never the token, only its SHA-256) and the
    # listing of ids, under one hash tag so tokens.lua can keep both in step
    def token(self, token_id: str) -> str:
        return f"{self.prefix}:{{auth}}:token:{token_id}"

    @property
    def tokens(self) -> str:
        return f"{self.prefix}:{{auth}}:tokens"

    # namespaces' quotas: one hash per namespace, and the set of namespaces that have one
    def namespace(self, name: str) -> str:
        return f"{self.prefix}:{{auth}}:namespace:{name}"

    @property
    def namespaces(self) -> str:
        return f"{self.prefix}:{{auth}}:namespaces"

    # notifications: channels, rules, what was told and the delivery queue, under one
    # hash tag so notify.lua's keys (and those it builds from a prefix) share a slot
    def notify(self, name: str) -> str:
        """``cs:{notify}:<name>``: channel:<id>, rule:<id>, channels, rules, records,
        record:<id>, queue, retries, seen:…, incident:…, count:…, cooldown:…, rate:…"""
        return f"{self.prefix}:{{notify}}:{name}"

    # read side
    def checkpoint(self, p: int, projection: str = PROJECTION_VIEWS) -> str:
        return f"{self._p(p)}:proj:{projection}"

    def projection_hold(self, p: int, projection: str = PROJECTION_VIEWS) -> str:
        """Held (a token, with a TTL) while a rebuild rewrites a projection's views in
        batches: apply.lua applies nothing meanwhile. Outside ``proj:``, whose keys are
        all checkpoint hashes."""
        return f"{self._p(p)}:hold:{projection}"

    def view_prefix(self, p: int, namespace: str = "view") -> str:
        return f"{self._p(p)}:{namespace}:"

    def view(self, p: int, name: str, namespace: str = "view") -> str:
        return f"{self._p(p)}:{namespace}:{name}"

"""Notification channels and rules, the record of what was told, and the delivery queue.

Everything lives under the ``{notify}`` hash tag (``Keyspace.notify``):

- ``channel:<id>`` (hash): ``config``, the channel without its secrets (JSON);
  ``sealed:<member>``, each secret member (``SECRET_FIELDS``) sealed with AES-GCM under
  ``CRONSTREAM_SECRET_KEY`` as stored signing secrets are (service/store/secrets.py);
  ``created``, ``updated``. ``channels`` (set) lists the ids.
- ``rule:<id>`` (hash: ``config``, ``created``, ``updated``); ``rules`` (set).
- ``record:<id>`` (hash) per decision about one incident and one channel, and
  ``records`` (zset by time) listing them, the newest ``MAX_RECORDS`` kept.
- ``queue`` (stream, group ``notifiers``) of records to send; ``retries`` (zset).
- ``version`` (counter): moved by every change of a channel or rule.
- ``seen:``, ``incident:``, ``count:``, ``cooldown:``, ``rate:`` keys of notify.lua.

Secrets never leave this module except to a delivery: views list which members are
stored, never their values.

Errors:

    ChannelNotFound, RuleNotFound (NotFound)   404
    ChannelSecretsUnprotected (Conflict)       409  a secret to store, and no usable key
    ChannelMissing (Conflict)                  409  a rule names a channel that does not exist
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from service.config import SECRET_KEY_VAR
from service.domain.namespaces import split
from service.domain.notifications import (
    SECRET_FIELDS,
    SEEN_TTL_MS,
    ChannelConfig,
    ChannelType,
    Incident,
    RuleConfig,
    in_namespace,
    windowed,
)
from service.errors import Conflict, NotFound
from service.store.boundary import translate_redis_errors
from service.store.keys import Keyspace
from service.store.scripts import load_script
from service.store.secrets import SecretBox, SecretUnreadable, SigningKeyMissing, new_secret

GROUP = "notifiers"
MAX_RECORDS = 10_000


class ChannelNotFound(NotFound):
    kind = "notification channel"


class RuleNotFound(NotFound):
    kind = "notification rule"


class ChannelSecretsUnprotected(Conflict):
    def __init__(self, channel_id: str, why: str) -> None:
        self.ident = channel_id
        super().__init__(f"channel {channel_id!r}: its secrets cannot be stored: {why}")


class ChannelMissing(Conflict):
    def __init__(self, rule_id: str, channel_id: str) -> None:
        self.ident = rule_id
        super().__init__(f"rule {rule_id!r}: channel {channel_id!r} does not exist")


@dataclass(frozen=True)
class Stored:
    """A channel or rule as stored: its config (a channel's without secrets) and times."""

    id: str
    config: dict[str, Any]
    created_ms: int
    updated_ms: int
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    channel: str
    record_id: str
    status: str
    reason: str


@dataclass(frozen=True)
class Admission:
    """notify.lua's answer: duplicate, counting, open (told before) or told."""

    outcome: str
    count: int = 0
    decisions: tuple[Decision, ...] = ()


def place_of(channel_id: str, member: str) -> str:
    """The associated data of a sealed channel secret: which channel's which member."""
    return f"cronstream:notify:{channel_id}:{member}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _decoded(raw: dict[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in raw.items()}


class NotificationStore:
    """Channels, rules, records and the queue. ``secret_key`` None: the environment's."""

    def __init__(self, redis: Redis, keys: Keyspace, secret_key: str | None = None) -> None:
        self.redis = redis
        self.keys = keys
        self._secret_key = secret_key
        self._script = load_script(redis, "service.store", "notify.lua")

    def key(self, name: str) -> str:
        return self.keys.notify(name)

    def _box(self, channel_id: str) -> SecretBox:
        text = self._secret_key if self._secret_key is not None else os.environ.get(SECRET_KEY_VAR)
        try:
            return SecretBox.from_text(text)
        except SigningKeyMissing:
            why = f"{SECRET_KEY_VAR} is not set on this server, or is not 32 bytes of base64"
            raise ChannelSecretsUnprotected(channel_id, why) from None

    # -- channels -------------------------------------------------------------------------

    @translate_redis_errors
    async def put_channel(
        self, channel_id: str, config: ChannelConfig, now_ms: int
    ) -> tuple[Stored, str | None]:
        """Store a channel; a webhook given no secret keeps its stored one or gets a new
        one, returned here (the one time it is shown)."""
        key = self.key(f"channel:{channel_id}")
        target = config.target.model_dump(mode="json", by_alias=True)
        made = None
        if ChannelType(config.target.type) is ChannelType.WEBHOOK and target.get("secret") is None:
            if not await self.redis.hexists(key, "sealed:secret"):
                made = target["secret"] = new_secret()
        sealed: dict[str, str] = {}
        for member in SECRET_FIELDS[ChannelType(config.target.type)]:
            value = target.pop(member, None)
            if value is not None:
                sealed[f"sealed:{member}"] = self._box(channel_id).seal(
                    value, place_of(channel_id, member)
                )
        await self._write_channel(key, channel_id, config, target, sealed, now_ms)
        stored = await self.channel(channel_id)
        assert stored is not None
        return stored, made

    async def _write_channel(
        self,
        key: str,
        channel_id: str,
        config: ChannelConfig,
        target: dict[str, Any],
        sealed: dict[str, str],
        now_ms: int,
    ) -> None:
        public = config.model_dump(mode="json", exclude={"target"}) | {"target": target}
        kept = [f"sealed:{m}" for m in SECRET_FIELDS[ChannelType(config.target.type)]]
        old = await self.redis.hgetall(key)
        stale = [f for f in map(_text, old) if f.startswith("sealed:") and f not in kept]
        async with self.redis.pipeline(transaction=True) as pipe:
            if stale:
                pipe.hdel(key, *stale)
            pipe.hsetnx(key, "created", now_ms)
            fields = {**sealed, "config": orjson.dumps(public).decode(), "updated": str(now_ms)}
            pipe.hset(key, mapping=cast(Any, fields))
            pipe.sadd(self.key("channels"), channel_id)
            pipe.incr(self.key("version"))
            await pipe.execute()

    @translate_redis_errors
    async def channel(self, channel_id: str) -> Stored | None:
        raw = _decoded(await self.redis.hgetall(self.key(f"channel:{channel_id}")))
        if "config" not in raw:
            return None
        members = tuple(sorted(k.removeprefix("sealed:") for k in raw if k.startswith("sealed:")))
        return Stored(
            channel_id,
            orjson.loads(raw["config"]),
            int(raw.get("created") or 0),
            int(raw.get("updated") or 0),
            members,
        )

    async def channels(self) -> list[Stored]:
        found = [await self.channel(cid) for cid in await self._ids("channels")]
        return [c for c in found if c is not None]

    async def _ids(self, name: str) -> list[str]:
        async with translate_redis_errors:
            return sorted(_text(m) for m in await self.redis.smembers(self.key(name)))

    @translate_redis_errors
    async def delete_channel(self, channel_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.key(f"channel:{channel_id}"))
            pipe.srem(self.key("channels"), channel_id)
            pipe.incr(self.key("version"))
            deleted, *_ = await pipe.execute()
        if not deleted:
            raise ChannelNotFound(channel_id)

    async def delivery_config(self, channel_id: str) -> ChannelConfig | None:
        """The channel with its secrets opened, for a delivery (None: deleted).

        Raises ChannelSecretsUnprotected without a usable key and SecretUnreadable for a
        secret this key cannot open: the delivery fails, sending nothing."""
        async with translate_redis_errors:
            raw = _decoded(await self.redis.hgetall(self.key(f"channel:{channel_id}")))
        if "config" not in raw:
            return None
        data = orjson.loads(raw["config"])
        for field, sealed in raw.items():
            if field.startswith("sealed:"):
                member = field.removeprefix("sealed:")
                try:
                    opened = self._box(channel_id).open(sealed, place_of(channel_id, member))
                except SecretUnreadable as exc:
                    raise SecretUnreadable(f"channel {channel_id!r} {member}: {exc}") from None
                data["target"][member] = opened
        return ChannelConfig.model_validate(data)

    # -- rules ----------------------------------------------------------------------------

    @translate_redis_errors
    async def put_rule(self, rule_id: str, config: RuleConfig, now_ms: int) -> Stored:
        """Store a rule as its namespace names things (bare ids); ``rule_id`` is internal."""
        known = set(await self._ids("channels"))
        for channel_id, internal in zip(
            config.channels, in_namespace(rule_id, config).channels, strict=True
        ):
            if internal not in known:
                raise ChannelMissing(split(rule_id)[1], channel_id)
        key = self.key(f"rule:{rule_id}")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "created", now_ms)
            pipe.hset(key, mapping={"config": config.model_dump_json(), "updated": now_ms})
            pipe.sadd(self.key("rules"), rule_id)
            pipe.incr(self.key("version"))
            await pipe.execute()
        stored = await self.rule(rule_id)
        assert stored is not None
        return stored

    @translate_redis_errors
    async def rule(self, rule_id: str) -> Stored | None:
        raw = _decoded(await self.redis.hgetall(self.key(f"rule:{rule_id}")))
        if "config" not in raw:
            return None
        return Stored(
            rule_id,
            orjson.loads(raw["config"]),
            int(raw.get("created") or 0),
            int(raw.get("updated") or 0),
        )

    async def rules(self) -> list[Stored]:
        found = [await self.rule(rid) for rid in await self._ids("rules")]
        return [r for r in found if r is not None]

    @translate_redis_errors
    async def version(self) -> int:
        """A counter every change of a channel or rule moves (readers reload on a change)."""
        return int(await self.redis.get(self.key("version")) or 0)

    async def rule_configs(self) -> list[tuple[str, RuleConfig]]:
        """Every rule with the ids it names made internal (as events and channels name them)."""
        rules = await self.rules()
        return [(r.id, in_namespace(r.id, RuleConfig.model_validate(r.config))) for r in rules]

    @translate_redis_errors
    async def delete_rule(self, rule_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.key(f"rule:{rule_id}"))
            pipe.srem(self.key("rules"), rule_id)
            pipe.incr(self.key("version"))
            deleted, *_ = await pipe.execute()
        if not deleted:
            raise RuleNotFound(rule_id)

    # -- admitting incidents --------------------------------------------------------------

    @translate_redis_errors
    async def admit(
        self,
        incident: Incident,
        rule: RuleConfig,
        rates: list[tuple[str, int]],
        fields: dict[str, str],
        now_ms: int | None = None,
    ) -> Admission:
        """Count the occurrence, open the incident once, and record and queue its sends."""
        occ, rid, ikey = incident.occurrence, incident.rule_id, incident.key
        keys = [
            self.key(f"seen:{rid}:{occ.ident}"),
            self.key(f"incident:{rid}:{ikey}"),
            self.key(f"count:{rid}:{ikey}"),
            self.key(f"cooldown:{rid}:{occ.subject}"),
            self.key("records"),
            self.key("queue"),
        ]
        args: list[str | bytes | int] = [
            "admit",
            self.key("record:"),
            self.key("rate:"),
            int(windowed(rule)),
            rule.threshold,
            rule.window,
            rule.cooldown,
            occ.at_ms,
            SEEN_TTL_MS,
            orjson.dumps(rates),
            orjson.dumps(fields),
            MAX_RECORDS,
            "" if now_ms is None else now_ms,
        ]
        return _admission(await self._script(keys=keys, args=args))

    # -- what was told --------------------------------------------------------------------

    @translate_redis_errors
    async def record(self, record_id: str) -> dict[str, str] | None:
        raw = _decoded(await self.redis.hgetall(self.key(f"record:{record_id}")))
        return raw or None

    @translate_redis_errors
    async def records_page(
        self, before: tuple[int, str] | None, batch: int
    ) -> list[tuple[int, dict[str, str]]]:
        """Up to ``batch`` records, newest first, older than the cursor ``before``."""
        top: str | int = "+inf" if before is None else before[0]
        raw: Any = await self.redis.zrevrangebyscore(
            self.key("records"), top, "-inf", start=0, num=batch + 64, withscores=True
        )
        ids: list[tuple[int, str]] = []
        for member, score in raw:
            at, rid = int(score), _text(member)
            if before is not None and at == before[0] and rid >= before[1]:
                continue
            ids.append((at, rid))
        ids = ids[:batch]
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, rid in ids:
                pipe.hgetall(self.key(f"record:{rid}"))
            found = await pipe.execute()
        return [(at, _decoded(h)) for (at, _), h in zip(ids, found, strict=True) if h]

    # -- the delivery queue ---------------------------------------------------------------

    @translate_redis_errors
    async def ensure_group(self) -> None:
        try:
            await self.redis.xgroup_create(self.key("queue"), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @translate_redis_errors
    async def take(self, consumer: str, count: int, block_ms: int) -> list[tuple[str, str]]:
        """Queue entries for this consumer: (entry id, record id)."""
        reply: Any = await self.redis.xreadgroup(
            GROUP, consumer, {self.key("queue"): ">"}, count=count, block=block_ms
        )
        return _entries(reply[0][1] if reply else [])

    @translate_redis_errors
    async def reclaim(self, consumer: str, idle_ms: int, count: int) -> list[tuple[str, str]]:
        """Entries another consumer took and left unfinished for ``idle_ms`` (it died)."""
        reply: Any = await self.redis.xautoclaim(
            self.key("queue"), GROUP, consumer, idle_ms, "0-0", count=count
        )
        return _entries(reply[1])

    @translate_redis_errors
    async def finish(
        self,
        entry_id: str,
        record_id: str,
        outcome: str,
        attempt: int,
        *,
        error: str = "",
        due_ms: int = 0,
        now_ms: int,
        code: int | None = None,
    ) -> str:
        keys = [self.key(f"record:{record_id}"), self.key("queue"), self.key("retries")]
        args: list[str | int] = [
            outcome,
            attempt,
            error,
            due_ms,
            now_ms,
            "" if code is None else code,
        ]
        return _text(await self._script(keys=keys, args=["finish", entry_id, GROUP, *args]))

    @translate_redis_errors
    async def requeue(self, now_ms: int, at_most: int = 100) -> int:
        keys = [self.key("retries"), self.key("queue")]
        return int(await self._script(keys=keys, args=["requeue", now_ms, at_most]))


def _entries(raw: list[Any]) -> list[tuple[str, str]]:
    out = []
    for entry_id, fields in raw:
        if not fields:
            continue  # deleted meanwhile
        record = fields.get(b"record", fields.get("record"))
        out.append((_text(entry_id), _text(record)))
    return out


def _admission(reply: list[Any]) -> Admission:
    outcome = _text(reply[0])
    count = int(reply[1]) if len(reply) > 1 else 0
    flat = [_text(v) for v in reply[2:]]
    decisions = tuple(
        Decision(channel=flat[i + 1], record_id=flat[i], status=flat[i + 2], reason=flat[i + 3])
        for i in range(0, len(flat), 4)
    )
    return Admission(outcome, count, decisions)

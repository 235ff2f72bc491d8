"""The ``http`` target: one webhook request per attempt, signed the Standard Webhooks way.

Headers sent on every attempt:
- ``webhook-id``: the run id, the same on every attempt, so receivers can dedupe;
- ``webhook-timestamp``: unix seconds of this attempt;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``
  when the workflow names a secret (``secret_env``), or one such entry per live stored
  secret, space-separated (``signing: stored``: during a rotation, old and new);
- ``cronstream-run-id``, ``-workflow-id``, ``-trigger``, ``-attempt`` and, for a run
  a schedule fired, ``cronstream-schedule-id``, ``-fire-id``, ``-nominal-time``;
- ``traceparent`` when the run carries one, and the workflow's own headers (which
  cannot override the ones above or ``content-type``).

The body is the run's input, or with ``body: envelope`` the fire around it
(``schedule_id``, ``workflow_id``, ``fire_id``, ``run_id``, ``nominal_time``,
``trigger``, ``attempt``, ``input``).

Signing fails closed: when the workflow names a secret that this worker does not
have, or one it cannot decode, nothing is sent and the attempt fails, retryably
(the variable can be set on a restart, or another worker may have it). So it does
when the workflow signs with stored secrets and the worker cannot read them: no
live secret, no usable ``CRONSTREAM_SECRET_KEY``, or a secret it cannot decrypt. A key is
``whsec_`` + standard base64, padded or not, decoded as the ``standardwebhooks``
libraries decode it; any other string is its own UTF-8 bytes.

Outcomes: 2xx succeeds; a 3xx is never followed and fails for good, naming the
``Location``; 408, 425, 429 and 5xx are retryable, with ``Retry-After`` honoured
on 429 and 503; any other 4xx is not retryable. Timeouts and transport errors (a
refused or reset connection, a server that hangs up or answers garbage) fail the
attempt, retryably.

Outbound safety: the session connects only where the outbound policy allows
(``guard.py``); a refused address fails the attempt for good, and nothing is sent.
What is read is bounded: at most ``EXCERPT_LIMIT`` bytes of a body (the rest is never
read: the connection is dropped), header lines and fields of at most 8190 bytes and
at most 128 headers (aiohttp's parser limits, set here so they stay so), and a
compressed body is inflated only as far as it is read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import math
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver

from service.clock import Clock, SystemClock
from service.config import outbound_policy_from_env
from service.domain.addresses import OutboundPolicy
from service.domain.workflow import HttpTarget as HttpTargetConfig
from service.domain.workflow import Signing
from service.worker.targets.base import (
    CANCELLED,
    EXCERPT_LIMIT,
    MAX_RETRY_AFTER_S,
    AttemptResult,
    RunContext,
    race_cancel,
    timed_out,
)
from service.worker.targets.guard import GuardedResolver, refusal_of, refuse_literals

log = logging.getLogger(__name__)

USER_AGENT = "cronstream"
SECRET_PREFIX = "whsec_"
RETRYABLE_STATUSES = frozenset({408, 425, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})
CONNECT_TIMEOUT_S = 10.0
MAX_LINE_BYTES = 8190  # a response's status line or header line
MAX_HEADERS = 128
_PROTOCOL_HEADERS = frozenset(
    {"content-type", "webhook-id", "webhook-timestamp", "webhook-signature", "traceparent"}
)
_OWN_HEADERS = "cronstream-"  # the fire's headers: a workflow's own cannot stand in for them


class SigningSecretError(ValueError):
    """A signing secret that cannot be used as a key (the message never quotes it)."""


@dataclass(frozen=True)
class StoredSigning:
    """What a worker read of a workflow's stored secrets for one delivery: the live
    secrets, newest first, or why it has none it can use (never quoting a secret)."""

    secrets: tuple[str, ...] = ()
    error: str | None = None


def make_session(
    limit: int = 100,
    outbound: OutboundPolicy | None = None,
    resolver: AbstractResolver | None = None,
) -> aiohttp.ClientSession:
    """A client session shared by every HTTP target of a worker process.

    Call it inside a running event loop and close it on shutdown. The pool is
    bounded (``limit`` connections in all); cookies are never kept, so one
    workflow's target cannot set cookies that another workflow's requests carry.
    Connections go only where ``outbound`` allows (None: as the environment says,
    ``CRONSTREAM_ALLOW_PRIVATE_TARGETS`` and ``CRONSTREAM_TARGET_ALLOWLIST``), to the
    addresses ``resolver`` (the system's by default) gave and the policy let through.
    """
    policy = outbound if outbound is not None else outbound_policy_from_env()
    connector = aiohttp.TCPConnector(
        limit=limit, ttl_dns_cache=60, resolver=GuardedResolver(policy, resolver)
    )
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"user-agent": USER_AGENT},
        trust_env=False,  # no proxy from the environment: connections go where checked
        raise_for_status=False,
        middlewares=(refuse_literals(policy),),
        max_line_size=MAX_LINE_BYTES,
        max_field_size=MAX_LINE_BYTES,
        max_headers=MAX_HEADERS,
    )


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decoded, else the string's UTF-8 bytes.

    The base64 is the standard alphabet, with or without ``=`` padding, as the
    ``standardwebhooks`` libraries read it. Anything else after the prefix is refused
    rather than used some other way: a receiver could not verify with it.
    """
    stripped = secret.strip()
    if not stripped.startswith(SECRET_PREFIX):
        return secret.encode()
    encoded = stripped.removeprefix(SECRET_PREFIX).rstrip("=")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise SigningSecretError(
            f"not base64 after {SECRET_PREFIX!r} (A-Z, a-z, 0-9, '+' and '/'; padding optional)"
        ) from None
    if not key:
        raise SigningSecretError(f"no key after {SECRET_PREFIX!r}")
    return key


def resolve_key(config: HttpTargetConfig, secret: str | None) -> tuple[bytes | None, str | None]:
    """The signing key, or why there is none although the workflow names a secret.

    ``secret`` is the value found for ``config.secret_env`` (None: not set); without
    a ``secret_env``, a given secret signs alone and no secret means no signature.
    """
    if not secret:
        if config.secret_env is None:
            return None, None
        state = "empty" if secret == "" else "not set"
        return None, f"signing secret {config.secret_env} is {state} on this worker"
    try:
        return signing_key(secret), None
    except SigningSecretError as exc:
        where = config.secret_env or "the secret"
        return None, f"signing secret {where} is unusable: {exc}"


def resolve_keys(
    config: HttpTargetConfig, secret: str | None, stored: StoredSigning | None
) -> tuple[tuple[bytes, ...], str | None]:
    """Every key a delivery is signed with, or why it cannot be signed as the workflow
    says: the ``secret_env`` secret, or with ``signing: stored`` each live stored one."""
    if config.signing_source is not Signing.STORED:
        key, error = resolve_key(config, secret)
        return ((key,) if key is not None else ()), error
    if stored is None or stored.error is not None:
        why = stored.error if stored is not None else "they were not read"
        return (), f"stored signing secrets unusable: {why}"
    if not stored.secrets:
        return (), "no live stored signing secret (POST /v1/workflows/{id}/signing-secrets)"
    try:
        return tuple(signing_key(s) for s in stored.secrets), None
    except SigningSecretError as exc:
        return (), f"a stored signing secret is unusable: {exc}"


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature`` value for one request."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def parse_retry_after(value: str | None, now_ms: int) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP-date), at most a day."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:
            return None
        seconds = moment.timestamp() - now_ms / 1000
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


async def read_excerpt(response: aiohttp.ClientResponse, limit: int = EXCERPT_LIMIT) -> str:
    """The first ``limit`` bytes of the body as text; the rest is never read."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await response.content.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


def classify(
    status: int, excerpt: str, location: str | None, retry_after: float | None
) -> AttemptResult:
    if 200 <= status < 300:
        return AttemptResult.success(status, excerpt)
    if 300 <= status < 400:
        where = f" to {location}" if location else " without a Location"
        return AttemptResult.failure(
            f"HTTP {status}: redirect{where} not followed",
            retryable=False,
            status=status,
            body_excerpt=excerpt,
        )
    retryable = status in RETRYABLE_STATUSES or status >= 500 or status < 200
    return AttemptResult.failure(
        f"HTTP {status}",
        retryable=retryable,
        status=status,
        body_excerpt=excerpt,
        retry_after_s=retry_after if status in RETRY_AFTER_STATUSES else None,
    )


class HttpTarget:
    """Calls a workflow's webhook; never raises out of ``attempt``."""

    def __init__(
        self,
        config: HttpTargetConfig,
        session: aiohttp.ClientSession,
        secret: str | None = None,
        clock: Clock | None = None,
        stored: StoredSigning | None = None,
    ) -> None:
        self.config = config
        self.session = session
        self._keys, self.signing_error = resolve_keys(config, secret, stored)
        self.clock: Clock = clock or SystemClock()
        self._headers = {
            name: value
            for name, value in config.headers.items()
            if name.lower() not in _PROTOCOL_HEADERS and not name.lower().startswith(_OWN_HEADERS)
        }

    def timeout_s(self, ctx: RunContext) -> float:
        """The attempt's limit: the run's, shortened by the target's own timeout if set."""
        if self.config.timeout is None:
            return ctx.timeout_s
        return min(ctx.timeout_s, self.config.timeout / 1000)

    def payload(self, ctx: RunContext) -> Any:
        """What the body carries: the input, or the envelope that names the fire."""
        if self.config.body == "input":
            return ctx.input
        return {
            "schedule_id": ctx.schedule_id,
            "workflow_id": ctx.workflow_id,
            "fire_id": ctx.fire_id,
            "run_id": ctx.run_id,
            "nominal_time": ctx.nominal_time,
            "trigger": ctx.trigger,
            "attempt": ctx.attempt,
            "input": ctx.input,
        }

    def headers(self, ctx: RunContext, body: bytes) -> dict[str, str]:
        timestamp = self.clock.now_ms() // 1000
        headers = dict(self._headers)
        headers["content-type"] = "application/json"
        headers["webhook-id"] = ctx.run_id
        headers["webhook-timestamp"] = str(timestamp)
        if self._keys:
            headers["webhook-signature"] = " ".join(
                sign(key, ctx.run_id, timestamp, body) for key in self._keys
            )
        headers.update(fire_headers(ctx))
        if ctx.traceparent:
            headers["traceparent"] = ctx.traceparent
        return headers

    async def attempt(self, ctx: RunContext) -> AttemptResult:
        if self.signing_error is not None:
            return self._unsigned(ctx, self.signing_error)
        try:
            body = orjson.dumps(self.payload(ctx))
        except TypeError as exc:
            return AttemptResult.failure(f"input is not JSON: {exc}", retryable=False)
        timeout_s = self.timeout_s(ctx)
        request = asyncio.create_task(self._send(ctx, body, timeout_s))
        try:
            result = await race_cancel(ctx, request)
        except Exception as exc:  # never let one request take the worker down
            return failure_of(exc, timeout_s)
        return CANCELLED if result is None else result

    def _unsigned(self, ctx: RunContext, reason: str) -> AttemptResult:
        """Fail closed: a delivery the workflow wants signed is never sent unsigned.

        Retryable, because the cure is in a worker's environment, not in the run: a
        worker restarted with the variable, or another worker that has it, can deliver
        the retry; the workflow's retry policy bounds the attempts.
        """
        log.error(
            "run %s of workflow %s: %s; nothing was sent",
            ctx.run_id,
            ctx.workflow_id,
            reason,
            extra={"run_id": ctx.run_id, "workflow_id": ctx.workflow_id},
        )
        return AttemptResult.failure(f"{reason}; nothing was sent", retryable=True)

    async def _send(self, ctx: RunContext, body: bytes, timeout_s: float) -> AttemptResult:
        timeout = aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=min(CONNECT_TIMEOUT_S, timeout_s), sock_read=timeout_s
        )
        async with self.session.request(
            self.config.method,
            self.config.url,
            data=body,
            headers=self.headers(ctx, body),
            allow_redirects=False,
            timeout=timeout,
        ) as response:
            excerpt = await read_excerpt(response)
            if not response.content.at_eof():
                response.close()  # unread body: drop the connection rather than drain it
            retry_after = parse_retry_after(
                response.headers.get("retry-after"), self.clock.now_ms()
            )
            return classify(response.status, excerpt, response.headers.get("location"), retry_after)


def failure_of(exc: Exception, timeout_s: float) -> AttemptResult:
    """What an error of the request means for the attempt.

    A refused address fails for good: the same URL resolves to the same kind of
    address on a retry, and the cure is the operator's (the policy), not the run's.
    """
    refused = refusal_of(exc)
    if refused is not None:
        return AttemptResult.failure(str(refused), retryable=False, refused=True)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return timed_out(timeout_s)
    if isinstance(exc, aiohttp.InvalidURL):
        return AttemptResult.failure(f"invalid URL: {exc}", retryable=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return AttemptResult.failure(f"cannot connect: {exc}", retryable=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return AttemptResult.failure("server closed the connection", retryable=True)
    if isinstance(exc, aiohttp.ClientResponseError):  # the response could not be parsed
        return AttemptResult.failure(
            f"invalid HTTP response: {_oneline(exc.message)}", retryable=True
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return AttemptResult.failure(f"response body cut off: {_oneline(str(exc))}", retryable=True)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return AttemptResult.failure(_describe(exc), retryable=True)
    return AttemptResult.failure(f"unexpected: {_describe(exc)}", retryable=True)


def fire_headers(ctx: RunContext) -> dict[str, str]:
    """The headers that say which fire, run and attempt a delivery is; a run no schedule
    fired has no schedule, fire or nominal time, and goes without those."""
    headers = {
        "cronstream-schedule-id": ctx.schedule_id,
        "cronstream-workflow-id": ctx.workflow_id,
        "cronstream-run-id": ctx.run_id,
        "cronstream-fire-id": ctx.fire_id,
        "cronstream-nominal-time": ctx.nominal_time,
        "cronstream-trigger": ctx.trigger,
        "cronstream-attempt": str(ctx.attempt),
    }
    return {name: value for name, value in headers.items() if value}


def _oneline(text: str) -> str:
    return " ".join(text.split())[:500]


def _describe(exc: BaseException) -> str:
    text = _oneline(str(exc))
    name = type(exc).__name__
    return f"{name}: {text}"[:500] if text else name

"""The ``http`` target: one webhook request per attempt, signed the Standard Webhooks way.

Headers sent on every attempt:
- ``webhook-id``: the run id, the same on every attempt, so receivers can dedupe;
- ``webhook-timestamp``: unix seconds of this attempt;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``
  when the workflow has a secret (``whsec_<base64>``, or any other string taken as
  raw UTF-8 key bytes);
- ``traceparent`` when the run carries one, and the workflow's own headers (which
  cannot override the ones above or ``content-type``).

Outcomes: 2xx succeeds; a 3xx is never followed and fails for good, naming the
``Location``; 408, 425, 429 and 5xx are retryable, with ``Retry-After`` honoured
on 429 and 503; any other 4xx is not retryable. Timeouts and transport errors (a
refused or reset connection, a server that hangs up or answers garbage) fail the
attempt, retryably. At most ``EXCERPT_LIMIT`` bytes of a body are ever read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import math
from email.utils import parsedate_to_datetime

import aiohttp
import orjson

from service.clock import Clock, SystemClock
from service.domain.workflow import HttpTarget as HttpTargetConfig
from service.worker.targets.base import (
    CANCELLED,
    EXCERPT_LIMIT,
    MAX_RETRY_AFTER_S,
    AttemptResult,
    RunContext,
    race_cancel,
    timed_out,
)

USER_AGENT = "cronstream"
RETRYABLE_STATUSES = frozenset({408, 425, 429})
RETRY_AFTER_STATUSES = frozenset({429, 503})
CONNECT_TIMEOUT_S = 10.0
_PROTOCOL_HEADERS = frozenset(
    {"content-type", "webhook-id", "webhook-timestamp", "webhook-signature", "traceparent"}
)


def make_session(limit: int = 100) -> aiohttp.ClientSession:
    """A client session shared by every HTTP target of a worker process.

    Call it inside a running event loop and close it on shutdown. The pool is
    bounded (``limit`` connections in all); cookies are never kept, so one
    workflow's target cannot set cookies that another workflow's requests carry.
    """
    connector = aiohttp.TCPConnector(limit=limit, ttl_dns_cache=60)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"user-agent": USER_AGENT},
        trust_env=False,
        raise_for_status=False,
    )


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decoded, else the raw string's bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            pass  # not base64 after all: use it as it stands, like any other string
    return secret.encode()


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
    ) -> None:
        self.config = config
        self.session = session
        self._key = signing_key(secret) if secret else None
        self.clock: Clock = clock or SystemClock()
        self._headers = {
            name: value
            for name, value in config.headers.items()
            if name.lower() not in _PROTOCOL_HEADERS
        }

    def timeout_s(self, ctx: RunContext) -> float:
        """The attempt's limit: the run's, shortened by the target's own timeout if set."""
        if self.config.timeout is None:
            return ctx.timeout_s
        return min(ctx.timeout_s, self.config.timeout / 1000)

    def headers(self, ctx: RunContext, body: bytes) -> dict[str, str]:
        timestamp = self.clock.now_ms() // 1000
        headers = dict(self._headers)
        headers["content-type"] = "application/json"
        headers["webhook-id"] = ctx.run_id
        headers["webhook-timestamp"] = str(timestamp)
        if self._key is not None:
            headers["webhook-signature"] = sign(self._key, ctx.run_id, timestamp, body)
        if ctx.traceparent:
            headers["traceparent"] = ctx.traceparent
        return headers

    async def attempt(self, ctx: RunContext) -> AttemptResult:
        try:
            body = orjson.dumps(ctx.input)
        except TypeError as exc:
            return AttemptResult.failure(f"input is not JSON: {exc}", retryable=False)
        timeout_s = self.timeout_s(ctx)
        request = asyncio.create_task(self._send(ctx, body, timeout_s))
        try:
            result = await race_cancel(ctx, request)
        except (TimeoutError, aiohttp.ServerTimeoutError):
            return timed_out(timeout_s)
        except aiohttp.InvalidURL as exc:
            return AttemptResult.failure(f"invalid URL: {exc}", retryable=False)
        except aiohttp.ClientConnectorError as exc:
            return AttemptResult.failure(f"cannot connect: {exc}", retryable=True)
        except aiohttp.ServerDisconnectedError:
            return AttemptResult.failure("server closed the connection", retryable=True)
        except aiohttp.ClientResponseError as exc:  # the response could not be parsed
            return AttemptResult.failure(
                f"invalid HTTP response: {_oneline(exc.message)}", retryable=True
            )
        except aiohttp.ClientPayloadError as exc:
            return AttemptResult.failure(
                f"response body cut off: {_oneline(str(exc))}", retryable=True
            )
        except (aiohttp.ClientError, OSError) as exc:
            return AttemptResult.failure(_describe(exc), retryable=True)
        except Exception as exc:  # never let one request take the worker down
            return AttemptResult.failure(f"unexpected: {_describe(exc)}", retryable=True)
        return CANCELLED if result is None else result

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


def _oneline(text: str) -> str:
    return " ".join(text.split())[:500]


def _describe(exc: BaseException) -> str:
    text = _oneline(str(exc))
    name = type(exc).__name__
    return f"{name}: {text}"[:500] if text else name

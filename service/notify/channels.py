"""Sending one notification over one channel: a signed webhook, a Slack-compatible
webhook, or mail over SMTP. A sender never raises: it answers an ``AttemptResult``
saying whether a retry could help.

Webhooks go through the workers' HTTP session (``make_session``), so the outbound guard
(``service/worker/targets/guard.py``) refuses the addresses the policy refuses, and a
generic webhook is signed as workflows' HTTP targets are (Standard Webhooks:
``webhook-id`` is the record's id, the same on every attempt, so a receiver can
dedupe). Mail is sent with ``smtplib`` in a thread, to an address checked against the
same policy before connecting (the connection goes to that address, not to a name
resolved again).
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aiohttp
import orjson

from service.domain.addresses import OutboundPolicy
from service.domain.notifications import ChannelConfig, EmailChannel, SlackChannel, WebhookChannel
from service.worker.targets.base import AttemptResult
from service.worker.targets.guard import TargetRefused
from service.worker.targets.http import (
    SigningSecretError,
    classify,
    failure_of,
    read_excerpt,
    sign,
    signing_key,
)

SMTP_TRANSIENT = range(400, 500)


@dataclass(frozen=True)
class Message:
    """What is told: the record's id (stable across attempts), one line, and the details."""

    record_id: str
    summary: str
    payload: dict[str, Any]


Clock = Callable[[], int]


class Senders:
    """The senders of a notifier process: one HTTP session, one outbound policy."""

    def __init__(
        self, session: aiohttp.ClientSession, policy: OutboundPolicy, now_ms: Clock
    ) -> None:
        self.session = session
        self.policy = policy
        self.now_ms = now_ms

    async def send(self, channel: ChannelConfig, message: Message) -> AttemptResult:
        timeout_s = float(channel.timeout_s)
        target = channel.target
        try:
            work: Awaitable[AttemptResult]
            if isinstance(target, WebhookChannel):
                work = self._webhook(target, message, timeout_s)
            elif isinstance(target, SlackChannel):
                body = orjson.dumps({"text": message.summary})
                work = self._post(target.url, body, {"content-type": "application/json"}, timeout_s)
            else:
                work = asyncio.to_thread(send_mail, target, message, self.policy, timeout_s)
            return await asyncio.wait_for(work, timeout_s + 1)
        except Exception as exc:  # one channel's trouble never takes the loop down
            return failure_of(exc, timeout_s)

    async def _webhook(
        self, target: WebhookChannel, message: Message, timeout_s: float
    ) -> AttemptResult:
        body = orjson.dumps(message.payload)
        timestamp = self.now_ms() // 1000
        headers = {
            "content-type": "application/json",
            "webhook-id": message.record_id,
            "webhook-timestamp": str(timestamp),
        }
        if target.secret:
            try:
                key = signing_key(target.secret)
            except SigningSecretError as exc:
                return AttemptResult.failure(
                    f"signing secret unusable: {exc}; nothing was sent", retryable=False
                )
            headers["webhook-signature"] = sign(key, message.record_id, timestamp, body)
        return await self._post(target.url, body, headers, timeout_s)

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> AttemptResult:
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with self.session.post(
            url, data=body, headers=headers, allow_redirects=False, timeout=timeout
        ) as response:
            excerpt = await read_excerpt(response, 500)
            if not response.content.at_eof():
                response.close()
            return classify(response.status, excerpt, response.headers.get("location"), None)


def mail_of(target: EmailChannel, message: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = message.summary[:200]
    mail["From"] = target.sender
    mail["To"] = ", ".join(target.to)
    mail["Message-ID"] = f"<{message.record_id}@cronstream>"
    lines = [message.summary, ""]
    for name, value in message.payload.items():
        if name != "summary" and value not in (None, "", {}):
            lines.append(
                f"{name}: {orjson.dumps(value).decode() if isinstance(value, dict) else value}"
            )
    mail.set_content("\n".join(lines) + "\n")
    return mail


def checked_address(host: str, port: int, policy: OutboundPolicy) -> str:
    """The first address of ``host`` the outbound policy allows (TargetRefused if none)."""
    literal = policy.check_host(host)
    if literal is not None:
        raise TargetRefused(literal)
    found = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    refusal = None
    for _, _, _, _, sockaddr in found:
        address = str(sockaddr[0])
        refusal = policy.check(address, host)
        if refusal is None:
            return address
    if refusal is not None:
        raise TargetRefused(refusal)
    raise OSError(f"{host} has no address")


def send_mail(
    target: EmailChannel, message: Message, policy: OutboundPolicy, timeout_s: float
) -> AttemptResult:
    """Blocking: run in a thread. 4xx SMTP replies are retryable, 5xx are not."""
    try:
        address = checked_address(target.host, target.port, policy)
        with smtplib.SMTP(timeout=timeout_s) as smtp:
            smtp.connect(address, target.port)
            smtp._host = target.host  # type: ignore[attr-defined]  # STARTTLS checks this name
            if target.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if target.username is not None:
                smtp.login(target.username, target.password or "")
            smtp.send_message(mail_of(target, message))
        return AttemptResult.success(250)
    except TargetRefused as exc:
        return AttemptResult.failure(str(exc), retryable=False, refused=True)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        retryable = all(code in SMTP_TRANSIENT for code in codes)
        return AttemptResult.failure(
            f"recipients refused: {sorted(exc.recipients)}",
            retryable=retryable,
            status=codes[0] if codes else None,
        )
    except smtplib.SMTPResponseException as exc:
        text = _text(exc.smtp_error)
        return AttemptResult.failure(
            f"SMTP {exc.smtp_code}: {' '.join(text.split())[:300]}",
            retryable=exc.smtp_code in SMTP_TRANSIENT,
            status=exc.smtp_code,
        )
    except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS or AUTH: the channel's setup
        return AttemptResult.failure(f"SMTP: {exc}"[:300], retryable=False)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        return AttemptResult.failure(f"SMTP: {type(exc).__name__}: {exc}"[:300], retryable=True)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

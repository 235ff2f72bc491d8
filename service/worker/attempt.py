"""One attempt of a run: pick the workflow's target, ask the circuit breaker, call it.

The attempt runs as its own task (``InFlight.task``) so a terminate request can
cancel it; a cancellation that was not asked for (shutdown) goes on up. With tracing
on, the attempt is a consumer span joined to the run's trace, and an HTTP call a
client span inside it whose ``traceparent`` the target sends.
"""

from __future__ import annotations

import asyncio
import os

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver
from opentelemetry.trace import SpanKind

from service import telemetry
from service.domain import namespaces
from service.domain.addresses import OutboundPolicy
from service.domain.workflow import HttpTarget as HttpTargetConfig
from service.domain.workflow import PythonTarget as PythonTargetConfig
from service.domain.workflow import Signing, WorkflowConfig
from service.store.keys import Keyspace
from service.store.secrets import SecretUnreadable, SigningKeyMissing, SigningSecrets
from service.worker.breaker import CircuitBreaker, breaker_host
from service.worker.state import InFlight
from service.worker.targets.base import TERMINATED, AttemptResult, RunContext, Target
from service.worker.targets.http import HttpTarget, StoredSigning, make_session
from service.worker.targets.python import PythonTarget


class Attempts:
    def __init__(
        self,
        keys: Keyspace,
        breaker: CircuitBreaker,
        outbound: OutboundPolicy | None = None,
        resolver: AbstractResolver | None = None,
        signing: SigningSecrets | None = None,
    ) -> None:
        self.keys = keys
        self.breaker = breaker
        self.signing = signing  # None: stored signing secrets cannot be read here
        self.outbound = outbound  # None: as the environment says
        self.resolver = resolver  # None: the system's
        self.session: aiohttp.ClientSession | None = None  # set while the worker runs

    def open(self, limit: int) -> aiohttp.ClientSession:
        """The HTTP targets' session, guarded by the outbound policy (close it on shutdown)."""
        self.session = make_session(limit, self.outbound, self.resolver)
        return self.session

    async def run(
        self, flight: InFlight, workflow: WorkflowConfig | None, traceparent: str | None
    ) -> AttemptResult:
        """The attempt's result, inside a span joined to the run's trace when tracing."""
        if not telemetry.tracing():
            return await self._attempt(flight, workflow)
        ctx = flight.ctx
        with telemetry.span(
            "run.attempt",
            kind=SpanKind.CONSUMER,
            parent=traceparent,
            attributes={
                "cronstream.run_id": ctx.run_id,
                "cronstream.schedule_id": ctx.schedule_id,
                "cronstream.nominal_time": ctx.nominal_time,
                "cronstream.attempt": ctx.attempt,
                "cronstream.trigger": ctx.trigger,
                "messaging.system": "redis",
                "messaging.operation.type": "process",
                "messaging.destination.name": self.keys.queue(flight.partition),
                "messaging.message.id": flight.entry_id,
            },
        ) as span:
            ctx.traceparent = telemetry.current_traceparent()
            result = await self._attempt(flight, workflow)
            if span is not None:
                span.set_attribute("cronstream.outcome", "ok" if result.ok else "error")
                if result.error:
                    span.set_attribute("error.type", result.error[:100])
        return result

    async def _attempt(self, flight: InFlight, workflow: WorkflowConfig | None) -> AttemptResult:
        if workflow is None:
            return AttemptResult.failure(
                f"workflow {flight.ctx.workflow_id!r} does not exist", retryable=False
            )
        stored = await self._stored(flight.ctx.workflow_id, workflow)
        target, host = self._target(workflow, stored)
        # each namespace has its own breaker per host: one tenant's failures neither
        # stop another's calls nor tell it anything of that host
        breaker = (
            None
            if host is None
            else namespaces.qualify(namespaces.namespace_of(flight.ctx.workflow_id), host)
        )
        if breaker is not None and not await self.breaker.allow(breaker):
            return AttemptResult.failure(f"circuit open for {host}", retryable=True)
        if telemetry.tracing() and isinstance(workflow.target, HttpTargetConfig):
            result = await self._traced_http(flight, target, workflow.target)
        else:
            result = await self._call(flight, target)
        # a refused address was never called: its host is not to blame
        if breaker is not None and not result.stopped and not result.refused:
            await self.breaker.record(breaker, result.ok)
        return result

    async def _call(self, flight: InFlight, target: Target) -> AttemptResult:
        flight.task = asyncio.create_task(target.attempt(flight.ctx))
        try:
            return await flight.task
        except asyncio.CancelledError:
            if not flight.terminated:
                raise
            return TERMINATED

    async def _traced_http(
        self, flight: InFlight, target: Target, config: HttpTargetConfig
    ) -> AttemptResult:
        """The outbound request as a client span; the target sends its traceparent."""
        parsed = yarl.URL(config.url)
        with telemetry.span(
            config.method,
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": config.method,
                "url.full": config.url,
                "server.address": parsed.host,
                "server.port": parsed.port,
            },
        ) as client_span:
            flight.ctx.traceparent = telemetry.current_traceparent()
            result = await self._call(flight, target)
            if client_span is not None and result.status is not None:
                client_span.set_attribute("http.response.status_code", result.status)
        return result

    async def _stored(self, workflow_id: str, workflow: WorkflowConfig) -> StoredSigning | None:
        """The workflow's live stored secrets when it signs with them (read per attempt,
        so a rotation or a revoke counts from the next delivery on)."""
        config = workflow.target
        if not isinstance(config, HttpTargetConfig) or config.signing_source is not Signing.STORED:
            return None
        if self.signing is None:
            return StoredSigning(error="this worker reads no stored secrets")
        try:
            return StoredSigning(tuple(await self.signing.signing_secrets(workflow_id)))
        except (SigningKeyMissing, SecretUnreadable) as exc:
            return StoredSigning(error=str(exc))

    def _target(
        self, workflow: WorkflowConfig, stored: StoredSigning | None = None
    ) -> tuple[Target, str | None]:
        config = workflow.target
        if isinstance(config, HttpTargetConfig):
            assert self.session is not None, "HTTP targets need the worker's session"
            secret = os.environ.get(config.secret_env) if config.secret_env else None
            target = HttpTarget(config, self.session, secret, stored=stored)
            # a target that cannot sign sends nothing: its host is not to blame
            return target, None if target.signing_error else breaker_host(config.url)
        if isinstance(config, PythonTargetConfig):
            return PythonTarget(config.handler), None
        return _Nothing(), None


def sees_cancel(workflow: WorkflowConfig | None) -> bool:
    """Whether the workflow's target is told of a cancel request while it runs (a Python
    handler sees ``ctx.cancelled``; a webhook, once sent, does not)."""
    return workflow is not None and isinstance(workflow.target, PythonTargetConfig)


class _Nothing:
    """Target ``none``: the fire was the action (runs of these normally never reach a worker)."""

    async def attempt(self, ctx: RunContext) -> AttemptResult:
        return AttemptResult.success()

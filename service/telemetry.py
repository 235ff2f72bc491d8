"""Telemetry: OpenTelemetry traces, Prometheus metrics and structured logs.

Tracing is configured by the standard variables (``OTEL_TRACES_EXPORTER`` =
``otlp`` | ``console`` | ``none``, ``OTEL_SERVICE_NAME``,
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_PROTOCOL``) and is off by
default: then ``tracing()`` is False and no span is made anywhere (callers check it
first), so it costs one attribute read. The W3C ``traceparent`` of a span travels
in every event's ``meta`` and in every run, which is how a fire joins the trace of
the command that last changed its schedule and a run joins its fire.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_PROPAGATOR = TraceContextTextMapPropagator()
_NOOP = trace.NoOpTracer()


class _Tracing:
    provider: TracerProvider | None = None
    tracer: trace.Tracer = _NOOP


_state = _Tracing()


def tracing() -> bool:
    """Whether spans are being recorded (False: skip building them at all)."""
    return _state.provider is not None


def tracer() -> trace.Tracer:
    return _state.tracer


def use_provider(provider: TracerProvider | None) -> None:
    """Record spans with ``provider`` (None: tracing off). Tests pass an in-memory one."""
    _state.provider = provider
    _state.tracer = provider.get_tracer("cronstream") if provider is not None else _NOOP


def setup_tracing(env: dict[str, str] | None = None) -> TracerProvider | None:
    """Configure tracing from the OTEL_* variables; returns the provider, or None when off."""
    env = dict(os.environ if env is None else env)
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter_name in ("", "none"):
        use_provider(None)
        return None
    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter(out=sys.stderr)
    elif exporter_name == "otlp":
        protocol = env.get(
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        )
        if protocol != "http/protobuf":
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: use http/protobuf"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT itself
    else:
        raise ValueError(f"OTEL_TRACES_EXPORTER={exporter_name!r}: use otlp, console or none")
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME", "cronstream")})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use_provider(provider)
    return provider


def shutdown_tracing() -> None:
    if _state.provider is not None:
        _state.provider.shutdown()
    use_provider(None)


# -- trace context across the log and the run queue ------------------------------------


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span (None when tracing is off or no span)."""
    if not tracing():
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def traceparent_of(span: Span) -> str | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def context_from(traceparent: str | None) -> otel_context.Context | None:
    if not traceparent:
        return None
    return _PROPAGATOR.extract({"traceparent": traceparent})


def link_to(traceparent: str | None) -> Link | None:
    ctx = context_from(traceparent)
    if ctx is None:
        return None
    span_context = trace.get_current_span(ctx).get_span_context()
    return Link(span_context) if span_context.is_valid else None


def links(traceparents: Sequence[str | None], bound: int = 128) -> list[Link]:
    out: list[Link] = []
    seen: set[str] = set()
    for parent in traceparents:
        if parent and parent not in seen and len(out) < bound:
            seen.add(parent)
            found = link_to(parent)
            if found is not None:
                out.append(found)
    return out


@contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: str | None = None,
    link_parents: Sequence[str | None] = (),
    attributes: dict[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A span when tracing is on (None otherwise), as a child of ``parent`` if given."""
    if not tracing():
        yield None
        return
    ctx = context_from(parent) if parent else None
    with tracer().start_as_current_span(
        name,
        context=ctx,
        kind=kind,
        links=links(link_parents),
        attributes={k: v for k, v in (attributes or {}).items() if v is not None},
    ) as current:
        yield current


# -- metrics ---------------------------------------------------------------------------

REGISTRY = CollectorRegistry(auto_describe=True)

FIRES = Counter(
    "cronstream_fires",
    "Nominal times decided, by outcome and namespace",
    ["outcome", "namespace"],
    registry=REGISTRY,
)
FIRE_LATENESS = Histogram(
    "cronstream_fire_lateness_seconds",
    "Time from a nominal (or jittered) time to the decision on it",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
RUNS = Counter(
    "cronstream_runs",
    "Runs finished, by final status, trigger and namespace",
    ["status", "trigger", "namespace"],
    registry=REGISTRY,
)
RUN_DURATION = Histogram(
    "cronstream_run_duration_seconds",
    "Time from a run's start to its end (per attempt)",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
ATTEMPTS = Counter(
    "cronstream_attempts",
    "Run attempts, by outcome and namespace",
    ["outcome", "namespace"],
    registry=REGISTRY,
)
RETRIES = Counter(
    "cronstream_retries", "Attempts that failed and were scheduled again", registry=REGISTRY
)
BREAKER_STATE = Gauge(
    "cronstream_breaker_state",
    "Circuit breaker per namespace and target host: 0 closed, 1 half-open, 2 open",
    ["namespace", "host"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "cronstream_queue_depth", "Entries in the run queue", ["partition"], registry=REGISTRY
)
QUEUE_PENDING = Gauge(
    "cronstream_queue_pending",
    "Run queue entries delivered, not acked",
    ["partition"],
    registry=REGISTRY,
)
DEAD_LETTERS = Gauge(
    "cronstream_dead_letters", "Dead-lettered runs", ["partition"], registry=REGISTRY
)
PROJECTION_LAG = Gauge(
    "cronstream_projection_lag_events",
    "Log entries a projection has not applied yet (bounded count)",
    ["projection", "partition"],
    registry=REGISTRY,
)
PROJECTION_LAG_SECONDS = Gauge(
    "cronstream_projection_lag_seconds",
    "Age of the oldest log entry a projection has not applied",
    ["projection", "partition"],
    registry=REGISTRY,
)
LEASE_HELD = Gauge(
    "cronstream_lease_held",
    "1 if this process holds the partition's ticker lease",
    ["partition"],
    registry=REGISTRY,
)
TICKER_BEHIND = Gauge(
    "cronstream_ticker_behind_seconds",
    "How long the partition's earliest due schedule had waited at the ticker's last tick",
    ["partition"],
    registry=REGISTRY,
)
LEASE_EPOCH = Gauge(
    "cronstream_lease_epoch",
    "The partition's current fencing epoch",
    ["partition"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "cronstream_http_request_duration_seconds",
    "API request duration by route and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
SCHEDULES = Gauge(
    "cronstream_schedules",
    "Schedules by namespace and status",
    ["namespace", "status"],
    registry=REGISTRY,
)


# -- logs ------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the current trace and span ids when tracing."""

    FIELDS = ("schedule_id", "run_id", "partition")
    converter = time.gmtime  # type: ignore[assignment]

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            entry["trace_id"] = format(context.trace_id, "032x")
            entry["span_id"] = format(context.span_id, "016x")
        for name in self.FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())

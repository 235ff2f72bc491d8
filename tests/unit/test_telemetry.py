from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from service import telemetry


def test_json_log_lines_carry_the_current_trace() -> None:
    provider = TracerProvider()
    telemetry.use_provider(provider)
    try:
        formatter = telemetry.JsonFormatter()
        record = logging.LogRecord(
            "cronstream.test", logging.WARNING, __file__, 1, "fire %s", ("late",), None
        )
        record.schedule_id = "nightly"
        with telemetry.span("work") as current:
            assert current is not None
            entry = json.loads(formatter.format(record))
            trace_id = format(current.get_span_context().trace_id, "032x")
        assert entry["message"] == "fire late" and entry["level"] == "warning"
        assert entry["logger"] == "cronstream.test" and entry["schedule_id"] == "nightly"
        assert entry["trace_id"] == trace_id and len(entry["span_id"]) == 16
        assert entry["time"].endswith("Z")
    finally:
        telemetry.use_provider(None)
        provider.shutdown()


def test_tracing_is_configured_by_the_standard_variables() -> None:
    assert telemetry.setup_tracing({}) is None and not telemetry.tracing()
    assert telemetry.setup_tracing({"OTEL_TRACES_EXPORTER": "none"}) is None
    with pytest.raises(ValueError, match="http/protobuf"):
        telemetry.setup_tracing(
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        )
    with pytest.raises(ValueError, match="otlp, console or none"):
        telemetry.setup_tracing({"OTEL_TRACES_EXPORTER": "zipkin"})
    with telemetry.span("nothing") as nothing:
        assert nothing is None
    assert telemetry.current_traceparent() is None

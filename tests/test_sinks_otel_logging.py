"""The OpenTelemetry and stdlib logging sinks."""

from __future__ import annotations

import json
import logging

import pytest

from aiguard.provenance import InMemorySink, ProvenanceLog

otel_sdk = pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402

from aiguard.provenance.logging_sink import LoggingSink  # noqa: E402
from aiguard.provenance.otel import OpenTelemetrySink  # noqa: E402

CALL = {
    "type": "call",
    "status": "ok",
    "decision": "allow",
    "purpose": "inference",
    "legal_basis": "contract",
    "destination": "openai",
    "tenant": "acme",
    "principal": "alice@example.com",
    "subject": "hmac-sha256:idx1:abc",
    "request_id": "req-1",
    "attempt": 1,
    "findings": {"email": 2, "ssn": 1},
    "actions": {"tokenize": 3},
    "tokens": ["EMAIL_1", "EMAIL_2", "SSN_1"],
    "input_digest": "hmac-sha256:ev1:in",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.usage.input_tokens": 812,
    "gen_ai.usage.output_tokens": 233,
    "server.address": "api.openai.com",
    "http_status": 200,
    "latency_us": 1_234_567,
}


def exporter_and_sink() -> tuple[InMemorySpanExporter, OpenTelemetrySink]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, OpenTelemetrySink(provider)


def test_a_call_becomes_a_genai_client_span() -> None:
    exporter, sink = exporter_and_sink()
    assert sink.required is False
    memory = InMemorySink()
    log = ProvenanceLog("otel", [sink, memory])
    log.append(CALL)
    log.append({"type": "kill_switch", "destination": "openai"})  # not a call: no span
    log.flush()

    (span,) = exporter.get_finished_spans()
    record = memory.records[1]
    assert span.name == "chat gpt-4o"
    assert span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attributes["gen_ai.usage.input_tokens"] == 812
    assert attributes["gen_ai.usage.output_tokens"] == 233
    assert attributes["server.address"] == "api.openai.com"
    assert attributes["http.response.status_code"] == 200
    assert attributes["aiguard.decision"] == "allow"
    assert attributes["aiguard.purpose"] == "inference"
    assert attributes["aiguard.findings.count"] == 3
    assert attributes["aiguard.findings.email.count"] == 2
    assert attributes["aiguard.data.classes"] == ("email", "ssn")
    assert attributes["aiguard.tokens.count"] == 3
    assert attributes["aiguard.event.digest"] == record.digest
    assert attributes["aiguard.provenance.seq"] == 1
    assert attributes["aiguard.provenance.log"] == "otel"
    assert "error.type" not in attributes
    assert span.status.status_code is StatusCode.UNSET
    # The span covers the call: it ends when the event was written.
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time == 1_234_567_000
    assert span.end_time // 1000 % 1_000_000 == int(record.document["time"][20:26])
    # Identifiers of people stay out of telemetry, even the keyed ones.
    values = json.dumps(attributes, default=list)
    assert "alice@example.com" not in values and "idx1" not in values


def test_refusals_and_errors_are_error_spans() -> None:
    exporter, sink = exporter_and_sink()
    log = ProvenanceLog("otel", [sink])
    log.append(
        {
            "type": "refusal",
            "status": "denied",
            "error": "consent_required",
            "destination": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
        }
    )
    log.append({"type": "error", "status": "error", "destination": "openai"})
    log.append({"type": "protect", "status": "ok"})
    log.flush()
    refusal, error, protect = exporter.get_finished_spans()
    assert refusal.status.status_code is StatusCode.ERROR
    assert refusal.status.description == "consent_required"
    assert dict(refusal.attributes or {})["error.type"] == "consent_required"
    assert error.name == "aiguard error"
    assert dict(error.attributes or {})["error.type"] == "_OTHER"
    assert error.status.status_code is StatusCode.ERROR
    assert protect.name == "aiguard protect"
    assert protect.status.status_code is StatusCode.UNSET
    assert "gen_ai.provider.name" not in dict(protect.attributes or {})


def test_logging_sink_logs_the_canonical_line(caplog: pytest.LogCaptureFixture) -> None:
    sink = LoggingSink("aiguard.test.provenance")
    assert sink.required is False and LoggingSink(required=True).required
    memory = InMemorySink()
    with caplog.at_level(logging.INFO, logger="aiguard.test.provenance"):
        log = ProvenanceLog("logging", [sink, memory])
        log.append({"type": "call", "reasons": ["100% %s %(x)s"]})
        log.flush()
    records = [r for r in caplog.records if r.name == "aiguard.test.provenance"]
    assert [r.getMessage().encode() for r in records] == [r.line for r in memory.records]
    assert records[1].aiguard_event == memory.records[1].document  # type: ignore[attr-defined]
    assert records[1].levelno == logging.INFO


def test_logging_sink_skips_work_when_the_level_is_off(caplog: pytest.LogCaptureFixture) -> None:
    sink = LoggingSink(logging.getLogger("aiguard.test.quiet"), logging.DEBUG)
    with caplog.at_level(logging.INFO, logger="aiguard.test.quiet"):
        ProvenanceLog("quiet", [sink]).append({"type": "call"})
    assert not [r for r in caplog.records if r.name == "aiguard.test.quiet"]


def test_missing_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ImportError, match=r'pip install "aiguard\[otel\]"'):
        OpenTelemetrySink()


@pytest.mark.parametrize("background", [False, True])
def test_spans_keep_the_callers_parent_on_a_background_writer(background: bool) -> None:
    """The writer thread has no current span: the parent is taken where the call was made."""
    exporter, sink = exporter_and_sink()
    tracer = sink._tracer
    log = ProvenanceLog("otel", [sink], background=background)
    with tracer.start_as_current_span("handle request") as request:
        log.append(dict(CALL, event_id="ignored"))
    log.append({"type": "call", "status": "ok"})  # outside any span: a root span
    log.close()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    child, root = spans["chat gpt-4o"], spans["aiguard call"]
    assert child.parent is not None
    assert child.parent.span_id == request.get_span_context().span_id
    assert child.context.trace_id == request.get_span_context().trace_id
    assert root.parent is None


def test_a_guarded_call_is_a_child_of_the_apps_span_with_background_logging() -> None:
    from aiguard import Guard
    from aiguard.testing import FakeModel
    from aiguard.testing.pytest_plugin import default_policy

    openai = pytest.importorskip("openai")
    exporter, sink = exporter_and_sink()
    guard = Guard(default_policy(), log=ProvenanceLog("otel", [sink], background=True))
    fake = FakeModel()
    client = openai.OpenAI(
        api_key="k", max_retries=0, http_client=guard.http_client(transport=fake.transport)
    )
    with (
        sink._tracer.start_as_current_span("POST /reply") as request,
        guard.context(subject="s", purpose="inference"),
    ):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
        )
    guard.close()
    (span,) = [s for s in exporter.get_finished_spans() if s.name != "POST /reply"]
    assert span.parent is not None and span.parent.span_id == request.get_span_context().span_id

"""A sink that turns call events into OpenTelemetry spans with GenAI attributes.

Each event about a call (types ``call``, ``refusal``, ``error``, ``protect``) becomes
one CLIENT span named as the GenAI semantic conventions (v1.41.0) name inference spans,
``"{gen_ai.operation.name} {gen_ai.request.model}"``, with the ``gen_ai.*`` attributes
the event holds and aiguard's own under ``aiguard.*``. The span covers the call: it
ends at the event's ``time`` and starts ``latency_us`` earlier. Spans go to whatever
exporter the tracer provider has (OTLP, console, in-memory in tests).

Only fields the event already holds are exported, and events hold no raw values (keyed
digests, counts and kinds only). The log's own records (genesis, kill switch, ...) are
not spans. Best effort by default: an exporter failure never fails a call.

A span's parent is the span current where the call was made: the log tells the sink
about each event on the appending thread (`on_append`), so a log written on a
background thread (``[provenance] background = true``) keeps the parent too.

OpenTelemetry is imported when the sink is created: ``pip install "aiguard[otel]"``.
See docs/otel.md.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .chain import EventRecord

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["CALL_EVENT_TYPES", "OpenTelemetrySink", "span_attributes", "span_name"]

#: Event types that describe one attempt of a call and so become a span.
CALL_EVENT_TYPES = frozenset({"call", "refusal", "error", "protect"})

#: The semantic-conventions release the attribute names are pinned to.
SEMCONV_SCHEMA_URL = "https://opentelemetry.io/schemas/1.41.0"

# Event fields that already carry their OpenTelemetry name.
_SEMCONV_FIELDS = (
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.response.id",
    "gen_ai.response.finish_reasons",
    "gen_ai.conversation.id",
    "server.address",
    "server.port",
)

# Plain aiguard fields, exported under the aiguard.* namespace.
_AIGUARD_FIELDS = {
    "type": "aiguard.event.type",
    "event_id": "aiguard.event.id",
    "digest": "aiguard.event.digest",
    "log": "aiguard.provenance.log",
    "seq": "aiguard.provenance.seq",
    "status": "aiguard.status",
    "decision": "aiguard.decision",
    "purpose": "aiguard.purpose",
    "legal_basis": "aiguard.legal_basis",
    "destination": "aiguard.destination",
    "tenant": "aiguard.tenant",
    "request_id": "aiguard.request.id",
    "attempt": "aiguard.attempt",
    "input_digest": "aiguard.input.digest",
    "output_digest": "aiguard.output.digest",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

#: Contexts kept for events appended but not emitted yet (a writer that is behind).
MAX_PENDING_PARENTS = 100_000


def _import_trace() -> Any:
    try:
        from opentelemetry import trace
    except ImportError as exc:
        raise ImportError(
            'the OpenTelemetry provenance sink needs opentelemetry-api: pip install "aiguard[otel]"'
        ) from exc
    return trace


def span_name(document: Mapping[str, Any]) -> str:
    """``"{operation} {model}"`` as the GenAI conventions name spans, with fallbacks."""
    operation = document.get("gen_ai.operation.name")
    model = document.get("gen_ai.request.model")
    parts = [str(part) for part in (operation, model) if part]
    if not parts:
        # A direct protect() with neither known: still a recognizable, low-cardinality name.
        return f"aiguard {document.get('type', 'event')}"
    return " ".join(parts)


def _is_failure(document: Mapping[str, Any]) -> bool:
    return document.get("type") in {"refusal", "error"} or document.get("status") in {
        "denied",
        "error",
    }


def span_attributes(document: Mapping[str, Any]) -> dict[str, Any]:
    """The span attributes for one call event (no values outside the event)."""
    attributes: dict[str, Any] = {}
    for name in _SEMCONV_FIELDS:
        value = document.get(name)
        if _is_attribute_value(value):
            attributes[name] = value
    if "gen_ai.provider.name" not in attributes and isinstance(document.get("destination"), str):
        # The policy's destination name ("openai", "anthropic") is the provider as far
        # as aiguard knows; the conventions require the attribute.
        attributes["gen_ai.provider.name"] = document["destination"]
    status = document.get("http_status")
    if isinstance(status, int) and not isinstance(status, bool):
        attributes["http.response.status_code"] = status
    if _is_failure(document):
        error = document.get("error")
        # "_OTHER" is the conventions' value when the error class is unknown.
        attributes["error.type"] = error if isinstance(error, str) and error else "_OTHER"
    for field, name in _AIGUARD_FIELDS.items():
        value = document.get(field)
        if _is_attribute_value(value):
            attributes[name] = value
    reasons = document.get("reasons")
    if isinstance(reasons, list) and reasons and all(isinstance(r, str) for r in reasons):
        attributes["aiguard.reasons"] = list(reasons)
    _counts(attributes, "aiguard.findings", document.get("findings"))
    _counts(attributes, "aiguard.levels", document.get("levels"))
    _counts(attributes, "aiguard.actions", document.get("actions"))
    _counts(attributes, "aiguard.leaks", document.get("leaks"))
    findings = document.get("findings")
    if isinstance(findings, Mapping) and findings:
        attributes["aiguard.data.classes"] = sorted(str(kind) for kind in findings)
    tokens = document.get("tokens")
    if isinstance(tokens, list):
        attributes["aiguard.tokens.count"] = len(tokens)
    consent = document.get("consent")
    if isinstance(consent, Mapping):
        for key in ("record_id", "terms_version", "use_for_training"):
            if _is_attribute_value(consent.get(key)):
                attributes[f"aiguard.consent.{key}"] = consent[key]
    return attributes


def _counts(attributes: dict[str, Any], prefix: str, counts: object) -> None:
    """``{prefix}.count`` (the total) and ``{prefix}.{kind}.count`` per kind.

    The per-kind name ends in ``.count`` too, so no kind can shadow the total.
    """
    if not isinstance(counts, Mapping):
        return
    total = 0
    for kind, count in counts.items():
        if isinstance(count, int) and not isinstance(count, bool):
            attributes[f"{prefix}.{kind}.count"] = count
            total += count
    attributes[f"{prefix}.count"] = total


def _is_attribute_value(value: object) -> bool:
    if isinstance(value, (str, bool, int)):
        return True
    return isinstance(value, list) and bool(value) and all(isinstance(item, str) for item in value)


def _time_ns(value: object) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 ``...Z`` timestamp, without float error."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH
    return ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1_000


class OpenTelemetrySink:
    """Emits a span per call event through ``tracer_provider`` (default: the global one).

    The provider belongs to the application: `close` flushes it but never shuts it down.
    """

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, required: bool = False
    ) -> None:
        trace = _import_trace()
        from .._version import __version__

        self._trace = trace
        self._provider = tracer_provider
        self.required = required
        provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
        self._tracer = provider.get_tracer(
            "aiguard.provenance", __version__, schema_url=SEMCONV_SCHEMA_URL
        )
        from opentelemetry import context as otel_context

        self._get_context = otel_context.get_current
        #: The caller's OpenTelemetry context of each call event not emitted yet, by
        #: event id (bounded: events a sink never takes must not grow it forever).
        self._parents: dict[str, Any] = {}
        self._parents_lock = threading.Lock()

    def on_append(self, document: Mapping[str, Any]) -> None:
        """Remember the caller's context (called by the log on the appending thread)."""
        if document.get("type") not in CALL_EVENT_TYPES:
            return
        event_id = document.get("event_id")
        if not isinstance(event_id, str):
            return
        try:
            current = self._get_context()
        except Exception:  # telemetry never fails a call
            return
        with self._parents_lock:
            parents = self._parents
            if len(parents) >= MAX_PENDING_PARENTS:
                parents.pop(next(iter(parents)))
            parents[event_id] = current

    def emit(self, record: EventRecord) -> None:
        document = record.document
        if document.get("type") not in CALL_EVENT_TYPES:
            return
        trace = self._trace
        end = _time_ns(document.get("time"))
        latency = document.get("latency_us")
        start = end
        if end is not None and isinstance(latency, int) and latency >= 0:
            start = end - latency * 1_000
        event_id = document.get("event_id")
        with self._parents_lock:
            parent = self._parents.pop(event_id, None) if isinstance(event_id, str) else None
        # No remembered context (a log that was not told): the emitting thread's, as before.
        span = self._tracer.start_span(
            span_name(document),
            context=parent,
            kind=trace.SpanKind.CLIENT,
            attributes=span_attributes(document),
            start_time=start,
        )
        if _is_failure(document):
            error = document.get("error")
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(error) if error else None))
        span.end(end_time=end)

    def flush(self) -> None:
        provider = self._provider or self._trace.get_tracer_provider()
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            force_flush()

    def close(self) -> None:
        self.flush()

    def __repr__(self) -> str:
        return "OpenTelemetrySink()"

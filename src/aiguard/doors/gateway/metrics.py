"""Prometheus metrics of the gateway: requests, calls, decisions, findings, latency.

Each app gets its own registry (several gateways in one process, as in tests, must not
share counters). Label values are bounded sets (endpoints, kinds, error codes), never
anything a caller controls freely, and never a raw value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

if TYPE_CHECKING:
    from ...pipeline.call import Call
    from ...pipeline.host import GuardHost

__all__ = ["GatewayMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class GatewayMetrics:
    """The gateway's collectors, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "aiguard_gateway_requests",
            "HTTP requests answered by the gateway, by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self.calls = Counter(
            "aiguard_gateway_calls",
            "Model calls recorded by the guard (one per attempt), by event type and status",
            ["operation", "type", "status"],
            registry=r,
        )
        self.decisions = Counter(
            "aiguard_gateway_decisions",
            "Policy decisions, by outcome and (for refusals) error code",
            ["decision", "code"],
            registry=r,
        )
        self.findings = Counter(
            "aiguard_gateway_findings",
            "Values found in requests, by kind and the action taken",
            ["kind", "action"],
            registry=r,
        )
        self.redactions = Counter(
            "aiguard_gateway_output_redactions",
            "Values the output rule redacted in answers (never sent, by kind)",
            ["kind"],
            registry=r,
        )
        self.latency = Histogram(
            "aiguard_gateway_request_duration_seconds",
            "Time from request to the end of the answer (whole stream for streams)",
            ["endpoint", "stream"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.active_streams = Gauge(
            "aiguard_gateway_active_streams", "Streamed answers in flight", registry=r
        )

    def observe_call(
        self, call: Call, event_type: str, status: str, extra: Mapping[str, Any]
    ) -> None:
        """Count one recorded attempt: its decision, findings and output redactions."""
        self.calls.labels(call.operation or "other", event_type, status).inc()
        decision = call.decision
        if decision is not None:
            if decision.allowed:
                self.decisions.labels("allow", "").inc()
            else:
                code = decision.error.code if decision.error is not None else "denied"
                self.decisions.labels("deny", code).inc()
        elif event_type == "refusal":
            # Refused before a decision was made (a required sink was down).
            self.decisions.labels("deny", str(extra.get("error") or "refused")).inc()
        for finding in call.findings:
            self.findings.labels(finding.kind, finding.action.value).inc()
        for kind, count in call.leaks.items():
            self.redactions.labels(kind).inc(count)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def instrument(guard: GuardHost, metrics: GatewayMetrics) -> None:
    """Have every attempt ``guard.finish`` records also counted in ``metrics``.

    `Guard.finish` is the one place each attempt passes through with its `Call`
    (decision, findings, leaks), whichever door it came by; the gateway observes it
    there instead of making a second pass over the event stream.
    """
    if metrics.observe_call not in guard.observers:  # create_app called twice
        guard.observers.append(metrics.observe_call)

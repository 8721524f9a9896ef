"""The provenance event: what went where, for what purpose, with whose consent.

Schema ``aiguard.event/1``. Events hold keyed digests (HMAC), counts, kinds and token
ids, never raw values. Names follow the OpenTelemetry GenAI conventions where one
exists (``gen_ai.*``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SCHEMA", "EventType", "ProvenanceEvent"]

SCHEMA = "aiguard.event/1"

EventType = Literal["genesis", "call", "refusal", "error", "protect", "kill_switch"]


class ProvenanceEvent(BaseModel):
    """One record of the log; ``digest`` is the SHA-256 of its canonical form without it."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    schema_: str = Field(default=SCHEMA, alias="schema")
    log: str
    seq: int = Field(ge=0)
    prev: str
    event_id: str
    time: str
    type: EventType
    request_id: str | None = None
    attempt: int | None = None
    principal: str | None = None
    tenant: str | None = None
    subject: str | None = None
    conversation: str | None = None
    destination: str | None = None
    purpose: str | None = None
    legal_basis: str | None = None
    consent: dict[str, Any] | None = None
    decision: Literal["allow", "deny"] | None = None
    reasons: list[str] = Field(default_factory=list)
    findings: dict[str, int] = Field(default_factory=dict)
    levels: dict[str, int] = Field(default_factory=dict)
    actions: dict[str, int] = Field(default_factory=dict)
    tokens: list[str] = Field(default_factory=list)
    leaks: dict[str, int] = Field(default_factory=dict)
    input_digest: str | None = None
    output_digest: str | None = None
    operation: str | None = Field(default=None, alias="gen_ai.operation.name")
    provider: str | None = Field(default=None, alias="gen_ai.provider.name")
    request_model: str | None = Field(default=None, alias="gen_ai.request.model")
    response_model: str | None = Field(default=None, alias="gen_ai.response.model")
    input_tokens: int | None = Field(default=None, alias="gen_ai.usage.input_tokens")
    output_tokens: int | None = Field(default=None, alias="gen_ai.usage.output_tokens")
    http_status: int | None = None
    latency_us: int | None = None
    status: Literal["ok", "denied", "error"] | None = None
    error: str | None = None
    digest: str

"""The provenance event: what went where, for what purpose, with whose consent.

Schema ``aiguard.event/1``, exported as JSON Schema to docs/event-schema.json (a test
keeps it current). Events hold keyed digests (HMAC), counts, kinds and token ids, never
raw values. Names follow the OpenTelemetry GenAI semantic conventions (v1.41.0) where
one exists (``gen_ai.*``, ``server.address``); aiguard's own otherwise. Integers stay
within ±(2^53-1) and there are no floats, so the canonical form is plain sorted JSON.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SCHEMA", "EventType", "ProvenanceEvent", "event_json_schema"]

SCHEMA = "aiguard.event/1"

EventType = Literal[
    "genesis",
    "call",
    "refusal",
    "error",
    "protect",
    "kill_switch",
    "checkpoint",
    "recovery",
    "key_rotation",
    "erasure",
    "reidentify",
    "alert",
    "tool_restore",
]

_SafeInt = Field(ge=-(2**53 - 1), le=2**53 - 1)


class ProvenanceEvent(BaseModel):
    """One record of the log; ``digest`` is the SHA-256 of its canonical form without it.

    Unknown members are allowed (a newer writer may add some); verification never
    depends on this model, only on the stored bytes.
    """

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    schema_: str = Field(default=SCHEMA, alias="schema", description="Schema id and version.")
    log: str = Field(description="The log (chain) this record belongs to.")
    seq: int = Field(ge=0, le=2**53 - 1, description="Position in the chain, from 0.")
    prev: str = Field(description="Digest of the record before (64 zeros for genesis).")
    event_id: str = Field(description="Time-ordered UUIDv7.")
    time: str = Field(description="RFC 3339 UTC time with microseconds.")
    type: EventType
    request_id: str | None = Field(
        default=None, description="Shared by every attempt (retry) of one logical call."
    )
    attempt: int | None = Field(default=None, ge=1, description="1 for the first attempt.")
    principal: str | None = Field(default=None, description="Who called (service, user id).")
    tenant: str | None = None
    subject: str | None = Field(
        default=None, description="Keyed digest of the data subject id, never the raw id."
    )
    conversation: str | None = Field(default=None, description="Keyed digest of the id.")
    destination: str | None = Field(default=None, description="Policy destination name.")
    purpose: str | None = None
    legal_basis: str | None = None
    consent: dict[str, Any] | None = Field(
        default=None,
        description="Consent snapshot: record_id, terms_version, granted_at, use_for_training.",
    )
    decision: Literal["allow", "deny"] | None = None
    reasons: list[str] = Field(default_factory=list)
    findings: dict[str, int] = Field(default_factory=dict, description="Count per kind.")
    levels: dict[str, int] = Field(default_factory=dict, description="Count per level.")
    actions: dict[str, int] = Field(default_factory=dict, description="Count per action.")
    tokens: list[str] = Field(default_factory=list, description="Token ids issued or used.")
    tool: str | None = Field(
        default=None,
        description="tool_restore: the tool whose arguments got originals back (its name, "
        "or a digest when the name holds data).",
    )
    leaks: dict[str, int] = Field(
        default_factory=dict,
        description="Values in the answer never sent and redacted by the output rule, per kind.",
    )
    leak_paths: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description="Where the output rule redacted: answer field path, then count per kind.",
    )
    unsent_findings: dict[str, int] = Field(
        default_factory=dict,
        description="Values in the answer never sent, below the output rule's level "
        "(left in the answer, flagged), per kind.",
    )
    unknown_tokens: int | None = Field(
        default=None,
        ge=0,
        description="Token-shaped text the caller sent (re-tokenized as data) or the answer "
        "held that restores to nothing the caller may see: what guessing looks like. Each "
        "distinct text counts once per call, however often the answer states it.",
    )
    links_kept: int | None = Field(
        default=None,
        ge=0,
        description="Tokens of the caller's left unrestored in the answer because they "
        "stood in a link (a URL, a Markdown image): restoring there would let the reader's "
        "client send the original to a host the model named. Each token counts once per "
        "call.",
    )
    tool_tokens_kept: int | None = Field(
        default=None,
        ge=0,
        description="Tokens of the caller's left unrestored in the arguments of tool calls "
        "the destination does not restore (restore_tool_arguments): the agent restores "
        "them where it runs a tool it trusts. Each token counts once per call.",
    )
    input_digest: str | None = Field(default=None, description="hmac-sha256:<kid>:<hex>.")
    output_digest: str | None = Field(default=None, description="hmac-sha256:<kid>:<hex>.")
    dataset_version: str | None = Field(default=None, description="Dataset the call feeds.")
    model_version: str | None = Field(default=None, description="Model version trained/used.")
    explanation_ref: str | None = Field(
        default=None, description="Reference to an explanation kept elsewhere."
    )
    operation: str | None = Field(default=None, alias="gen_ai.operation.name")
    provider: str | None = Field(default=None, alias="gen_ai.provider.name")
    request_model: str | None = Field(default=None, alias="gen_ai.request.model")
    response_model: str | None = Field(default=None, alias="gen_ai.response.model")
    input_tokens: int | None = Field(default=None, alias="gen_ai.usage.input_tokens", ge=0)
    output_tokens: int | None = Field(default=None, alias="gen_ai.usage.output_tokens", ge=0)
    server_address: str | None = Field(default=None, alias="server.address")
    http_status: int | None = None
    latency_us: int | None = Field(default=None, ge=0)
    status: Literal["ok", "denied", "error"] | None = None
    error: str | None = Field(default=None, description="Error class or code.")
    checkpoint: dict[str, Any] | None = Field(
        default=None, description="size, root, frontier, key_id and the signed note."
    )
    signer: dict[str, Any] | None = Field(default=None, description="Genesis: signing key.")
    recovery: dict[str, Any] | None = Field(default=None, description="What was repaired.")
    digest: str = Field(description="SHA-256(0x00 || canonical record without digest).")


def event_json_schema() -> str:
    """The JSON Schema of an event, as written to docs/event-schema.json."""
    schema = ProvenanceEvent.model_json_schema(by_alias=True)
    schema["$id"] = "https://aiguard.dev/schemas/event/1"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"

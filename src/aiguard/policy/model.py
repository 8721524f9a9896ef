"""The policy: approved destinations, purposes, minimization actions and custom patterns.

Key names are normative (see docs/policy.md); extend them, never rename them.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..classify.levels import Level, check_kind

__all__ = [
    "BUILTIN_PURPOSES",
    "Action",
    "ActionsPolicy",
    "AlertsPolicy",
    "CompliancePolicy",
    "DenialSpikeAlert",
    "DestinationPolicy",
    "JsonAdapterPolicy",
    "KeysPolicy",
    "KillSwitchAlert",
    "LegalBasis",
    "PatternPolicy",
    "Policy",
    "ProvenancePolicy",
    "ProvenanceSinkPolicy",
    "PurposePolicy",
    "ReidentificationAlert",
    "RegulatedBurstAlert",
    "RetryPolicy",
    "RolloutPolicy",
    "Stage",
    "TrainingConsentAlert",
    "tool_restored",
]


class Action(str, enum.Enum):
    """What happens to a value above a destination's ``max_raw_level``."""

    KEEP = "keep"
    TOKENIZE = "tokenize"
    PSEUDONYMIZE = "pseudonymize"
    MASK = "mask"
    REDACT = "redact"
    BLOCK = "block"


LegalBasis = Literal[
    "consent",
    "explicit_consent",
    "contract",
    "legitimate_interest",
    "legal_obligation",
    "vital_interest",
    "public_task",
]


Mode = Literal["enforce", "monitor"]

#: Rollout stage of a destination: who may reach it (see `RolloutPolicy`).
Stage = Literal["internal", "opt_in", "general"]

#: Destination facts a policy can require under ``[compliance] require``.
DestinationInfo = Literal["retention_days", "region", "processor"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PurposePolicy(_Strict):
    """Why data is processed, under which legal basis, and whether consent is needed."""

    legal_basis: LegalBasis
    requires_consent: bool = False
    #: The caller must also set ``use_for_training=True`` in the call context.
    requires_training_flag: bool = False
    description: str | None = None


BUILTIN_PURPOSES: Mapping[str, PurposePolicy] = {
    "inference": PurposePolicy(legal_basis="contract"),
    "model_training": PurposePolicy(
        legal_basis="consent", requires_consent=True, requires_training_flag=True
    ),
    "analytics": PurposePolicy(legal_basis="legitimate_interest"),
    "human_review": PurposePolicy(legal_basis="contract"),
    "third_party_sharing": PurposePolicy(legal_basis="consent", requires_consent=True),
    "automated_decision": PurposePolicy(legal_basis="explicit_consent", requires_consent=True),
}


class RetryPolicy(_Strict):
    """aiguard's own retries of one call to a destination (429, 5xx, connection errors).

    Off by default (``max_attempts = 1``): the OpenAI and Anthropic SDKs already retry
    above the transport, and both layers retrying would multiply the attempts. Turn it on
    for clients that do not retry (plain httpx, the gateway) or with ``max_retries=0``.
    """

    #: Attempts in all, the first included; 1 means no retries.
    max_attempts: int = Field(default=1, ge=1, le=20)
    #: No new attempt starts once this much time has passed (or would pass waiting).
    max_seconds: float = Field(default=30.0, gt=0)
    #: Upper bound of one wait, also when ``Retry-After`` asks for longer.
    max_wait: float = Field(default=8.0, ge=0)
    #: HTTP statuses that are retried.
    statuses: list[int] = Field(default_factory=lambda: [408, 409, 429, 500, 502, 503, 504])
    #: Retry connection errors and timeouts (nothing was answered).
    connection_errors: bool = True


class JsonAdapterPolicy(_Strict):
    """The generic JSON adapter: a path at a destination and the JSON paths that matter.

    Paths look like ``$.prompt``, ``$.history[*].text``, ``$.options.*``. Every string of
    the request is protected except those under ``keep`` (``protect`` documents the
    fields that carry data; strings in neither list are protected anyway, the safety
    net). In the answer only strings under ``restore`` get their originals back; every
    string is scanned by the output rule.
    """

    #: URL path below the destination's base_url, a glob (``/generate``, ``/v2/*``).
    path: str
    protect: list[str] = Field(default_factory=lambda: ["$"])
    keep: list[str] = Field(default_factory=list)
    restore: list[str] = Field(default_factory=list)


def tool_restored(rule: bool | Sequence[str], name: str | None) -> bool:
    """Whether ``rule`` (a ``restore_tool_arguments`` value: every tool, none, or tool
    names and globs) restores the arguments of a call of tool ``name``; a call whose
    tool is not named is restored only when every tool's are."""
    if isinstance(rule, bool):
        return rule
    return name is not None and any(fnmatch.fnmatchcase(name, p) for p in rule)


class DestinationPolicy(_Strict):
    """A model endpoint the application may call, and on what terms."""

    base_url: str
    models: list[str] = Field(default_factory=lambda: ["*"])
    #: Deny unless a destination is explicitly approved.
    approved: bool = False
    purposes: list[str] = Field(default_factory=list)
    max_raw_level: Level = Level.INTERNAL
    retention_days: int | None = Field(default=None, ge=0)
    region: str | None = None
    processor: str | None = None
    #: When the vault is unreachable, send the call with values redacted instead of failing.
    #: Off by default (fail closed); the choice is recorded in every event it affects.
    fail_open: bool = False
    #: None follows the policy's ``mode``; "monitor" here watches one destination only.
    mode: Mode | None = None
    #: internal: internal principals only; opt_in: subjects with consent; general: everyone.
    stage: Stage = "general"
    #: aiguard-level retries; off by default because the SDKs retry (see docs/payloads.md).
    retries: RetryPolicy = Field(default_factory=RetryPolicy)
    #: Bodies aiguard cannot read (multipart uploads, binary, compressed) are refused;
    #: true forwards them unread, and every such event says so.
    forward_unreadable: bool = False
    #: JSON to a path no adapter knows: "refuse" (default), or "protect" every string.
    unknown_paths: Literal["refuse", "protect"] = "refuse"
    #: Generic JSON adapters for paths the built-in ones do not cover.
    adapters: list[JsonAdapterPolicy] = Field(default_factory=list)
    #: Streamed text held back while it could still be a withheld value, at most this
    #: many characters per channel; past it the held text is redacted, never released.
    stream_hold_limit: int = Field(default=8192, ge=256)
    #: The output rule: values at or above this level that the call never sent are
    #: redacted in answers. The default withholds secrets and REGULATED ids; "sensitive"
    #: also withholds contact details and other personal data (the gateway's default).
    output_rule_level: Level = Level.REGULATED
    #: Tokens in a link of an answer (a URL, a Markdown image, an HTML src or href, a
    #: URL in a tool's arguments) stay tokens: restoring there would let the reader's
    #: client send the original to whatever host the model named, unasked (an image
    #: loads when the answer is shown). true restores them like the rest.
    restore_in_links: bool = False
    #: Which tools' call arguments in an answer get their originals back: true (every
    #: tool), false (none), or a list of tool names (globs, ``"crm_*"``). A model told
    #: by injected text to call ``send_email(to=attacker, body=[EMAIL_…])`` would
    #: otherwise hand the agent the caller's value to send; the tools not listed get
    #: tokens, which the agent restores where it runs a tool it trusts
    #: (`aiguard.Guard.restore_tool_arguments`).
    restore_tool_arguments: bool | list[str] = True

    @field_validator("base_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an absolute http(s) URL such as 'https://api.openai.com/v1'")
        return value.rstrip("/")

    @field_validator("max_raw_level", "output_rule_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return Level.parse(value) if isinstance(value, str) else value

    def restores_tool(self, name: str | None) -> bool:
        """Whether a call of tool ``name`` gets its arguments restored (an unknown
        name only when every tool's are)."""
        return tool_restored(self.restore_tool_arguments, name)

    def allows_model(self, model: str | None) -> bool:
        if model is None:
            return True
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)


class ActionsPolicy(_Strict):
    """Per level (and per kind, which wins) action for values above ``max_raw_level``."""

    public: Action | None = None
    internal: Action | None = None
    sensitive: Action = Action.TOKENIZE
    regulated: Action = Action.TOKENIZE
    kinds: dict[str, Action] = Field(default_factory=dict)

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, value: dict[str, Action]) -> dict[str, Action]:
        for kind in value:
            check_kind(kind)
        return value

    def for_level(self, level: Level) -> Action:
        chosen: Action | None = getattr(self, level.label)
        return chosen if chosen is not None else Action.TOKENIZE


class PatternPolicy(_Strict):
    """A custom detector: ``kind``, ``level`` and a Python regular expression."""

    kind: str
    level: Level
    regex: str

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        return check_kind(value)

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return Level.parse(value) if isinstance(value, str) else value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        if compiled.match(""):
            raise ValueError("the regular expression matches the empty string")
        return value


class RolloutPolicy(_Strict):
    """Who counts as internal for destinations in stage ``internal``."""

    #: Glob patterns matched against the call context's principal (``"staff:*"``).
    internal_principals: list[str] = Field(default_factory=list)

    def is_internal(self, principal: str | None) -> bool:
        if principal is None:
            return False
        return any(fnmatch.fnmatchcase(principal, p) for p in self.internal_principals)


class CompliancePolicy(_Strict):
    """Facts every approved destination must state (checked by lint and ``aiguard check``)."""

    require: list[DestinationInfo] = Field(default_factory=list)


class ReidentificationAlert(_Strict):
    """A principal re-identifying (detokenizing) more than ``max_values`` values in a window."""

    max_values: int = Field(default=100, ge=1)
    window_seconds: int = Field(default=3600, ge=1)


class RegulatedBurstAlert(_Strict):
    """More than ``max_findings`` REGULATED findings toward one destination in a window."""

    max_findings: int = Field(default=50, ge=1)
    window_seconds: int = Field(default=60, ge=1)


class TrainingConsentAlert(_Strict):
    """A training-purpose call for a subject whose consent record changed since the last one."""

    enabled: bool = True


class DenialSpikeAlert(_Strict):
    """More than ``max_denials`` refused calls in a window."""

    max_denials: int = Field(default=20, ge=1)
    window_seconds: int = Field(default=60, ge=1)


class KillSwitchAlert(_Strict):
    """A call that went out to a destination after its kill switch was thrown."""

    enabled: bool = True


class UnknownTokensAlert(_Strict):
    """A principal sending or receiving more than ``max_tokens`` token-shaped strings that
    restore to nothing it may see, in a window: someone guessing or replaying tokens.

    On by default (``enabled = false`` under ``[alerts.unknown_tokens]`` turns it off).
    """

    enabled: bool = True
    max_tokens: int = Field(default=50, ge=1)
    window_seconds: int = Field(default=300, ge=1)


class LinksKeptAlert(_Strict):
    """A model writing the caller's tokens into links (``links_kept`` of call events):
    a prompt injection trying to get values out through a URL the reader's client
    would fetch. Fires on the first such call per principal in a window.

    On by default (``enabled = false`` under ``[alerts.links_kept]`` turns it off).
    """

    enabled: bool = True
    window_seconds: int = Field(default=300, ge=1)


class AlertsPolicy(_Strict):
    """Alert rules; a rule is on when its table is present (``[alerts.denial_spike]``)."""

    reidentification: ReidentificationAlert | None = None
    regulated_burst: RegulatedBurstAlert | None = None
    training_consent_change: TrainingConsentAlert | None = None
    denial_spike: DenialSpikeAlert | None = None
    after_kill_switch: KillSwitchAlert | None = None
    unknown_tokens: UnknownTokensAlert | None = Field(default_factory=UnknownTokensAlert)
    links_kept: LinksKeptAlert | None = Field(default_factory=LinksKeptAlert)

    @property
    def any(self) -> bool:
        return any(
            rule is not None and getattr(rule, "enabled", True)
            for rule in (
                self.reidentification,
                self.regulated_burst,
                self.training_consent_change,
                self.denial_spike,
                self.after_kill_switch,
                self.unknown_tokens,
                self.links_kept,
            )
        )


class ProvenanceSinkPolicy(_Strict):
    """One sink in ``[[provenance.sinks]]``; ``required`` sinks fail calls closed."""

    type: Literal["jsonl", "sqlite", "postgres", "logging", "otel", "http"]
    path: str | None = None
    dsn: str | None = None
    url: str | None = None
    spool_dir: str | None = None
    required: bool = True
    fsync: Literal["always", "interval", "never"] = "never"
    #: sqlite: seconds a write waits for another process's lock before it fails.
    lock_timeout: float = Field(default=10.0, gt=0)
    #: postgres: seconds to open a connection before the write fails (libpq rounds up to 2).
    connect_timeout: float = Field(default=5.0, gt=0)
    #: postgres: seconds a statement may run (a lock held elsewhere) before it fails.
    statement_timeout: float | None = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _target_named(self) -> ProvenanceSinkPolicy:
        needs = {"jsonl": "path", "sqlite": "path", "postgres": "dsn", "http": "url"}
        key = needs.get(self.type)
        if key is not None and getattr(self, key) is None:
            raise ValueError(f"a {self.type} sink needs {key} = ...")
        if self.type == "http" and self.spool_dir is None:
            raise ValueError(
                "an http sink needs spool_dir = ... (nothing is lost while it is down)"
            )
        return self


class ProvenancePolicy(_Strict):
    """Where events go, and how they are sealed, when the guard is built from a policy file.

    Paths are relative to the policy file.
    """

    jsonl: str | None = None
    log: str = "aiguard"
    #: JSONL durability for the ``jsonl`` shorthand.
    fsync: Literal["always", "interval", "never"] = "never"
    sinks: list[ProvenanceSinkPolicy] = Field(default_factory=list)
    #: Ed25519 key file for signed checkpoints (created 0600 on first use).
    signing_key: str | None = None
    checkpoint_every: int = Field(default=1000, ge=1)
    checkpoint_seconds: int | None = Field(default=60, ge=1)
    #: Where the latest checkpoint note is also written, to publish it elsewhere.
    checkpoint_file: str | None = None
    #: Seal and write on a background thread; the call path only hands events over.
    background: bool = False
    queue_size: int = Field(default=10_000, ge=1)
    when_full: Literal["block", "fail"] = "block"


class KeysPolicy(_Strict):
    """``[keys]``: where the vault's root key comes from (docs/keys.md).

    ``provider = "file"`` reads (or creates, mode 0600) ``file``, relative to the policy
    file; ``provider = "env"`` reads the base64 key in the variable ``env``.
    ``vault`` picks the backend: ``"sqlite"`` (the policy's ``database``),
    ``"postgres"`` (``dsn``, or the variable ``dsn_env``) or ``"memory"``.
    """

    provider: Literal["file", "env"] = "file"
    file: str = "aiguard.root.key"
    env: str = "AIGUARD_ROOT_KEY"
    vault: Literal["sqlite", "postgres", "memory"] = "sqlite"
    dsn: str | None = None
    dsn_env: str = "AIGUARD_POSTGRES_DSN"
    #: PostgreSQL: seconds to open a connection, and the longest a call waits for one.
    connect_timeout: float = Field(default=5.0, gt=0)
    #: PostgreSQL: seconds a statement may run before it is cancelled and the call fails
    #: closed (a DSN that sets ``statement_timeout`` itself wins).
    statement_timeout: float | None = Field(default=5.0, gt=0)
    #: Vault entries expire after this many days; `aiguard dsr purge` deletes them.
    retention_days: int | None = Field(default=None, ge=1)


class Policy(_Strict):
    """The whole policy; build it in code or load it with `load_policy` / `Guard.from_toml`."""

    mode: Mode = "enforce"
    destinations: dict[str, DestinationPolicy] = Field(default_factory=dict)
    purposes: dict[str, PurposePolicy] = Field(default_factory=dict)
    actions: ActionsPolicy = Field(default_factory=ActionsPolicy)
    patterns: list[PatternPolicy] = Field(default_factory=list)
    #: Where the embedded stores live (later: SQLite); kept here so the name is stable.
    database: str | None = None
    #: Seconds a SQLite store waits for another process's lock before the call fails.
    database_timeout: float = Field(default=10.0, gt=0)
    #: National-id and phone locale packs the detectors know (None: every registered pack).
    locales: list[str] | None = None
    #: Kinds sent as realistic surrogates instead of ``[KIND_XXXX]`` placeholders:
    #: an address in ``aiguard.invalid``, a ``+999`` phone, a Luhn-valid 4000 test card.
    surrogates: list[Literal["email", "phone", "credit_card"]] = Field(default_factory=list)
    #: Per-kind level overrides, e.g. ``[levels] email = "regulated"``.
    levels: dict[str, Level] = Field(default_factory=dict)
    provenance: ProvenancePolicy | None = None
    #: The vault's root key and backend; without it the vault keys derive from aiguard.key.
    keys: KeysPolicy | None = None
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)
    compliance: CompliancePolicy = Field(default_factory=CompliancePolicy)
    alerts: AlertsPolicy = Field(default_factory=AlertsPolicy)

    @field_validator("levels", mode="before")
    @classmethod
    def _levels(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                check_kind(k): Level.parse(v) if isinstance(v, str) else v for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _purposes_known(self) -> Policy:
        known = set(BUILTIN_PURPOSES) | set(self.purposes)
        for name, destination in self.destinations.items():
            for purpose in destination.purposes:
                if purpose not in known:
                    raise ValueError(
                        f"destinations.{name}.purposes names unknown purpose {purpose!r}; "
                        f"known purposes: {', '.join(sorted(known))}"
                    )
        return self

    @cached_property
    def all_purposes(self) -> dict[str, PurposePolicy]:
        return {**BUILTIN_PURPOSES, **self.purposes}

    def purpose(self, name: str | None) -> PurposePolicy | None:
        if name is None:
            return None
        return self.all_purposes.get(name)

    def mode_for(self, destination: str | None) -> Mode:
        """A destination's own ``mode`` when it sets one, else the policy's."""
        target = self.destinations.get(destination) if destination is not None else None
        if target is not None and target.mode is not None:
            return target.mode
        return self.mode

    def action_for(self, destination: DestinationPolicy, level: Level, kind: str) -> Action:
        """The kind's rule wins; else values up to ``max_raw_level`` are kept; else the level's."""
        by_kind = self.actions.kinds.get(kind)
        if by_kind is not None:
            return by_kind
        if level <= destination.max_raw_level:
            return Action.KEEP
        return self.actions.for_level(level)

"""The policy: approved destinations, purposes, minimization actions and custom patterns.

Key names are normative (see docs/policy.md); extend them, never rename them.
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..classify.levels import Level, check_kind

__all__ = [
    "BUILTIN_PURPOSES",
    "Action",
    "ActionsPolicy",
    "DestinationPolicy",
    "LegalBasis",
    "PatternPolicy",
    "Policy",
    "ProvenancePolicy",
    "ProvenanceSinkPolicy",
    "PurposePolicy",
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

    @field_validator("base_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an absolute http(s) URL such as 'https://api.openai.com/v1'")
        return value.rstrip("/")

    @field_validator("max_raw_level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        return Level.parse(value) if isinstance(value, str) else value

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


class ProvenanceSinkPolicy(_Strict):
    """One sink in ``[[provenance.sinks]]``; ``required`` sinks fail calls closed."""

    type: Literal["jsonl", "sqlite", "postgres", "logging", "otel", "http"]
    path: str | None = None
    dsn: str | None = None
    url: str | None = None
    spool_dir: str | None = None
    required: bool = True
    fsync: Literal["always", "interval", "never"] = "never"

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


class Policy(_Strict):
    """The whole policy; build it in code or load it with `load_policy` / `Guard.from_toml`."""

    mode: Literal["enforce", "monitor"] = "enforce"
    destinations: dict[str, DestinationPolicy] = Field(default_factory=dict)
    purposes: dict[str, PurposePolicy] = Field(default_factory=dict)
    actions: ActionsPolicy = Field(default_factory=ActionsPolicy)
    patterns: list[PatternPolicy] = Field(default_factory=list)
    #: Where the embedded stores live (later: SQLite); kept here so the name is stable.
    database: str | None = None
    #: National-id and phone locale packs the detectors know (None: every registered pack).
    locales: list[str] | None = None
    #: Per-kind level overrides, e.g. ``[levels] email = "regulated"``.
    levels: dict[str, Level] = Field(default_factory=dict)
    provenance: ProvenancePolicy | None = None

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

    def action_for(self, destination: DestinationPolicy, level: Level, kind: str) -> Action:
        """The kind's rule wins; else values up to ``max_raw_level`` are kept; else the level's."""
        by_kind = self.actions.kinds.get(kind)
        if by_kind is not None:
            return by_kind
        if level <= destination.max_raw_level:
            return Action.KEEP
        return self.actions.for_level(level)

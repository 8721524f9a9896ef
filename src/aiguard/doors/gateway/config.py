"""The gateway's own configuration (``gateway.toml``) and its safe default policy.

Kept free of starlette, uvicorn and prometheus-client so that the CLI can parse its
arguments and report a missing extra before anything heavy is imported.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import ipaddress
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ...classify.levels import Level
from ...errors import PolicyError
from ...policy.model import Action, ActionsPolicy, DestinationPolicy, Policy

__all__ = [
    "DEFAULT_DESTINATION",
    "DEFAULT_PROVENANCE_FILE",
    "ApiKey",
    "GatewayConfig",
    "Principal",
    "default_policy",
    "hash_key",
    "is_loopback",
    "load_config",
]

#: The destination name of the upstream in the default policy (events name it).
DEFAULT_DESTINATION = "upstream"
#: Where the default guard appends its provenance chain, in the working directory.
DEFAULT_PROVENANCE_FILE = "aiguard-gateway.jsonl"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hash_key(key: str) -> str:
    """The SHA-256 (hex) under which a gateway API key is stored in the config.

    Gateway keys are random secrets of high entropy (generate them with
    ``python -c "import secrets; print(secrets.token_urlsafe(32))"``), so a fast hash
    is enough: there is nothing to brute-force from it, unlike a password.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiKey(_Strict):
    """One gateway API key: who it identifies and what it may do."""

    #: ``hash_key(key)``: the key itself is never stored.
    sha256: str
    principal: str
    tenant: str = "default"
    #: Endpoints the key may call, as globs: ``chat.completions``, ``responses``,
    #: ``embeddings``, ``models``, ``tool_arguments.restore``; ``*`` for all.
    scopes: list[str] = Field(default_factory=lambda: ["*"])
    #: Purposes the caller may claim (``X-AIGuard-Purpose``); the first is the default.
    purposes: list[str] = Field(default_factory=lambda: ["inference"])
    #: Data subjects the caller may name (``X-AIGuard-Subject``), as globs: a token
    #: restores for whoever names its subject, so keys of one tenant that must not see
    #: each other's subjects list their own (``["team-a:*"]``). ``*``: any subject.
    subjects: list[str] = Field(default_factory=lambda: ["*"])

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        value = value.strip().lower()
        if not _HEX64.match(value):
            raise ValueError(
                "must be the 64-hex-digit SHA-256 of the key (`aiguard gateway --hash-key`)"
            )
        return value

    @field_validator("purposes")
    @classmethod
    def _some_purpose(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("name at least one purpose, e.g. ['inference']")
        return value


class Principal(_Strict):
    """The caller of one request, as its gateway key (or its absence) identifies it."""

    name: str
    tenant: str
    scopes: tuple[str, ...]
    purposes: tuple[str, ...]
    subjects: tuple[str, ...] = ("*",)

    def may_call(self, endpoint: str) -> bool:
        return any(fnmatch.fnmatchcase(endpoint, scope) for scope in self.scopes)

    def may_claim(self, purpose: str) -> bool:
        return "*" in self.purposes or purpose in self.purposes

    def may_name(self, subject: str) -> bool:
        return any(fnmatch.fnmatchcase(subject, pattern) for pattern in self.subjects)


ANONYMOUS = Principal(name="anonymous", tenant="default", scopes=("*",), purposes=("*",))


class GatewayConfig(_Strict):
    """``gateway.toml``: everything about the server; the policy stays in ``aiguard.toml``."""

    #: Base URL of the upstream API, e.g. ``https://api.openai.com/v1``.
    upstream: str | None = None
    #: The policy file; without it the gateway runs the safe default policy.
    policy: str | None = None
    #: The policy destination the upstream is; default: the one whose base_url covers it.
    destination: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: Environment variable holding the upstream API key (never a command-line argument).
    upstream_key_env: str = "AIGUARD_UPSTREAM_API_KEY"
    #: Forward the client's own Authorization header upstream (then gateway keys travel
    #: in ``X-AIGuard-Key``, so a gateway key is never sent to the upstream).
    forward_client_authorization: bool = False
    #: Callers without a gateway key: allowed by default only when no key is configured
    #: and the gateway listens on a loopback address.
    allow_anonymous: bool | None = None
    keys: list[ApiKey] = Field(default_factory=list)
    #: The purpose of requests that name none.
    default_purpose: str = "inference"
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: Streamed answers in flight at once; more get 429 with Retry-After.
    max_streams: int = Field(default=512, ge=1)
    connect_timeout: float = Field(default=5.0, gt=0)
    #: Longest wait for the upstream's answer, or between two chunks of a stream.
    upstream_timeout: float = Field(default=600.0, gt=0)
    #: On shutdown, how long streams in flight may take to finish.
    drain_seconds: float = Field(default=30.0, ge=0)
    #: Longest a client may take to send a request's headers (then the connection is
    #: closed) and its body (then 408): a slow client must not hold a connection.
    header_timeout: float = Field(default=10.0, gt=0)
    body_timeout: float = Field(default=30.0, gt=0)
    #: Bodies at least this large are parsed and protected in a worker thread, so one
    #: big request never stalls every other stream on the event loop.
    offload_bytes: int = Field(default=256 * 1024, ge=0)
    #: Upstream answer headers passed back besides the allowlist (content-type,
    #: x-request-id, retry-after, retry-after-ms); by default no ``openai-*``,
    #: ``anthropic-*`` or ``x-ratelimit-*`` header (they describe the upstream account:
    #: organization, limits, processing times). Names, case-insensitive.
    forward_response_headers: list[str] = Field(default_factory=list)
    #: Provenance file of the default policy, relative to the working directory.
    provenance: str = DEFAULT_PROVENANCE_FILE

    @field_validator("upstream")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an absolute http(s) URL such as 'https://api.openai.com/v1'")
        return value.rstrip("/")

    def anonymous_allowed(self) -> bool:
        if self.allow_anonymous is not None:
            return self.allow_anonymous
        return not self.keys and is_loopback(self.host)

    def key_table(self) -> dict[str, Principal]:
        """SHA-256 hex -> principal, for constant-time lookups."""
        return {
            k.sha256: Principal(
                name=k.principal,
                tenant=k.tenant,
                scopes=tuple(k.scopes),
                purposes=tuple(k.purposes),
                subjects=tuple(k.subjects),
            )
            for k in self.keys
        }

    def upstream_key(self) -> str | None:
        value = os.environ.get(self.upstream_key_env, "").strip()
        return value or None


def lookup_key(table: dict[str, Principal], presented: str) -> Principal | None:
    """The principal of a presented key; compares digests in constant time."""
    digest = hash_key(presented)
    found: Principal | None = None
    for stored, principal in table.items():
        # Every entry is compared, so timing says nothing about which one matched.
        if hmac.compare_digest(stored, digest):
            found = principal
    return found


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_config(path: str | os.PathLike[str], **overrides: Any) -> GatewayConfig:
    """Read ``gateway.toml``; keyword arguments (the CLI's) override its keys."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    source = os.fspath(path)
    try:
        data = tomllib.loads(Path(source).read_text("utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"gateway config {source} does not exist", source=source) from None
    except (OSError, ValueError) as exc:
        raise PolicyError(f"gateway config {source} cannot be read: {exc}", source=source) from None
    data.update({k: v for k, v in overrides.items() if v is not None})
    policy = data.get("policy")
    if isinstance(policy, str) and "policy" not in overrides:
        # Relative to the config file, like every path in aiguard.toml.
        data["policy"] = str((Path(source).resolve().parent / policy).resolve())
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise PolicyError(f"{source}: {key}: {first['msg']}", key=key, source=source) from None


def default_policy(upstream: str) -> Policy:
    """The policy the gateway runs without a policy file.

    The upstream is the one approved destination, for purpose ``inference``. Every value
    above INTERNAL (contact details, government and financial ids, network identifiers,
    dates of birth, every secret and credential) is tokenized on the way out and
    restored on the way back, and such values in an answer that the call never sent are
    redacted (``output_rule_level = "sensitive"``, stricter than the library default).
    """
    return Policy(
        destinations={
            DEFAULT_DESTINATION: DestinationPolicy(
                base_url=upstream,
                approved=True,
                purposes=["inference"],
                max_raw_level=Level.INTERNAL,
                output_rule_level=Level.SENSITIVE,
            )
        },
        actions=ActionsPolicy(sensitive=Action.TOKENIZE, regulated=Action.TOKENIZE),
    )

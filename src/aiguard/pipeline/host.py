"""What the pipeline, the doors and the compliance tools need from a guard.

`aiguard.Guard` is the one implementation. Everything below the facade is typed against
these Protocols instead of importing `Guard`, so imports run one way: the facade composes
the layers, and no layer reaches back up to it. A test double only has to provide what
the Protocol names.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .call import PipelineHost

if TYPE_CHECKING:
    from ..context import CallContext, ContextScope
    from ..provenance.chain import ProvenanceLog, Receipt, Sink
    from ..vault.tokens import Scope
    from .call import Call, Decision, ProtectedFinding
    from .routing import Attempts, Router

__all__ = [
    "AlertSource",
    "CallObserver",
    "GuardHost",
    "IncrementalDigest",
    "PipelineHost",
    "Protected",
]

#: ``observer(call, event_type, status, extra)``, see `Guard.observers`.
CallObserver = Callable[["Call", str, str, Mapping[str, Any]], None]


@dataclass(frozen=True)
class Protected:
    """The result of `Guard.protect`: what may leave the process, and how it was made."""

    payload: Any
    decision: Decision
    findings: tuple[ProtectedFinding, ...]
    tokens: tuple[str, ...]
    scope: Scope
    request_id: str | None = None
    #: token -> original for tokens issued by this call; never serialized or logged.
    _issued: Mapping[str, str] | None = None
    #: Whom the tokens were issued to: `Guard.restore` restores only their tokens.
    subject: str | None = None
    principal: str | None = None
    #: Stand-ins for token-shaped text the caller sent (restored to that text).
    _literals: Mapping[str, str] | None = None

    def __repr__(self) -> str:  # originals must never show up in a repr or a log line
        return (
            f"Protected(decision={'allow' if self.decision.allowed else 'deny'}, "
            f"findings={len(self.findings)}, tokens={list(self.tokens)})"
        )


class IncrementalDigest:
    """Feed it with `update`; `result` gives the same string `Guard.digest_bytes` would."""

    __slots__ = ("_key_id", "_mac")

    def __init__(self, mac: hmac.HMAC, key_id: str) -> None:
        self._mac = mac
        self._key_id = key_id

    def update(self, data: bytes) -> None:
        self._mac.update(data)

    def result(self) -> str:
        return f"hmac-sha256:{self._key_id}:{self._mac.hexdigest()}"


class AlertSource(Protocol):
    """Alert rules fed with every event (`aiguard.compliance.alerts.AlertEngine`)."""

    def observe(self, event: Mapping[str, Any]) -> Iterable[Any]: ...


class GuardHost(PipelineHost, Protocol):
    """What the doors and the compliance tools use of a guard, beyond the pipeline's part."""

    log: ProvenanceLog
    sinks: list[Sink]
    observers: list[CallObserver]
    router: Router
    attempts: Attempts
    #: True when a store or required sink does blocking I/O (async doors use a thread).
    stores_block: bool

    @property
    def alerts(self) -> AlertSource | None: ...

    @property
    def dsr(self) -> Any: ...

    def context(
        self,
        *,
        subject: str | None = ...,
        tenant: str = ...,
        purpose: str | None = ...,
        conversation: str | None = ...,
        principal: str | None = ...,
        use_for_training: bool = ...,
        destination: str | None = ...,
        known: Sequence[Any] = ...,
        dataset_version: str | None = ...,
        model_version: str | None = ...,
        explanation_ref: str | None = ...,
    ) -> ContextScope: ...

    def protect(
        self, payload: Any, context: CallContext | None = None, *, destination: str | None = None
    ) -> Protected: ...

    def restore_tool_arguments(
        self,
        arguments: Any,
        context: CallContext | None = None,
        *,
        tool: str | None = None,
        restore_in_links: bool = False,
    ) -> Any: ...

    def begin(
        self,
        context: CallContext,
        destination: str | None,
        *,
        model: str | None = None,
        operation: str | None = None,
        request_id: str | None = None,
        attempt: int = 1,
        extra: Mapping[str, Any] | None = None,
        url: str | None = None,
    ) -> Call: ...

    def finish(self, call: Call, event_type: str, status: str, **extra: Any) -> Receipt: ...

    def digest_bytes(self, data: bytes) -> str: ...

    def caller_id(self, label: str, tenant: str, value: str) -> str: ...

    def quotable(self, text: str) -> str: ...

    def label_of(self, text: str) -> str: ...

    def digester(self) -> IncrementalDigest: ...

    def http_client(self, transport: Any = None, **httpx_options: Any) -> Any: ...

    def async_http_client(self, transport: Any = None, **httpx_options: Any) -> Any: ...

    def flush(self, timeout: float | None = 30.0) -> None: ...

    def close(self) -> None: ...

"""`Guard`, the facade every door goes through: ``protect`` and ``restore`` plus one
provenance event per attempt."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import hashlib
import hmac
import inspect
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from pydantic import BaseModel

from ._hmac import KeyedSha256
from .classify.detectors import Detector, Finding, RegexDetector, builtin_detector, merge_findings
from .classify.levels import classified_values
from .consent.store import ConsentStore, InMemoryConsentStore
from .context import UNSET, CallContext, ContextScope, current_context, known_values
from .doors.endpoint import ArgumentSource, EndpointDecorator
from .doors.endpoint import endpoint as _endpoint
from .errors import AIGuardError, ProvenanceError, UnknownDestination
from .pipeline.call import Call, decide, dump_json
from .pipeline.host import CallObserver, IncrementalDigest, Protected
from .pipeline.routing import Attempts, Router
from .policy.killswitch import InMemoryKillSwitch, KillSwitch
from .policy.loader import load_policy
from .policy.model import Policy
from .provenance.chain import ProvenanceLog, Receipt, Sink, new_request_id
from .provenance.sinks import InMemorySink
from .vault.memory import InMemoryVault, Vault, VaultKeys
from .vault.tokens import label_for

if TYPE_CHECKING:
    from .compliance.dsr import DataSubjectRights, Principal

__all__ = ["CallObserver", "Guard", "Protected"]

_log = logging.getLogger("aiguard")

T = TypeVar("T")
_P = ParamSpec("_P")
_Client = TypeVar("_Client")

#: What a caller-chosen name may look like to be quoted: no '@', no spaces, short.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9._/:+\-]{0,120}")
_DIGIT_RUN = re.compile(r"\d{6}")


class Guard:
    """Makes calls to AI models compliant: decide, minimize, tokenize, restore, record.

    >>> guard = Guard(policy)                      # in-memory stores, events in guard.sinks[0]
    >>> client = openai.OpenAI(http_client=guard.http_client())
    >>> with guard.context(subject="cust-42", tenant="acme", purpose="inference"):
    ...     client.chat.completions.create(model="gpt-4o", messages=[...])
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        vault: Vault | None = None,
        consent: ConsentStore | None = None,
        sinks: Sequence[Sink] | None = None,
        killswitch: KillSwitch | None = None,
        detectors: Sequence[Detector] | None = None,
        log_name: str = "aiguard",
        log: ProvenanceLog | None = None,
        secret: bytes | None = None,
    ) -> None:
        self.policy = policy if policy is not None else Policy()
        if secret is not None and len(secret) < 32:
            raise ValueError("secret must be at least 32 bytes (e.g. os.urandom(32))")
        self._secret = secret or os.urandom(32)
        self._event_key = hmac.new(self._secret, b"aiguard/v1/event-digest", "sha256").digest()
        self._event_mac = KeyedSha256(self._event_key)
        self._pseudonym_key = hmac.new(self._secret, b"aiguard/v1/pseudonym", "sha256").digest()
        self.key_id = "k1"
        #: JSON object keys known to hold no finding (`Call._protect_key`).
        self._clean_keys: set[str] = set()
        # Object keys of answers in which no detector finds anything (see Call.restore_name).
        self._plain_answer_keys: set[str] = set()
        self._clean_labels: set[str] = set()
        self.vault: Vault = (
            vault
            if vault is not None
            else InMemoryVault(VaultKeys.derive(self._secret) if secret is not None else None)
        )
        _apply_retention(self.vault, self.policy)
        self.consent: ConsentStore = consent if consent is not None else InMemoryConsentStore()
        self.killswitch: KillSwitch = killswitch if killswitch is not None else InMemoryKillSwitch()
        self.sinks: list[Sink] = list(sinks) if sinks is not None else [InMemorySink()]
        if log is not None:
            self.log = log
            self.sinks = list(log.sinks)
        else:
            self.log = ProvenanceLog(log_name, self.sinks)
        #: True when a store, or a synchronous log (which writes inside `append`), does
        #: disk or network I/O: async doors then run the pipeline in a worker thread
        #: instead of on the event loop.
        self.stores_block = not (
            isinstance(self.vault, InMemoryVault)
            and isinstance(self.consent, InMemoryConsentStore)
            and isinstance(self.killswitch, InMemoryKillSwitch)
            and (self.log.background or all(isinstance(s, InMemorySink) for s in self.log.sinks))
        )
        base: list[Detector] = (
            list(detectors)
            if detectors is not None
            else [builtin_detector(locales=self.policy.locales, levels=self.policy.levels)]
        )
        base.extend(
            RegexDetector(p.kind, p.level, p.regex, name="policy") for p in self.policy.patterns
        )
        self.detectors: tuple[Detector, ...] = tuple(base)
        #: Called with (call, event type, status, extra fields) after every attempt's
        #: event is written, whichever door the call came by (metrics, tracing).
        self.observers: list[CallObserver] = []
        self.router = Router(self.policy.destinations)
        self.attempts = Attempts()
        from .compliance.alerts import AlertEngine

        # Alert rules from [alerts], evaluated on every event `finish` writes.
        self.alerts = AlertEngine.for_policy(
            self.policy, revoked=lambda d: self.killswitch.revoked(d) is not None
        )

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], **overrides: Any) -> Guard:
        """Build a guard from a policy file; keyword arguments override its stores and sinks.

        ``[provenance]`` in the policy names the sinks (``jsonl = "file"`` or
        ``[[provenance.sinks]]``), the signing key and checkpoint cadence, and whether a
        background writer seals events; without it they are kept in memory.
        ``database = "aiguard.db"`` keeps the vault, consent records and kill switch in
        that SQLite file (relative to the policy file), shared by every process that
        opens it, with the secret in ``aiguard.key`` beside it; without it they are
        kept in memory.
        """
        policy = load_policy(os.fspath(path))
        given = {name for name, value in overrides.items() if value is not None}
        try:
            if policy.keys is not None:
                from .vault.factory import provider_from_policy, vault_from_policy

                base = Path(path).resolve().parent
                provider = provider_from_policy(policy.keys, base)
                if overrides.get("secret") is None and policy.database is None:
                    # Event digests and pseudonyms must agree across processes, as with
                    # the database's aiguard.key: derived from the root key.
                    overrides["secret"] = provider.derive_secret("guard")
                if overrides.get("vault") is None:
                    vault = vault_from_policy(policy, base, provider)
                    if vault is not None:
                        overrides["vault"] = vault
            if policy.keys is not None and policy.keys.vault == "postgres":
                # Consent and kill switch shared through PostgreSQL too (the vault's pool).
                from .vault.factory import postgres_stores

                overrides.update(postgres_stores(policy, overrides))
            if policy.database is not None:
                from .vault.factory import embedded_stores

                database = Path(path).resolve().parent / Path(policy.database).expanduser()
                overrides.update(
                    embedded_stores(database, overrides, timeout=policy.database_timeout)
                )
            if policy.provenance is not None and not {"sinks", "log"} & set(overrides):
                from .provenance.config import build_log

                overrides["log"] = build_log(
                    policy.provenance, Path(path).resolve().parent, overrides.pop("log_name", None)
                )
            return cls(policy, **overrides)
        except BaseException:
            # A store or sink that fails to open must not leave the ones opened before
            # it holding connections, file locks or file handles.
            for name, value in overrides.items():
                if name not in given:
                    # A shared SQLite database belongs to none of its stores: close it too.
                    for thing in (value, getattr(value, "database", None)):
                        close = getattr(thing, "close", None)
                        if callable(close):
                            with contextlib.suppress(Exception):
                                close()
            raise

    # -- context and control ------------------------------------------------------

    def context(
        self,
        *,
        subject: str | None = UNSET,
        tenant: str = UNSET,
        purpose: str | None = UNSET,
        conversation: str | None = UNSET,
        principal: str | None = UNSET,
        use_for_training: bool = UNSET,
        destination: str | None = UNSET,
        known: Sequence[Any] = UNSET,
        dataset_version: str | None = UNSET,
        model_version: str | None = UNSET,
        explanation_ref: str | None = UNSET,
    ) -> ContextScope:
        """A ``with`` / ``async with`` block in which calls carry this context.

        Fields left out are inherited from an enclosing context (defaults: tenant
        ``"default"``, ``use_for_training=False``). ``known`` takes pydantic objects whose
        tagged fields are then found in free text wherever they appear.
        """
        return ContextScope(
            subject=subject,
            tenant=tenant,
            purpose=purpose,
            conversation=conversation,
            principal=principal,
            use_for_training=use_for_training,
            destination=destination,
            known=known,
            dataset_version=dataset_version,
            model_version=model_version,
            explanation_ref=explanation_ref,
        )

    def endpoint(
        self,
        *,
        purpose: str,
        destination: str | None = None,
        subject_from: ArgumentSource | None = None,
        tenant_from: ArgumentSource | None = None,
        conversation_from: ArgumentSource | None = None,
        enabled: bool = True,
    ) -> EndpointDecorator:
        """Decorate a handler (sync, async, FastAPI) to run each call in a `context`.

        >>> @app.post("/reply")
        ... @guard.endpoint(purpose="inference", destination="openai", subject_from="customer_id")
        ... async def draft_reply(customer_id: str, ticket: Ticket) -> Reply: ...

        ``subject_from`` / ``tenant_from`` / ``conversation_from`` name an argument (or a
        dotted path into one) or are callables receiving the `inspect.BoundArguments`.
        ``use_for_training`` comes from an argument of that name, else False. Tagged
        fields of pydantic arguments become known values for detection. The handler's
        signature is kept; ``enabled=False`` returns it undecorated. See `aiguard.doors.endpoint`.
        """
        return _endpoint(
            self,
            purpose=purpose,
            destination=destination,
            subject_from=subject_from,
            tenant_from=tenant_from,
            conversation_from=conversation_from,
            enabled=enabled,
        )

    def revoke(self, destination: str, reason: str) -> None:
        """Kill switch: every later call to ``destination`` is refused until reinstated."""
        if destination not in self.policy.destinations:
            raise UnknownDestination(f"cannot revoke {destination!r}: the policy does not name it")
        self.killswitch.revoke(destination, reason)
        self.log.append(
            {"type": "kill_switch", "destination": destination, "reasons": [f"revoked: {reason}"]}
        )

    def reinstate(self, destination: str, reason: str = "") -> None:
        """Undo `revoke`; recorded like the revocation."""
        self.killswitch.reinstate(destination)
        self.log.append(
            {
                "type": "kill_switch",
                "destination": destination,
                "reasons": [f"reinstated: {reason}"],
            }
        )

    # -- detection ----------------------------------------------------------------

    def detect(self, text: str) -> list[Finding]:
        """Findings in ``text`` with this guard's detectors (built-ins plus policy patterns)."""
        found: list[Finding] = []
        for detector in self.detectors:
            found.extend(detector.detect(text))
        return merge_findings(found)

    # -- the direct door ----------------------------------------------------------

    def protect(
        self, payload: Any, context: CallContext | None = None, *, destination: str | None = None
    ) -> Protected:
        """Decide and minimize ``payload`` (text, JSON-like data or a pydantic model).

        Returns the payload that may leave the process; a pydantic model comes back as
        its JSON-mode dict with tagged fields and findings replaced. Records one event.
        Raises the decision's typed error when the call is refused.
        """
        ctx = context or current_context() or CallContext()
        target = destination or ctx.destination
        if isinstance(payload, BaseModel):
            ctx = _with_known(ctx, payload)
        call = self.begin(ctx, target, operation="protect")
        try:
            if isinstance(payload, BaseModel):
                out = self._protect_model(call, payload)
            elif isinstance(payload, str):
                out = call.protect_text("$", payload)
            else:
                # The caller's own data, not a provider request: no key is structural
                # ({"id": "jane@example.com"} is protected), as in `dataset prepare`.
                out = call.protect_tree(payload)
                if out is payload:
                    # The walk hands back an untouched body itself; the caller's object
                    # and what may leave the process stay two objects.
                    out = copy.deepcopy(payload)
        except AIGuardError as exc:
            self.finish(call, "refusal", "denied", error=exc.code)
            raise
        call.input_digest = self.digest_bytes(dump_json(_jsonable(payload)))
        self.finish(call, "protect", "ok")
        assert call.decision is not None
        return Protected(
            out,
            call.decision,
            tuple(call.findings),
            tuple(sorted(call.issued)),
            call.scope,
            call.request_id,
            dict(call.issued),
            call.context.subject,
            call.context.principal,
            dict(call.literals),
        )

    def restore(
        self,
        answer: T,
        protected: Protected,
        *,
        restore_in_links: bool = False,
        restore_tool_arguments: bool | Sequence[str] = True,
    ) -> T:
        """Put back the originals of tokens issued in ``protected``'s scope to its subject
        (or, without one, its principal), and of every token ``protected`` holds.

        Works on text and on JSON-like data; text that only looks like a token, and
        tokens of another scope or subject, are left as they are. So are tokens that
        stand in a link (a URL, a Markdown image; `aiguard.vault.tokens.in_link`)
        unless ``restore_in_links``: shown to a reader, a link can send its original
        to a host the model named. In a provider's answer given as data, the arguments
        of tool calls keep their tokens unless ``restore_tool_arguments`` is true (the
        default) or names the tool (names and globs, as the destination setting).
        """
        call = Call(
            self,
            CallContext(
                tenant=protected.scope.tenant,
                conversation=protected.scope.conversation,
                subject=protected.subject,
                principal=protected.principal,
            ),
            None,
        )
        call.restore_links = restore_in_links
        # One name given as a string is one name, not a sequence of one-letter globs.
        call.restore_tools = (
            [restore_tool_arguments]
            if isinstance(restore_tool_arguments, str)
            else restore_tool_arguments
        )
        call.issued.update(protected._issued or {})
        call.literals.update(protected._literals or {})
        call.sent_text = dump_json(_jsonable(protected.payload)).decode("utf-8")
        if isinstance(answer, str):
            return call.restore_text("$", answer)  # type: ignore[return-value]
        restored: T = call.restore_tree(answer)
        return restored

    def restore_tool_arguments(
        self,
        arguments: T,
        context: CallContext | None = None,
        *,
        tool: str | None = None,
        restore_in_links: bool = False,
    ) -> T:
        """The originals of the tokens in a tool call's arguments, for the agent to run
        a tool it trusts with them.

        A destination that lists the tools whose arguments are restored
        (``restore_tool_arguments``) hands the others over with tokens, so that a model
        told by injected text to mail the caller's data somewhere gets no originals to
        send. Where the agent runs one of its own tools, it calls this with the call's
        ``arguments``: JSON text (OpenAI's ``function.arguments``) or the parsed object
        (Anthropic's ``input``), and gets the same shape back. Tokens restore under the
        same terms as in the call's answer: issued in ``context``'s scope (default: the
        current ``guard.context``) to its subject, or without one to its principal. A
        token in a link stays unless ``restore_in_links``. Only tokens change. Giving a
        tool originals is a disclosure: when any token was restored, a ``tool_restore``
        event records it (the ``tool`` named, the subject's digest, the token ids), so a
        data-subject export lists which tools got the person's values; a log that
        cannot take the event raises `ProvenanceError` and nothing is returned.
        """
        from .compliance.alerts import append_observed

        ctx = context or current_context() or CallContext()
        call = Call(self, ctx, None)
        call.restore_links = restore_in_links
        call.restored = set()
        restored: T = call.restore_tokens(arguments)
        if call.restored:
            append_observed(
                self,
                {
                    "type": "tool_restore",
                    "decision": "allow",
                    "status": "ok",
                    "principal": ctx.principal,
                    "tenant": ctx.tenant,
                    "subject": (
                        self.digest("subject", ctx.tenant, ctx.subject) if ctx.subject else None
                    ),
                    "conversation": (
                        self.digest("conversation", ctx.tenant, ctx.conversation)
                        if ctx.conversation
                        else None
                    ),
                    "purpose": ctx.purpose,
                    "tool": None if tool is None else self.label_of(tool),
                    "tokens": sorted(token.strip("[]") for token in call.restored),
                },
            )
        return restored

    def trusted_tool(
        self, tool: Callable[_P, T], *, restore_in_links: bool = False
    ) -> Callable[_P, T]:
        """``tool`` (a function an agent runs for the model, sync or async) with the
        tokens in its arguments restored when it runs: the decorator form of
        `restore_tool_arguments`, for a tool the agent trusts with originals though the
        destination does not list it, or for frameworks that call tools themselves
        (``@function_tool`` over ``@guard.trusted_tool``). Strings, lists and dicts
        among the arguments are restored, in the current ``guard.context``; other
        values pass as they are.
        """

        def restored(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[tuple[Any, ...], dict[str, Any]]:
            # One restore, so one event, for the call's arguments together.
            back: list[Any] = self.restore_tool_arguments(
                [list(args), kwargs], tool=name, restore_in_links=restore_in_links
            )
            return tuple(back[0]), back[1]

        name = getattr(tool, "__name__", None)
        if inspect.iscoroutinefunction(tool):
            coroutine = cast("Callable[_P, Awaitable[Any]]", tool)

            @functools.wraps(tool)
            async def run_async(*args: _P.args, **kwargs: _P.kwargs) -> Any:
                if self.stores_block:
                    # The vault and the log do I/O: not on the event loop (the thread
                    # gets a copy of the context, so the call's subject goes with it).
                    args_, kwargs_ = await asyncio.to_thread(restored, args, kwargs)
                else:
                    args_, kwargs_ = restored(args, kwargs)
                return await coroutine(*args_, **kwargs_)

            return cast("Callable[_P, T]", run_async)

        @functools.wraps(tool)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> T:
            args_, kwargs_ = restored(args, kwargs)
            return tool(*args_, **kwargs_)

        return run

    def _protect_model(self, call: Call, model: BaseModel) -> Any:
        """A model's JSON with its tagged fields taken as their kind whole, then the rest
        walked as user-defined JSON (key context, numbers, keys; no key is structural)."""
        data = model.model_dump(mode="json")
        found = list(classified_values(model))
        tagged = {_json_path(path): tag for path, _value, tag in found}
        if len(tagged) > 1 and call.batches_tokens:
            # Text fields as they are; other values (numbers, dates) go one at a time.
            values = [(tag.kind, tag.level, v) for _path, v, tag in found if isinstance(v, str)]
            with call.tokens_ahead(values):
                data = _apply_tags(call, data, "$", tagged)
        elif tagged:
            data = _apply_tags(call, data, "$", tagged)
        return call.protect_tree(data, keep=tagged.keys())

    # -- the pipeline used by every door -------------------------------------------

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
    ) -> Call:
        """Start a call: decide, and on a refusal record it and raise the typed error.

        ``url`` is where the request goes (the HTTP doors pass it): refusals name it.
        """
        call = Call(
            self, context, destination, operation, model, request_id or new_request_id(), attempt
        )
        try:
            # A required sink that is down means the call could not be accounted for:
            # fail closed before anything is sent.
            self.log.check()
        except ProvenanceError as exc:
            with contextlib.suppress(ProvenanceError):
                self.finish(call, "refusal", "denied", error=exc.code, **(extra or {}))
            raise
        call.decision = decide(self, context, destination, model, url)
        if not call.decision.allowed:
            assert call.decision.error is not None
            self.finish(call, "refusal", "denied", error=call.decision.error.code, **(extra or {}))
            raise call.decision.error
        return call

    def finish(self, call: Call, event_type: str, status: str, **extra: Any) -> Receipt:
        """Record the one event of this attempt, then tell the `observers`."""
        try:
            return self._record(call, event_type, status, extra)
        finally:
            for observer in self.observers:
                try:
                    observer(call, event_type, status, extra)
                except Exception:  # an observer (metrics, tracing) never breaks a call
                    _log.exception("call observer %r failed", observer)

    def _record(
        self, call: Call, event_type: str, status: str, extra: Mapping[str, Any]
    ) -> Receipt:
        fields = call.event_fields(type=event_type, status=status, **extra)
        # Built from strings, counts and safe integers only: no canonical-domain check.
        receipt = self.log.append(fields, trusted=True)
        if self.alerts is not None:
            # Into the same chain and sinks as the event that fired them.
            for alert in self.alerts.observe(fields):
                self.log.append(alert.event())
        if status == "ok" and call.context.purpose == "model_training" and call.context.subject:
            # The training-use ledger answers "which datasets and models hold this person".
            self.dsr.record_training(
                {call.context.subject: 1},
                tenant=call.context.tenant,
                destination=call.destination,
                model=call.request_model,
                request_id=call.request_id,
            )
        return receipt

    def provider_name(self, destination: str | None) -> str | None:
        """OpenTelemetry's ``gen_ai.provider.name`` for a destination, from its host."""
        if destination is None or destination not in self.policy.destinations:
            return None
        return self.router.provider_of(destination)

    def digest(self, label: str, tenant: str, value: str) -> str:
        """A keyed digest of an identifier (subject, conversation); never the raw id."""
        return self.digest_bytes(f"{label}\x00{tenant}\x00{value}".encode())

    def digest_bytes(self, data: bytes) -> str:
        return f"hmac-sha256:{self.key_id}:{self._event_mac.hexdigest(data)}"

    def caller_id(self, label: str, tenant: str, value: str) -> str:
        """An id the caller chose (an ``Idempotency-Key``), as events and errors may hold
        it: a keyed digest, equal for equal ids, so retries still share it."""
        return f"{label}_" + self.digest(label, tenant, value).rpartition(":")[2][:32]

    def quotable(self, text: str) -> str:
        """``text`` quoted for an error message, or a digest when it may hold data."""
        label = self.label_of(text)
        return repr(text) if label is text else label

    def label_of(self, text: str) -> str:
        """``text`` itself when it is a plain name that holds no finding (a path, a
        model, a media type the caller sent), else a digest standing for it; what
        errors and events may hold of a name the caller chose."""
        clean = self._clean_labels
        if text in clean:
            return text
        if (
            _PLAIN_NAME.fullmatch(text) is None
            or _DIGIT_RUN.search(text) is not None
            or any(d.detect(text) for d in self.detectors)
        ):
            digest = self.digest("label", "", text).rpartition(":")[2][:16]
            return f"<a value holding data, digest {digest}>"
        if len(clean) < 10_000:
            clean.add(text)
        return text

    def digester(self) -> IncrementalDigest:
        """An incremental twin of `digest_bytes`, for bodies that arrive in pieces."""
        return IncrementalDigest(hmac.new(self._event_key, digestmod=hashlib.sha256), self.key_id)

    def pseudonym(self, kind: str, value: str) -> str:
        """One-way keyed pseudonym: stable for a value, never restorable."""
        mac = hmac.new(self._pseudonym_key, f"{kind}\x00{value}".encode(), hashlib.sha256)
        return f"[{label_for(kind)}~{mac.hexdigest()[:12]}]"

    # -- data-subject rights and re-identification ---------------------------------

    @functools.cached_property
    def dsr(self) -> DataSubjectRights:
        """Export and erasure requests, retention purge, the training-use ledger."""
        from .compliance.dsr import DataSubjectRights

        return DataSubjectRights(self)

    def detokenize(
        self,
        text: str,
        *,
        principal: Principal,
        reason: str,
        tenant: str = "default",
        conversation: str | None = None,
    ) -> str:
        """Restore one scope's tokens outside the call that issued them (audited).

        Needs a `aiguard.compliance.dsr.Principal` holding the ``aiguard:detokenize`` scope and a
        stated reason; records a ``reidentify`` event either way.
        """
        return self.dsr.detokenize(
            text, principal=principal, reason=reason, tenant=tenant, conversation=conversation
        )

    # -- the HTTP door ----------------------------------------------------------------

    def http_client(self, transport: Any = None, **httpx_options: Any) -> Any:
        """An HTTP client for ``OpenAI(http_client=...)`` that protects every call.

        ``transport`` is the inner transport (default: a real network transport with the
        OpenAI SDK's connection limits and timeouts); pass a fake's transport in tests.
        The client is an ``httpx2.Client`` when the transport is an httpx2 one, or when no
        transport is given and httpx2 (what current OpenAI / Anthropic SDKs use) is
        installed; otherwise an ``httpx.Client``. It is typed ``Any`` because which of the
        two it is depends on what is installed, and the SDKs annotate the one they use.
        """
        from .doors.transport import build_client

        return build_client(self, transport, asynchronous=False, options=httpx_options)

    def async_http_client(self, transport: Any = None, **httpx_options: Any) -> Any:
        """The async twin of `http_client`, for ``AsyncOpenAI`` / ``AsyncAnthropic``."""
        from .doors.transport import build_client

        return build_client(self, transport, asynchronous=True, options=httpx_options)

    def wrap(self, client: _Client, *, transport: Any = None) -> _Client:
        """A copy of an OpenAI or Anthropic SDK client whose calls go through this guard.

        ``guard.wrap(openai.OpenAI())`` is ``OpenAI(http_client=guard.http_client())``
        for a client built elsewhere: the copy keeps its API key, base URL, headers,
        retries and timeout, and gets `http_client` (`async_http_client` for an async
        client). ``transport`` is the inner transport, as for `http_client` (a fake's in
        tests). The client passed in is left as it was: use the one returned.
        Raises `TypeError` for anything that is not such a client.
        """
        from .doors.transport import module_for

        copy = getattr(client, "copy", None)
        bases = {cls.__name__ for cls in type(client).__mro__}
        if not callable(copy) or not bases & {"SyncAPIClient", "AsyncAPIClient"}:
            raise TypeError(
                f"wrap() takes an OpenAI or Anthropic SDK client, not {type(client).__name__}; "
                "for another HTTP client pass http_client=guard.http_client() yourself"
            )
        asynchronous = "AsyncAPIClient" in bases
        if transport is None:
            # The SDK's own HTTP library (httpx or httpx2), which its client must be.
            current = getattr(client, "_client", None)
            module = module_for(None)
            for cls in type(current).__mro__:
                if cls.__module__.split(".", 1)[0] == "httpx":
                    import httpx

                    module = httpx
                    break
            if module.__name__ == "httpx":
                factory = module.AsyncHTTPTransport if asynchronous else module.HTTPTransport
                transport = factory()
        http = self.async_http_client(transport) if asynchronous else self.http_client(transport)
        return cast("_Client", copy(http_client=http))

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until every event so far is written and flushed by every sink."""
        self.log.flush(timeout)

    def close(self) -> None:
        """Write what is queued, seal it with a final checkpoint, close sinks and stores."""
        self.log.close()
        for store in (self.vault, self.consent, self.killswitch):
            close = getattr(store, "close", None)
            if callable(close):
                close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _apply_retention(vault: Vault, policy: Policy) -> None:
    """Vault entries expire with the destinations' retention, unless the vault sets its own.

    A token may go to several destinations, so an entry lives as long as the longest
    retention among them: the mapping must outlive every copy of the prompt a provider
    keeps. ``aiguard dsr purge`` (or ``purge_expired``) deletes what has run out.
    """
    days = [d.retention_days for d in policy.destinations.values() if d.retention_days]
    if days and getattr(vault, "retention", False) is None:
        from datetime import timedelta

        vault.retention = timedelta(days=max(days))  # type: ignore[attr-defined]


def _with_known(ctx: CallContext, model: BaseModel) -> CallContext:
    from dataclasses import replace

    return replace(ctx, known=ctx.known + known_values([model]))


def _apply_tags(call: Call, node: Any, path: str, tagged: Mapping[str, Any]) -> Any:
    """``node`` with every tagged scalar replaced per its tag's kind and level."""
    if isinstance(node, dict):
        return {k: _apply_tags(call, v, f"{path}.{k}", tagged) for k, v in node.items()}
    if isinstance(node, list):
        return [_apply_tags(call, v, f"{path}[{i}]", tagged) for i, v in enumerate(node)]
    tag = tagged.get(path)
    if tag is None or node is None or isinstance(node, bool):
        return node
    text = node if isinstance(node, str) else json.dumps(node)
    replacement = call.apply(path, 0, len(text), text, tag.kind, tag.level)
    return node if replacement is None else replacement


def _json_path(path: str) -> str:
    # classified_values uses "a.b[0]"; map_strings uses "$.a.b[0]".
    return "$." + path


def _jsonable(payload: Any) -> Any:
    if isinstance(payload, BaseModel):
        return payload.model_dump(mode="json")
    return payload


def wrap(client: _Client, guard: Guard, *, transport: Any = None) -> _Client:
    """``guard.wrap(client)``: a copy of an OpenAI / Anthropic SDK client through ``guard``."""
    return guard.wrap(client, transport=transport)

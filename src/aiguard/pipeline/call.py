"""The per-call pipeline shared by every door: decide, protect, restore, record.

Kept free of any HTTP library so the sync and async transports, the decorator and the
direct API all run exactly this code.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import hashlib
import itertools
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard
from urllib.parse import urlsplit

from .._json import loads as loads_json
from .._json import read_whole
from ..classify._decode import detect_decoded
from ..classify.detectors import Detector, Finding, KnownValuesDetector, merge_findings
from ..classify.kinds import DEFAULT_LEVELS
from ..classify.levels import Level
from ..classify.structured import KEY_KINDS, value_label
from ..consent.store import ConsentRecord
from ..context import CallContext
from ..errors import (
    AIGuardError,
    ConsentRequired,
    DestinationRevoked,
    MalformedPayload,
    PolicyDenied,
    UnknownDestination,
    VaultError,
)
from ..policy.model import Action, DestinationPolicy, Policy, tool_restored
from ..providers.base import parse_json_text
from ..providers.walk import (
    STRUCTURAL_KEYS,
    Scalar,
    kept_tool_paths,
    map_all_strings,
    map_strings,
    scalar_spans,
)
from ..vault._core import KeyedVault
from ..vault.memory import OwnerVault
from ..vault.surrogates import SURROGATE_RE, from_surrogate, to_surrogate
from ..vault.tokens import (
    MIN_SUFFIX,
    TOKEN_RE,
    Scope,
    format_token,
    in_link,
    keyed_suffix,
    may_hold_links,
    restore_in_context,
    scope_of,
)

if TYPE_CHECKING:
    from ..consent.store import ConsentStore
    from ..policy.killswitch import KillSwitch
    from ..providers.base import Adapter
    from ..vault.memory import Vault

__all__ = ["LITERAL_KIND", "Call", "Decision", "PipelineHost", "ProtectedFinding"]

#: The kind of the stand-ins for token-shaped text a caller sent (`Call._escape_tokens`).
LITERAL_KIND = "token_literal"

# Text aiguard itself put into a payload: tokens, pseudonyms, redaction markers.
_SURROGATE_RE = re.compile(
    TOKEN_RE.pattern + r"|\[[A-Z][A-Z0-9_]*~[0-9a-f]{12}\]|\[REDACTED:[a-z0-9_]+\]"
)


#: Deepest JSON nesting any door walks; deeper payloads are refused, not sent unscanned.
MAX_JSON_DEPTH = 128
#: JSON numbers with fewer digits cannot be an identifier worth a token (cards, phones,
#: national ids all have more), so they are not scanned.
_MIN_SCANNED_DIGITS = 6
_CLEAN_KEYS_LIMIT = 50_000
_CLEAN_NAME_LENGTH = 100
_KEY_NORMAL = re.compile(r"[^a-z0-9]")


def _owner_aware(vault: Any) -> TypeGuard[OwnerVault]:
    # The built-in vaults by a plain class check: a Protocol isinstance costs tens of µs.
    return isinstance(vault, (KeyedVault, OwnerVault))


def _key_kind(key: str | None) -> str | None:
    """The kind a key's name gives its value (`KEY_KINDS`), as `detect_json` reads it."""
    if key is None:
        return None
    return KEY_KINDS.get(_KEY_NORMAL.sub("", key.lower()))


class PipelineHost(Protocol):
    """What one call (`aiguard.pipeline.call.Call`, `decide`) reads from its guard."""

    policy: Policy
    vault: Vault
    consent: ConsentStore
    killswitch: KillSwitch
    detectors: tuple[Detector, ...]

    def provider_name(self, destination: str | None) -> str | None: ...

    def detect(self, text: str) -> list[Finding]: ...

    def digest(self, label: str, tenant: str, value: str) -> str: ...

    def pseudonym(self, kind: str, value: str) -> str: ...

    def reinstate(self, destination: str, reason: str = "") -> None: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a call may go out, and on which grounds."""

    allowed: bool
    destination: str | None
    purpose: str | None
    legal_basis: str | None = None
    reasons: tuple[str, ...] = ()
    consent: ConsentRecord | None = None
    #: Set when denied: the typed error the call raises.
    error: AIGuardError | None = None


@dataclass(frozen=True, slots=True)
class ProtectedFinding:
    """A finding in a payload, where it was (JSON path and span) and what was done to it."""

    path: str
    start: int
    end: int
    kind: str
    level: Level
    action: Action
    token: str | None = None


def shown_url(guard: PipelineHost, url: str) -> str:
    """``url`` fit for an error message: origin and path, nothing detected in them.

    The query (API keys travel there), fragment and user info are dropped, and any value
    the guard's detectors find in what is left is written as its kind.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    text = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else parts.path
    # Segments are scanned as words: the engine wants a boundary a slash does not give.
    spaced = text.replace("/", " ")
    for finding in sorted(guard.detect(spaced), key=lambda f: f.start, reverse=True):
        text = f"{text[: finding.start]}[{finding.kind.upper()}]{text[finding.end :]}"
    return text


def decide(
    guard: PipelineHost,
    context: CallContext,
    destination: str | None,
    model: str | None,
    url: str | None = None,
) -> Decision:
    """Default deny: every check must pass, and the first one that fails names the fix.

    ``url`` is where the request goes, when a door knows it: a refusal names it.
    """
    policy = guard.policy
    purpose = context.purpose
    # The policy's mode until the destination is known; then the destination's own.
    mode = policy.mode

    def deny(error: AIGuardError, legal_basis: str | None = None) -> Decision:
        if mode == "monitor":
            return Decision(True, destination, purpose, legal_basis, ("monitor: " + error.message,))
        return Decision(False, destination, purpose, legal_basis, (error.message,), None, error)

    if destination is None or destination not in policy.destinations:
        shown = shown_url(guard, url) if url else None
        if destination is not None:
            where = f"the destination {destination!r}"
        elif shown is not None:
            where = f"{shown}, a destination the policy does not name (no base_url covers it)"
        else:
            where = "a destination the policy does not name"
        error = UnknownDestination(
            f"the request goes to {where}; add it under [destinations] with its base_url, "
            "or send the call to an approved destination"
            + ("" if destination is None else " (the policy does not name it)"),
            url=shown,
        )
        return deny(error)
    target = policy.destinations[destination]
    mode = policy.mode_for(destination)
    try:
        revocation = guard.killswitch.revoked(destination)
    except Exception as exc:  # fail closed: an unreadable kill switch is not "not revoked"
        return deny(
            DestinationRevoked(
                f"the kill switch could not be read ({_fault_text(exc)}); calls to "
                f"{destination!r} are refused until it can be"
            )
        )
    if revocation is not None:
        return deny(
            DestinationRevoked(
                f"destination {destination!r} was revoked ({revocation.reason}); "
                f"calls stay refused until guard.reinstate({destination!r})"
            )
        )
    if not target.approved:
        return deny(
            PolicyDenied(
                f"destination {destination!r} is not approved; set approved = true under "
                f"[destinations.{destination}] once it has been reviewed"
            )
        )
    if purpose is None:
        return deny(
            PolicyDenied(
                "the call has no purpose; wrap it in guard.context(purpose=...), "
                "e.g. purpose='inference'"
            )
        )
    spec = policy.purpose(purpose)
    if spec is None:
        return deny(
            PolicyDenied(
                f"unknown purpose {purpose!r}; use a built-in purpose "
                f"({', '.join(sorted(policy.all_purposes))}) or declare it under [purposes]"
            )
        )
    if purpose not in target.purposes:
        return deny(
            PolicyDenied(
                f"destination {destination!r} is not approved for purpose {purpose!r}; "
                f"it allows {', '.join(target.purposes) or 'no purpose'}",
            ),
            spec.legal_basis,
        )
    if not target.allows_model(model):
        return deny(
            PolicyDenied(
                f"model {model!r} is not allowed at destination {destination!r}; "
                f"allowed: {', '.join(target.models)}"
            ),
            spec.legal_basis,
        )
    if spec.requires_training_flag and not context.use_for_training:
        return deny(
            ConsentRequired(
                f"purpose {purpose!r} needs use_for_training=True in guard.context(...) "
                "and a consent record; the caller's flag is False"
            ),
            spec.legal_basis,
        )
    if target.stage == "internal" and not policy.rollout.is_internal(context.principal):
        return deny(
            PolicyDenied(
                f"destination {destination!r} is in stage 'internal': only principals matching "
                "[rollout] internal_principals may call it, and this call's principal "
                f"({context.principal!r}) does not; pass guard.context(principal=...) or "
                "widen the stage"
            ),
            spec.legal_basis,
        )
    # Stage opt_in: only subjects with a valid consent record for the purpose, even when
    # the purpose itself does not need consent.
    needs = (
        f"purpose {purpose!r} needs"
        if spec.requires_consent
        else f"destination {destination!r} is in stage 'opt_in' and needs"
    )
    consent: ConsentRecord | None = None
    if spec.requires_consent or target.stage == "opt_in":
        if context.subject is None:
            return deny(
                ConsentRequired(
                    f"{needs} the data subject's consent, but the call names "
                    "no subject; pass guard.context(subject=...)"
                ),
                spec.legal_basis,
            )
        try:
            consent = guard.consent.current(context.subject, purpose, tenant=context.tenant)
        except Exception as exc:  # fail closed: an unreachable store is not a yes
            return deny(
                ConsentRequired(
                    f"the consent store could not be read ({_fault_text(exc)}); "
                    f"{needs} consent, so the call is refused"
                ),
                spec.legal_basis,
            )
        if consent is not None and not _is_grant(consent):
            # A store answering something other than a grant record (a bug, a schema
            # mismatch, garbage) is not a yes.
            return deny(
                ConsentRequired(
                    f"the consent store answered {type(consent).__name__}, not a consent "
                    f"grant; {needs} consent, so the call is refused"
                ),
                spec.legal_basis,
            )
        if consent is None:
            return deny(
                ConsentRequired(
                    f"the subject has no valid consent for purpose {purpose!r} ({needs} it); "
                    "record it "
                    f"with guard.consent.grant(subject, {purpose!r}, terms_version=...)"
                ),
                spec.legal_basis,
            )
    return Decision(True, destination, purpose, spec.legal_basis, (), consent)


def _is_grant(record: object) -> bool:
    return isinstance(record, ConsentRecord) and record.action == "grant"


@dataclass
class Call:
    """One attempt of one logical call: its context, decision, findings and tokens."""

    guard: PipelineHost
    context: CallContext
    destination: str | None
    operation: str | None = None
    request_model: str | None = None
    request_id: str | None = None
    attempt: int = 1
    started_ns: int = field(default_factory=time.perf_counter_ns)
    decision: Decision | None = None
    findings: list[ProtectedFinding] = field(default_factory=list)
    issued: dict[str, str] = field(default_factory=dict)
    #: Withheld values per kind (plain dicts: a Counter costs ten times one to make).
    leaks: dict[str, int] = field(default_factory=dict)
    fail_open_used: bool = False
    input_digest: str | None = None
    output_digest: str | None = None
    #: What actually left the process; a value sent raw is not a leak when it comes back.
    sent_text: str = ""
    _detectors: Sequence[Detector] | None = None
    #: Hashes of withheld values already counted (see `record_leak`).
    _leaked: set[bytes] = field(default_factory=set, repr=False)
    #: Values below the output rule's level that the answer holds and the call never sent.
    unsent: dict[str, int] = field(default_factory=dict)
    #: Withheld values per answer field (JSON path, then kind): where the rule acted.
    leak_paths: dict[str, Counter[str]] = field(default_factory=dict)
    _leaked_at: set[bytes] = field(default_factory=set, repr=False)
    _flagged: set[bytes] = field(default_factory=set, repr=False)
    #: What each key of model-written JSON names (`_keyed_pairs`), for this call only:
    #: a streamed answer repeats its keys in every event's window.
    _key_kinds: dict[str, str | None] = field(default_factory=dict, repr=False)
    #: Token-shaped text the caller sent, re-tokenized: its stand-in -> the text itself.
    literals: dict[str, str] = field(default_factory=dict, repr=False)
    #: Token-shaped text that restored to nothing this caller may see (answers), plus
    #: token-shaped text in the request: what guessing or replaying tokens looks like.
    unknown_tokens: int = 0
    #: Tokens of the caller's left unrestored because they stood in a link of the answer
    #: (`aiguard.vault.tokens.in_link`; the destination's ``restore_in_links``).
    links_kept: int = 0
    #: Whether tokens in links are restored: None follows the destination's
    #: ``restore_in_links`` (no destination: they are not).
    restore_links: bool | None = None
    #: Tokens of the caller's left unrestored in the arguments of a call of a tool the
    #: destination does not restore (``restore_tool_arguments``).
    tool_tokens_kept: int = 0
    #: The tokens each of the three counts above has counted from the answer, so that a
    #: token counts once per call however often the answer states it (a Responses stream
    #: restates its text in `.done` events and ``response.completed``). Made on first use.
    _counted: dict[str, set[str]] | None = field(default=None, repr=False)
    #: Tokens swapped for their originals, when a caller asks to know (a late restore
    #: records which went to a tool); None: not collected.
    restored: set[str] | None = None
    #: Which tools' call arguments are restored: None follows the destination's
    #: ``restore_tool_arguments`` (no destination: every tool's).
    restore_tools: bool | Sequence[str] | None = None
    #: Set while such arguments are restored: tokens stay, the output rule still applies.
    in_kept_tool: bool = field(default=False, repr=False)
    #: Where the call's tokens live. Made once: a call's context never changes, and each
    #: token issued or looked up needs it.
    scope: Scope = field(init=False, repr=False)
    #: While a text or an object is protected: the tokens its values got in one batch,
    #: or the vault's failure for them (`tokens_ahead`), by (kind, value).
    _ahead: dict[tuple[str, str], str | Exception] | None = field(default=None, repr=False)
    #: What the vault answered this call for a token (its original, or None): an answer
    #: states a token many times (a Responses stream five), the vault is asked once.
    _originals: dict[str, str | None] | None = field(default=None, repr=False)
    #: Whether the vault wants the values of one text, object or model issued together,
    #: and one text's tokens read together (`KeyedVault.prefers_batches`).
    batches_tokens: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.scope = scope_of(self.context.tenant, self.context.conversation)
        vault = self.guard.vault
        self.batches_tokens = isinstance(vault, KeyedVault) and vault.prefers_batches

    @property
    def target(self) -> DestinationPolicy:
        assert self.destination is not None
        return self.guard.policy.destinations[self.destination]

    def detectors(self) -> Sequence[Detector]:
        if self._detectors is None:
            base = self.guard.detectors
            known = KnownValuesDetector(self.context.known) if self.context.known else None
            self._detectors = (*base, known) if known else base
        return self._detectors

    # -- protecting ---------------------------------------------------------------

    def protect_text(self, path: str, text: str) -> str:
        if "[" in text and "_" in text:
            text = self._escape_tokens(text)
        # Decoded views too: a percent-encoded or base64 value is protected whole.
        found = detect_decoded(self.detectors(), text)
        if not found:
            return text
        findings = merge_findings(found)
        if len(findings) > 1 and self.batches_tokens:
            with self.tokens_ahead([(f.kind, f.level, text[f.start : f.end]) for f in findings]):
                return self._replace_findings(path, text, findings)
        return self._replace_findings(path, text, findings)

    def _replace_findings(self, path: str, text: str, findings: Sequence[Finding]) -> str:
        pieces: list[str] = []
        cursor = 0
        for finding in findings:
            value = text[finding.start : finding.end]
            replacement = self.apply(
                path, finding.start, finding.end, value, finding.kind, finding.level
            )
            if replacement is None:
                continue
            pieces.append(text[cursor : finding.start])
            pieces.append(replacement)
            cursor = finding.end
        if not pieces:
            return text
        pieces.append(text[cursor:])
        return "".join(pieces)

    @contextlib.contextmanager
    def tokens_ahead(self, values: Iterable[tuple[str, Level, str]]) -> Iterator[None]:
        """While inside, `apply` takes the tokens of ``values`` ((kind, level, value)) from
        one `tokenize_many` issued on entry.

        On a vault that stores remotely each new value costs a lookup and a transaction
        of its own (about 2 ms on PostgreSQL over loopback): a message with four new
        values waits for eight round trips, where one batch needs two. Nothing is issued
        ahead when one of the values is one the policy blocks: `apply` refuses the call
        at that value, as it always has, and the values after it are never stored. A
        failing batch is kept as the failure of each of its values, so `apply` refuses
        the call or falls open exactly as for one value, without asking the vault again.
        """
        vault = self.guard.vault
        policy = self.guard.policy
        target = self.target
        wanted: dict[tuple[str, str], None] = {}
        for kind, level, value in values:
            action = policy.action_for(target, level, kind)
            if action is Action.BLOCK:
                wanted.clear()
                break
            if action is Action.TOKENIZE:
                wanted[(kind, value)] = None
        outer = self._ahead
        if outer:
            # Inside an object issued ahead: its values are known already.
            wanted = {key: None for key in wanted if key not in outer}
        if len(wanted) > 1 and isinstance(vault, KeyedVault):
            ctx = self.context
            items = [(kind, value, ctx.subject) for kind, value in wanted]
            issued: dict[tuple[str, str], str | Exception]
            try:
                tokens = vault.tokenize_many(self.scope, items, principal=ctx.principal)
                if len(tokens) != len(items):
                    raise VaultError(
                        f"the vault returned {len(tokens)} tokens for {len(items)} values"
                    )
            except Exception as exc:
                issued = dict.fromkeys(wanted, exc)
            else:
                issued = dict(zip(wanted, tokens, strict=True))
            self._ahead = {**outer, **issued} if outer else issued
        try:
            yield
        finally:
            self._ahead = outer

    def _escape_tokens(self, text: str) -> str:
        """Token-shaped text from the caller is data, never a restore key.

        Each is replaced by a stand-in token known to this call only, which restores to
        the text the caller sent: a guessed or replayed token of someone else's value
        reaches the model as an opaque stand-in and comes back as it was sent.
        """

        def escape(match: re.Match[str]) -> str:
            literal = match.group(0)
            if literal in self.literals:  # a stand-in produced by this call (a retry)
                return literal
            original = self._own_token(literal)
            if original is not None:
                # The caller's own token coming back (an agent's history holds the tool
                # calls whose arguments kept their tokens): it stays the same token,
                # as the original it stands for would have become.
                self.issued.setdefault(literal, original)
                return literal
            digest = self.guard.digest("token-literal", self.context.tenant, literal)
            suffix = keyed_suffix(bytes.fromhex(digest.rpartition(":")[2]), MIN_SUFFIX)
            stand_in = format_token(LITERAL_KIND, suffix)
            if stand_in not in self.literals:
                self.unknown_tokens += 1
            self.literals[stand_in] = literal
            return stand_in

        if self.batches_tokens:
            self._ask_ahead(text, strict=False)
        return TOKEN_RE.sub(escape, text)

    def _own_token(self, token: str) -> str | None:
        """The original of ``token`` when it was issued in this scope to this call's
        owner (its subject, or without one its principal), else None."""
        original = self.issued.get(token)
        if original is not None:
            return original
        try:
            return self._vault_original(token)
        except Exception:
            # A vault that cannot say leaves the token a literal stand-in, as any
            # token-shaped text is: nothing raw goes out, the conversation goes on.
            return None

    def _vault_original(self, token: str) -> str | None:
        """What the vault says ``token`` restores to for this call's owner, asked once
        per call (`_originals`); raises what the vault raises. A vault that cannot say
        whom a token was issued to restores nothing beyond what this call sent (fail
        closed)."""
        known = self._originals
        if known is not None and token in known:
            return known[token]
        vault = self.guard.vault
        if not _owner_aware(vault):
            return None
        ctx = self.context
        original = vault.detokenize_for(self.scope, token, ctx.subject, ctx.principal)
        if known is None:
            self._originals = known = {}
        known[token] = original
        return original

    def _ask_ahead(self, text: str, *, strict: bool) -> None:
        """Ask a batching vault for every token of ``text`` this call has not seen, in
        one read, before they are swapped one by one (`lookup`, `_own_token`).

        A text with one such token or none asks nothing here. A vault that fails raises
        `VaultError` with ``strict`` (an answer is not returned half restored) and
        otherwise leaves each token to be asked alone, as before.
        """
        known = self._originals or {}
        issued, literals = self.issued, self.literals
        wanted = [
            token
            for token in dict.fromkeys(m.group(0) for m in TOKEN_RE.finditer(text))
            if token not in issued and token not in literals and token not in known
        ]
        vault = self.guard.vault
        if len(wanted) < 2 or not isinstance(vault, KeyedVault):
            return
        ctx = self.context
        try:
            found = vault.detokenize_many_for(self.scope, wanted, ctx.subject, ctx.principal)
        except AIGuardError:
            if strict:
                raise
            return
        except Exception as exc:
            if strict:
                raise _restore_failed(exc) from None
            return
        if self._originals is None:
            self._originals = found
        else:
            self._originals.update(found)

    def apply(
        self, path: str, start: int, end: int, value: str, kind: str, level: Level
    ) -> str | None:
        """Apply the policy's action to one value; None means keep it as it is."""
        policy: Policy = self.guard.policy
        action = policy.action_for(self.target, level, kind)
        token: str | None = None
        if action is Action.BLOCK:
            self.findings.append(ProtectedFinding(path, start, end, kind, level, action))
            raise PolicyDenied(
                f"the policy blocks values of kind {kind!r} for destination "
                f"{self.destination!r} (found at {path}); remove it from the payload or "
                "change [actions.kinds] in the policy"
            )
        if action is Action.KEEP:
            replacement = None
        elif action is Action.TOKENIZE:
            try:
                token = self._tokenize(kind, value)
            except Exception as exc:
                if not self.target.fail_open:
                    raise VaultError(
                        f"the vault could not issue a token ({_fault_text(exc)}); the call "
                        "was not sent. Check the vault, or set fail_open = true for this "
                        "destination to send redacted values instead"
                    ) from (exc if isinstance(exc, AIGuardError) else None)
                self.fail_open_used = True
                action = Action.REDACT
                replacement = redact(kind)
            else:
                # Case variants of a name share a token; the first spelling seen wins.
                self.issued.setdefault(token, value)
                replacement = token
                if kind in self.guard.policy.surrogates:
                    # Same token, written in the value's shape for prompts that need it.
                    replacement = to_surrogate(token) or token
        elif action is Action.PSEUDONYMIZE:
            replacement = self.guard.pseudonym(kind, value)
        elif action is Action.MASK:
            replacement = mask(kind, value)
        else:
            replacement = redact(kind)
        self.findings.append(ProtectedFinding(path, start, end, kind, level, action, token))
        return replacement

    def _tokenize(self, kind: str, value: str) -> str:
        if self._ahead is not None:
            issued = self._ahead.get((kind, value))
            if isinstance(issued, Exception):
                raise issued
            if issued is not None:
                return issued
        vault = self.guard.vault
        ctx = self.context
        if _owner_aware(vault):
            # Without a subject the principal owns the value (see `lookup`).
            return vault.tokenize(self.scope, kind, value, ctx.subject, principal=ctx.principal)
        return vault.tokenize(self.scope, kind, value, ctx.subject)

    def protect_json(self, body: Any, adapter: Adapter | None = None) -> Any:
        """Protect a JSON body with key context (`detect_json` semantics), the safety net.

        Every non-structural string is protected; a value under a key that names a kind
        (``ssn``, ``password``, ``card_number``, see `KEY_KINDS`) is that kind whole;
        numbers long enough to be an identifier are scanned too, and one holding a
        finding goes out as a string token; object keys are data like values. Strings
        that are JSON text themselves (tool arguments and results) are parsed and
        protected the same way, with their own keys as context, and written back as
        JSON. Strings under the adapter's ``keep`` paths pass untouched. Nesting deeper
        than `MAX_JSON_DEPTH` is refused (`MalformedPayload`), never walked unscanned.
        """
        keep = adapter.keep if adapter is not None else None
        free = adapter.free if adapter is not None else None
        return self._protect_node(body, "$", None, free, keep, False, 0)

    def protect_tree(
        self, node: Any, path: str = "$", *, keep: Container[str] | None = None
    ) -> Any:
        """`protect_json` for JSON the user defined: no key is structural. Strings at a
        path in ``keep`` pass untouched (values the caller already protected)."""
        return self._protect_node(node, path, None, None, keep, True, 0)

    def _protect_node(
        self,
        node: Any,
        path: str,
        key: str | None,
        free: Container[str] | None,
        keep: Container[str] | None,
        everything: bool,
        depth: int,
    ) -> Any:
        if depth > MAX_JSON_DEPTH:
            raise MalformedPayload(
                f"the payload nests deeper than {MAX_JSON_DEPTH} levels, so aiguard cannot "
                "inspect it whole; it was not sent"
            )
        if isinstance(node, str):
            if not everything and key is not None and key in STRUCTURAL_KEYS:
                return node
            if keep and path in keep:
                return node
            return self._protect_string(path, key, node, depth)
        if isinstance(node, dict):
            # A user-defined object (a tool's input, metadata) is also read whole once
            # its values are protected: a key or value can name another's kind.
            whole = not everything and bool(free and path in free)
            everything = everything or whole
            # {"name": "ssn", "value": "..."}: a sibling names the value's kind.
            label = value_label(node) if "value" in node else None
            keyed = (
                self._keyed_values(node, path, label, keep, everything)
                if self.batches_tokens and len(node) > 1
                else ()
            )
            if len(keyed) > 1:
                with self.tokens_ahead(keyed):
                    out = self._protect_items(node, path, label, free, keep, everything, depth)
            else:
                out = self._protect_items(node, path, label, free, keep, everything, depth)
            result = node if out is None else out
            return self._protect_in_context(result, path) if whole else result
        if isinstance(node, list):
            items: list[Any] | None = None
            for i, v in enumerate(node):
                new = self._protect_node(v, f"{path}[{i}]", key, free, keep, everything, depth + 1)
                if new is not v:
                    if items is None:
                        items = list(node)
                    items[i] = new
            return node if items is None else items
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            return self._protect_number(path, key, node)
        return node

    def _protect_items(
        self,
        node: dict[Any, Any],
        path: str,
        label: str | None,
        free: Container[str] | None,
        keep: Container[str] | None,
        everything: bool,
        depth: int,
    ) -> dict[Any, Any] | None:
        """``node``'s keys and values protected: a new object, or None when nothing
        changed (an untouched body comes back as itself, and the transport then forwards
        the request as it was)."""
        out: dict[Any, Any] | None = None
        for position, (k, v) in enumerate(node.items()):
            where = f"{path}.{k}"
            name = self._protect_key(where, k) if isinstance(k, str) else k
            context = label if label is not None and k == "value" else k
            new = self._protect_node(v, where, context, free, keep, everything, depth + 1)
            if out is None and (name is not k or new is not v):
                out = dict(itertools.islice(node.items(), position))
            if out is not None:
                out[name] = new
        return out

    def _keyed_values(
        self,
        node: dict[Any, Any],
        path: str,
        label: str | None,
        keep: Container[str] | None,
        everything: bool,
    ) -> list[tuple[str, Level, str]]:
        """The values of ``node`` that `_apply_key_kind` will take whole because their
        key names their kind (text only, not JSON text, not kept or structural), for
        `tokens_ahead`: a tool's arguments or a record issued in one batch."""
        values = []
        for k, v in node.items():
            key = label if label is not None and k == "value" else k
            if not isinstance(v, str) or not v or not isinstance(key, str):
                continue
            kind = _key_kind(key)
            if (
                kind is None
                or "[" in v
                or v.lstrip()[:1] in ("{", "[")
                or (not everything and key in STRUCTURAL_KEYS)
                or (keep and f"{path}.{k}" in keep)
            ):
                continue
            values.append((kind, self._key_level(kind), v))
        return values

    def _protect_string(
        self, path: str, key: str | None, text: str, depth: int, parse: bool = True
    ) -> str:
        if not text:
            return text
        inner = parse_json_text(text) if parse else None
        if inner is not None:
            protected = self._protect_node(inner, path, None, None, None, True, depth + 1)
            whole = self._protect_in_context(protected, path)
            # A repeated key hides a value the parsed text does not hold: written anew.
            if whole is protected and protected == inner and read_whole(text.strip(), inner):
                return text
            return json.dumps(whole, ensure_ascii=False)
        kind = _key_kind(key)
        if kind is not None:
            replacement = self._apply_key_kind(path, kind, text)
            if replacement is not None:
                return replacement
        return self.protect_text(path, text)

    def _protect_in_context(self, doc: Any, path: str) -> Any:
        """``doc`` (the caller's JSON text, or a user-defined object of the body, each
        value already protected on its own), or a protected copy of it, where the whole
        shows a value that is one only next to a word of its kind in another key or
        value (``{"id_type": "SSN", "id_number": "219099998"}``). The part found is
        replaced as the policy says (see `_replace_found`)."""
        if not isinstance(doc, (dict, list)):
            return doc
        text, _ = scalar_spans(doc, path)
        found = detect_decoded(self.detectors(), text)
        if not found:
            return doc
        tokens = [m.span() for m in TOKEN_RE.finditer(text)] if "[" in text else []
        spans = [
            (f.start, f.end, f.kind, f.level)
            for f in merge_findings(found)
            if not any(s < f.end and f.start < e for s, e in tokens)
        ]

        def replace(here: str, lo: int, hi: int, part: str, span: _Span) -> str | None:
            return self.apply(here, lo, hi, part, span[2], span[3])

        return self._replace_found(doc, path, spans, replace) if spans else doc

    def protect_scalar(self, path: str, name: str | None, text: str) -> str:
        """One named value outside a JSON body (a header, a query parameter), with its
        name as key context."""
        if not text:
            return text
        return self._protect_string(path, name, text, 0, parse=False)

    def _apply_key_kind(self, path: str, kind: str, text: str) -> str | None:
        """The key names the value's kind: the whole value is one finding of it."""
        if "[" in text and "_" in text and TOKEN_RE.search(text):
            return None  # token-shaped text is escaped by protect_text first
        return self.apply(path, 0, len(text), text, kind, self._key_level(kind))

    def _protect_number(self, path: str, key: str | None, number: float) -> Any:
        text = json.dumps(number)
        kind = _key_kind(key)
        if kind is not None:
            replacement = self._apply_key_kind(path, kind, text)
            if replacement is not None:
                return replacement
        if sum(ch.isdigit() for ch in text) < _MIN_SCANNED_DIGITS:
            return number
        protected = self.protect_text(path, text)
        return number if protected == text else protected

    def _protect_key(self, path: str, key: str) -> str:
        return self.protect_name(path, key)

    def protect_name(self, path: str, text: str) -> str:
        """`protect_text` for the short strings every request repeats (object keys, URL
        path segments, header values): one without a finding is remembered per guard,
        so the next request skips detection. Not while the call has known values (its
        own detector could find what the others did not)."""
        clean: set[str] | None = getattr(self.guard, "_clean_keys", None)
        if clean is None or self.context.known or len(text) > _CLEAN_NAME_LENGTH:
            return self.protect_text(path, text)
        if text in clean:
            return text
        protected = self.protect_text(path, text)
        if protected == text and len(clean) < _CLEAN_KEYS_LIMIT:
            clean.add(text)
        return protected

    # -- restoring ----------------------------------------------------------------

    def restore_text(self, path: str, text: str) -> str:
        """Replace tokens issued in this call's scope; redact values the output rule withholds.

        When the text is JSON (tool arguments, structured output), originals are
        JSON-escaped so that it stays valid JSON and decodes to the originals.
        """
        if self.guard.policy.surrogates:
            text = self._surrogates_to_tokens(text)
        if "[" in text and self.batches_tokens:
            self._ask_ahead(text, strict=True)
        inner = parse_json_text(text) if "[" in text or "{" in text else None
        if inner is not None:
            if self.withheld(text) or self._keyed_spans(inner, path):
                # Redacting spans of the raw JSON could cut an escape; work per value,
                # after what only the whole document shows (before tokens are restored:
                # a restored original is the caller's, not a new value).
                restored = map_all_strings(
                    self._withhold_in_place(path, inner),
                    self.restore_text,
                    path,
                    keys=self.restore_name,
                    plain_keys=self.plain_keys,
                )
                return json.dumps(restored, ensure_ascii=False)
            if "[" not in text:
                return text
            linked = self._link_lookup_for(text) is not None
            return TOKEN_RE.sub(
                self._swap_escaped_outside_links if linked else self._swap_escaped, text
            )
        text = self.redact_leaks(text, path)
        if "[" not in text:
            return text
        if '"' in text:
            # JSON in prose or a fence: an original inside a string is escaped there.
            return restore_in_context(text, self._answer_original, self._link_lookup_for(text))
        linked = self._link_lookup_for(text) is not None
        return TOKEN_RE.sub(self._swap_outside_links if linked else self._swap, text)

    def _withhold_in_place(self, path: str, doc: Any) -> Any:
        """``doc`` (JSON a model wrote, its tokens not yet restored), or a copy with what
        the output rule withholds as the whole shows it redacted: a number (a card
        number written without quotes) and a string that is a value only next to its
        key or a word before it (``{"ssn": "078-05-1120"}``), which a scan of each
        string alone misses (see `_replace_found`)."""
        if not isinstance(doc, (dict, list)):
            return doc
        text, scalars = scalar_spans(doc, path)
        keyed = self._keyed_spans(doc, path, scalars)
        # A value its key names is withheld whole, as a request's is tokenized whole:
        # a finding inside it would leave the rest ({"mrn": "00000\"00"}).
        spans = [
            f for f in self.withheld(text) if not any(k[0] < f[1] and f[0] < k[1] for k in keyed)
        ]
        if keyed:
            spans = sorted(spans + keyed)

        def replace(here: str, _lo: int, _hi: int, part: str, span: _Span) -> str:
            self.record_leak(span[2], part, here)
            return redact(span[2])

        return self._replace_found(doc, path, spans, replace) if spans else doc

    def _keyed_spans(self, doc: Any, path: str, scalars: list[Scalar] | None = None) -> list[_Span]:
        """Values of JSON a model wrote that the output rule withholds by their key alone:
        a key (or a sibling naming an object's ``value``, see `value_label`) that names
        a kind at or above `output_rule_level`, as in the request (`KEY_KINDS`), and a
        value the call never sent. ``{"mrn": "4f1c…"}`` has no shape a scan of the
        value could find. Spans are of ``scalar_spans`` text, whole values."""
        if not isinstance(doc, (dict, list)):
            return []
        if scalars is None:
            scalars = scalar_spans(doc, path)[1]
        spans: list[_Span] = []
        labels: dict[int, str | None] = {}
        for start, end, _here, container, key in scalars:
            if not isinstance(container, dict) or not isinstance(key, str):
                continue
            name = key
            if key == "value":
                if id(container) not in labels:
                    labels[id(container)] = value_label(container)
                name = labels[id(container)] or key
            kind = _key_kind(name)
            if kind is None:
                continue
            value = container[key]
            if self._withholds_keyed(kind, value if isinstance(value, str) else json.dumps(value)):
                spans.append((start, end, kind))
        return spans

    def _key_level(self, kind: str) -> Level:
        """The level of a kind a key names: the policy's, else the built-in default."""
        return self.guard.policy.levels.get(kind) or DEFAULT_LEVELS.get(kind, Level.SENSITIVE)

    def _withholds_keyed(self, kind: str, written: str) -> bool:
        """Whether the output rule withholds ``written`` under a key naming ``kind``: the
        kind is at or above `output_rule_level`, the value holds a letter or digit (not
        a mask), the call never sent it, and it is not the scope's token or a redaction."""
        if self._key_level(kind) < self.output_rule_level:
            return False
        if not _MAY_HOLD_VALUE.search(written) or written in self.sent_text:
            return False
        return not (
            "[" in written and (TOKEN_RE.fullmatch(written) or _SURROGATE_RE.fullmatch(written))
        )

    @staticmethod
    def _replace_found(
        doc: Any,
        path: str,
        spans: Sequence[_Span],
        replace: Callable[[str, int, int, str, _Span], str | None],
    ) -> Any:
        """A copy of ``doc`` (the body's objects may be shared with the caller's) where
        each span of its written text (`scalar_spans`) is replaced in the value that
        holds it: ``replace(path, start, end, part, span)`` gives the replacement of the
        part of a string, traced back through its escapes, or of a whole number (a
        token or a redaction is a string); None keeps it."""
        doc = copy.deepcopy(doc)
        _, scalars = scalar_spans(doc, path)
        for start, end, here, container, key in scalars:
            hits = [span for span in spans if span[0] < end and start < span[1]]
            if not hits:
                continue
            value = container[key]
            if not isinstance(value, str):
                number = json.dumps(value)
                replacement = replace(here, 0, len(number), number, hits[0])
                if replacement is not None:
                    container[key] = replacement
                continue
            to_value = _written_to_value(value, start)
            for span in reversed(hits):
                lo, hi = to_value(span[0], span[1])
                replacement = replace(here, lo, hi, value[lo:hi], span)
                if replacement is not None:
                    value = value[:lo] + replacement + value[hi:]
            container[key] = value
        return doc

    def _surrogates_to_tokens(self, text: str) -> str:
        """Realistic surrogates of the scope's tokens back to the tokens they encode."""

        def swap(match: re.Match[str]) -> str:
            token = from_surrogate(match)
            if token is not None and self.lookup(token) is not None:
                return token
            return match.group(0)

        return SURROGATE_RE.sub(swap, text)

    def _answer_original(self, token: str) -> str | None:
        """The original a token of the answer is replaced by: none in the arguments of a
        tool that keeps its tokens (counted), else `lookup`'s; recorded in `restored`
        when the caller collects them."""
        original = self.lookup_in_tool(token) if self.in_kept_tool else self.lookup(token)
        if original is not None and self.restored is not None:
            self.restored.add(token)
        return original

    def _swap(self, match: re.Match[str]) -> str:
        original = self._answer_original(match.group(0))
        return match.group(0) if original is None else original

    def _swap_escaped(self, match: re.Match[str]) -> str:
        original = self._answer_original(match.group(0))
        if original is None:
            return match.group(0)
        return json.dumps(original, ensure_ascii=False)[1:-1]

    def _swap_outside_links(self, match: re.Match[str]) -> str:
        return self._kept_in_link(match) or self._swap(match)

    def _swap_escaped_outside_links(self, match: re.Match[str]) -> str:
        return self._kept_in_link(match) or self._swap_escaped(match)

    def _kept_in_link(self, match: re.Match[str]) -> str | None:
        """The token itself when it stands in a link (counted by `lookup_in_link`), else
        None: the caller restores it as usual."""
        if not in_link(match.string, match.start(), match.end()):
            return None
        self.lookup_in_link(match.group(0))
        return match.group(0)

    def _link_lookup_for(self, text: str) -> Callable[[str], str | None] | None:
        """`link_lookup` when ``text`` may hold a link at all, else None: most answers
        hold no slash, query or entity, and their tokens need no look behind them."""
        if self.in_kept_tool:
            return None  # every token of these arguments stays, in a link or not
        return self.link_lookup if may_hold_links(text) else None

    @property
    def link_lookup(self) -> Callable[[str], str | None] | None:
        """How a token that stands in a link of the answer is looked up: None when the
        destination restores tokens there too (``restore_in_links``), else
        `lookup_in_link`."""
        restore_links = self.restore_links
        if restore_links is None:
            target = self.guard.policy.destinations.get(self.destination or "")
            restore_links = target is not None and target.restore_in_links
        return None if restore_links else self.lookup_in_link

    def lookup_in_link(self, token: str) -> str | None:
        """`lookup` for a token that stands in a link: always None, so the token stays;
        one the caller could have seen restored is counted (``links_kept``)."""
        if self.lookup(token) is not None and self._first("links_kept", token):
            self.links_kept += 1
        return None

    def lookup_in_tool(self, token: str) -> str | None:
        """`lookup` for a token in the arguments of a tool the destination does not
        restore: always None, so the token stays; one the caller could have seen
        restored is counted (``tool_tokens_kept``)."""
        if self.lookup(token) is not None and self._first("tool_tokens_kept", token):
            self.tool_tokens_kept += 1
        return None

    def _first(self, count: str, token: str) -> bool:
        """Whether ``token`` is new to ``count`` in this call (and now counted there)."""
        if self._counted is None:
            self._counted = {}
        seen = self._counted.setdefault(count, set())
        if token in seen:
            return False
        seen.add(token)
        return True

    def restores_tool(self, name: str | None) -> bool:
        """Whether a call of tool ``name`` in the answer gets its arguments restored
        (`restore_tools`, else the destination's ``restore_tool_arguments``; without a
        destination, yes)."""
        return tool_restored(self._tool_rule(), name)

    @property
    def keeps_some_tools(self) -> bool:
        """Whether some tool's arguments keep their tokens in this call's answer."""
        return self._tool_rule() is not True

    def _tool_rule(self) -> bool | Sequence[str]:
        if self.restore_tools is not None:
            return self.restore_tools
        target = self.guard.policy.destinations.get(self.destination or "")
        return True if target is None else target.restore_tool_arguments

    def lookup(self, token: str) -> str | None:
        """The original of a token the caller may see, else None.

        A token restores when this call sent it, or when it was issued in this scope to
        the call's subject (without a subject: to its principal). Another subject's
        token, guessed or replayed by a model, stays as it is and is counted.
        """
        original = self.issued.get(token)
        if original is None:
            original = self.literals.get(token)
        if original is not None:
            return original
        try:
            original = self._vault_original(token)
        except AIGuardError:
            raise
        except Exception as exc:  # typed, never the driver's text (it can quote values)
            raise _restore_failed(exc) from None
        if original is None and self._first("unknown_tokens", token):
            self.unknown_tokens += 1
        return original

    @property
    def output_rule_level(self) -> Level:
        """The lowest level the output rule withholds (the destination's
        ``output_rule_level``; REGULATED when the call has no destination)."""
        target = self.guard.policy.destinations.get(self.destination or "")
        return target.output_rule_level if target is not None else Level.REGULATED

    def withheld(self, text: str) -> list[tuple[int, int, str]]:
        """Spans of ``text`` the output rule withholds: values at or above
        `output_rule_level` (secrets and REGULATED ids by default) the call never
        sent. The scope's tokens and surrogates (pseudonyms, redactions) are recognized
        first and never count as new values.
        """
        marks = list(_SURROGATE_RE.finditer(text)) if "[" in text else []
        # Decoded views too: a model can percent-encode or base64 a value to smuggle it.
        found = detect_decoded(self.guard.detectors, _blank_ids(text, marks) if marks else text)
        # JSON written in the text (streamed tool arguments, a fenced snippet): a value
        # whose key names a kind is that kind whole, as in `_keyed_spans`.
        keyed = self._keyed_pairs(text) if '":' in text or '" :' in text else []
        if not found:
            return keyed
        surrogates = [m.span() for m in marks]
        # Realistic surrogates of the scope's own tokens look like values; they are not.
        if self.guard.policy.surrogates:
            surrogates += [
                m.span()
                for m in SURROGATE_RE.finditer(text)
                if (token := from_surrogate(m)) is not None and self.lookup(token) is not None
            ]
        spans: list[tuple[int, int, str]] = []
        threshold = self.output_rule_level
        for finding in merge_findings(found):
            start, end = finding.start, finding.end
            if text[start:end] in self.sent_text:
                continue
            if any(s < end and start < e for s, e in surrogates):
                continue
            if finding.level < threshold:
                # Not withheld, but the answer holds personal data the call never sent
                # (memorized or injected): flagged in the event.
                self._flag_unsent(finding.kind, text[start:end])
                continue
            spans.append((start, end, finding.kind))
        if keyed:
            # A value its key names is withheld whole: findings inside it give way.
            spans = [f for f in spans if not any(k[0] < f[1] and f[0] < k[1] for k in keyed)]
            return sorted(spans + keyed)
        return spans

    def _keyed_pairs(self, text: str) -> list[tuple[int, int, str]]:
        """``"key": "value"`` (or a number) in ``text`` where the key names a kind the
        output rule withholds: the value's span, whole (the escaped text between its
        quotes). Each key is read where a ``":`` ends it: string methods first, the
        value's pattern only after a key that names a kind (this runs per streamed
        event of a JSON channel)."""
        spans: list[tuple[int, int, str]] = []
        known = self._key_kinds
        at = _next_key_end(text, 0)
        while at != -1:
            opened = text.rfind('"', max(0, at - 41), at)
            key = text[opened + 1 : at] if opened != -1 else ""
            if key == "value":
                label = _sibling_label(text, opened)
                kind = _key_kind(label) if label is not None else None
            elif key in known:
                kind = known[key]
            elif _KEYISH.fullmatch(key):
                kind = _key_kind(key)
                if len(known) < 256:
                    known[key] = kind  # a name, not a value written as a key
            else:
                kind = None
            m = _JSON_VALUE.match(text, text.index(":", at) + 1) if kind is not None else None
            if m is not None and kind is not None:
                group = 1 if m.group(1) is not None else 2
                if self._withholds_keyed(kind, m.group(group)):
                    spans.append((m.start(group), m.end(group), kind))
            at = _next_key_end(text, at + 1)
        return spans

    def _flag_unsent(self, kind: str, value: str) -> None:
        key = hashlib.blake2b(f"{kind}\x00{value}".encode(), digest_size=16).digest()
        if key not in self._flagged:
            self._flagged.add(key)
            self.unsent[kind] = self.unsent.get(kind, 0) + 1

    def record_leak(self, kind: str, value: str, path: str = "$") -> None:
        """Count a withheld value once per call, however often the answer repeats it,
        and once per answer field it appeared in (``path``, never the value)."""
        # Only a hash is kept: the raw value must not linger in the call object.
        key = hashlib.blake2b(f"{kind}\x00{value}".encode(), digest_size=16).digest()
        if key not in self._leaked:
            self._leaked.add(key)
            self.leaks[kind] = self.leaks.get(kind, 0) + 1
        path = _safe_path(path)
        at = hashlib.blake2b(f"{path}\x00".encode() + key, digest_size=16).digest()
        if at not in self._leaked_at:
            self._leaked_at.add(at)
            self.leak_paths.setdefault(path, Counter())[kind] += 1

    def redact_leaks(self, text: str, path: str = "$") -> str:
        """Redact what the output rule withholds (see `withheld`) and count it."""
        spans = self.withheld(text)
        if not spans:
            return text
        pieces: list[str] = []
        cursor = 0
        for start, end, kind in spans:
            pieces.append(text[cursor:start])
            pieces.append(redact(kind))
            self.record_leak(kind, text[start:end], path)
            cursor = end
        pieces.append(text[cursor:])
        return "".join(pieces)

    def restore_json(self, body: Any, adapter: Adapter | None = None) -> Any:
        """Restore every string of an answer (or only the adapter's ``restore`` paths;
        the others are still scanned by the output rule)."""
        only = adapter.restore if adapter is not None else None
        free = adapter.free if adapter is not None else None
        restore_text, restore_name = self._restorers(body)
        if not only:
            return map_strings(
                body,
                restore_text,
                free=free,
                keys=restore_name,
                plain_keys=self.plain_keys,
                on_free=self._withhold_in_place,
            )

        def transform(path: str, text: str) -> str:
            if only and path not in only:
                return self.redact_leaks(text, path)
            return restore_text(path, text)

        def rename(path: str, key: str) -> str:
            if only and path not in only:
                return self.redact_name(path, key)
            return restore_name(path, key)

        return map_strings(
            body,
            transform,
            free=free,
            keys=rename,
            plain_keys=self.plain_keys,
            on_free=self._withhold_in_place,
        )

    def _restorers(self, body: Any) -> tuple[Callable[[str, str], str], Callable[[str, str], str]]:
        """`restore_text` and `restore_name` for ``body``: where its tool calls' tools
        are not restored (``restore_tool_arguments``), they keep those arguments' tokens."""
        kept = kept_tool_paths(body, self.restores_tool) if self.keeps_some_tools else None
        if not kept:
            return self.restore_text, self.restore_name
        return self._in_tools(self.restore_text, kept), self._in_tools(self.restore_name, kept)

    def _in_tools(
        self, restore: Callable[[str, str], str], kept: Sequence[str]
    ) -> Callable[[str, str], str]:
        """``restore`` that keeps the tokens of strings at or below a path in ``kept``
        (the arguments of tools the destination does not restore)."""
        below = tuple(p + sep for p in kept for sep in (".", "["))

        def restore_here(path: str, text: str) -> str:
            if path not in kept and not path.startswith(below):
                return restore(path, text)
            self.in_kept_tool = True
            try:
                return restore(path, text)
            finally:
                self.in_kept_tool = False

        return restore_here

    def restore_tokens(self, value: Any) -> Any:
        """``value`` (text, JSON text, or JSON-like data) with this scope's tokens, and
        realistic surrogates of them, back to their originals, and nothing else: no
        output rule, for what an earlier call's answer already passed through it. In
        JSON text the originals are JSON-escaped; a token in a link stays unless
        ``restore_links``."""
        if isinstance(value, str):
            return self._tokens_back(value)
        return map_all_strings(value, lambda _path, text: self._tokens_back(text))

    def _tokens_back(self, text: str) -> str:
        if self.guard.policy.surrogates:
            text = self._surrogates_to_tokens(text)
        if "[" not in text:
            return text
        linked = self._link_lookup_for(text) is not None
        if parse_json_text(text) is not None:
            swap = self._swap_escaped_outside_links if linked else self._swap_escaped
        else:
            swap = self._swap_outside_links if linked else self._swap
        return TOKEN_RE.sub(swap, text)

    def restore_tree(self, body: Any) -> Any:
        """`restore_json` for JSON the user defined: no key is structural."""
        restore_text, restore_name = self._restorers(body)
        return map_all_strings(body, restore_text, keys=restore_name, plain_keys=self.plain_keys)

    def restore_name(self, path: str, key: str) -> str:
        """`restore_text` for an object key of an answer: a token the request side put
        in a key comes back, a value the output rule withholds is redacted."""
        return key if self._plain_name(key) else self.restore_text(path, key)

    def redact_name(self, path: str, key: str) -> str:
        """`redact_leaks` for an object key outside the paths an adapter restores."""
        return key if self._plain_name(key) else self.redact_leaks(key, path)

    @property
    def plain_keys(self) -> Container[str]:
        """Answer keys known to hold nothing (see `_plain_name`): the walk skips them."""
        if self.guard.policy.surrogates:
            return ()
        plain: set[str] | None = getattr(self.guard, "_plain_answer_keys", None)
        return () if plain is None else plain

    def _plain_name(self, key: str) -> bool:
        """Whether ``key`` holds no token and nothing any detector finds, decoded views
        included. Keys repeat in every answer, so such a key is remembered per guard and
        the next answer skips it. Not "unchanged by this call": a value this call sent
        comes back unredacted, but would not in another call."""
        if "[" in key:
            return False
        plain = self.plain_keys
        if key in plain:
            return True
        if self.guard.policy.surrogates or detect_decoded(self.guard.detectors, key):
            return False
        short = len(key) <= _CLEAN_NAME_LENGTH
        if isinstance(plain, set) and short and len(plain) < _CLEAN_KEYS_LIMIT:
            plain.add(key)
        return True

    # -- recording ----------------------------------------------------------------

    def event_fields(self, **extra: Any) -> dict[str, Any]:
        guard = self.guard
        decision = self.decision
        ctx = self.context
        # One pass, plain dicts: three Counters cost more than the rest of the event.
        kinds: dict[str, int] = {}
        levels: dict[str, int] = {}
        actions: dict[str, int] = {}
        for finding in self.findings:
            kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
            # Tables, not `.label` and `.value`: enum properties cost a lookup chain each.
            level = _LEVEL_LABEL[finding.level]
            levels[level] = levels.get(level, 0) + 1
            action = _ACTION_VALUE[finding.action]
            actions[action] = actions.get(action, 0) + 1
        reasons = list(decision.reasons) if decision else []
        if self.fail_open_used:
            reasons.append("fail_open: the vault was unreachable; values were redacted")
        consent = None
        if decision is not None and decision.consent is not None:
            record = decision.consent
            consent = {
                "record_id": record.record_id,
                "terms_version": record.terms_version,
                "granted_at": record.at.isoformat().replace("+00:00", "Z"),
            }
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "attempt": self.attempt,
            "principal": ctx.principal,
            "tenant": ctx.tenant,
            "subject": guard.digest("subject", ctx.tenant, ctx.subject) if ctx.subject else None,
            "conversation": (
                guard.digest("conversation", ctx.tenant, ctx.conversation)
                if ctx.conversation
                else None
            ),
            "destination": self.destination,
            "purpose": ctx.purpose,
            "legal_basis": decision.legal_basis if decision else None,
            "consent": {**(consent or {}), "use_for_training": ctx.use_for_training},
            "decision": None if decision is None else ("allow" if decision.allowed else "deny"),
            "reasons": reasons,
            "findings": kinds,
            "levels": levels,
            "actions": actions,
            "tokens": sorted({t.strip("[]") for t in self.issued}),
            "leaks": dict(self.leaks),
            "leak_paths": {path: dict(kinds) for path, kinds in sorted(self.leak_paths.items())},
            "unsent_findings": dict(self.unsent),
            "input_digest": self.input_digest,
            "output_digest": self.output_digest,
            "dataset_version": ctx.dataset_version,
            "model_version": ctx.model_version,
            "explanation_ref": ctx.explanation_ref,
            "gen_ai.provider.name": guard.provider_name(self.destination),
            "gen_ai.operation.name": self.operation,
            "gen_ai.request.model": self.request_model,
            "latency_us": (time.perf_counter_ns() - self.started_ns) // 1000,
        }
        if self.unknown_tokens:
            fields["unknown_tokens"] = self.unknown_tokens
        if self.links_kept:
            fields["links_kept"] = self.links_kept
        if self.tool_tokens_kept:
            fields["tool_tokens_kept"] = self.tool_tokens_kept
        fields.update(extra)
        label_of = getattr(guard, "label_of", None)
        if label_of is not None:
            # Model names come from the caller's body and the upstream's answer.
            for name in ("gen_ai.request.model", "gen_ai.response.model"):
                value = fields.get(name)
                if isinstance(value, str):
                    fields[name] = label_of(value)
        return fields


def _restore_failed(exc: Exception) -> VaultError:
    return VaultError(
        f"the vault could not restore a token ({type(exc).__name__}); the answer was not "
        "returned. Check the vault"
    )


def _blank_ids(text: str, marks: list[re.Match[str]]) -> str:
    """``text`` with the random part of each token and pseudonym (``[EMAIL_GS4WB8KQ]``,
    ``[NAME~3f9a…]``) written as spaces, for the output rule's scan.

    A finding that overlaps one is never withheld, so reading inside it is wasted: its
    digits start runs of the digit pass and its letters base64 runs the decoder tries,
    most of an answer's scan when it echoes tokens. The kind stays, so a token still
    labels the number after it as before; the text keeps its length and offsets."""
    pieces: list[str] = []
    cursor = 0
    for mark in marks:
        if mark.group(2) is not None:
            start, end = mark.span(2)
        else:
            tilde = mark.group().find("~")
            if tilde == -1:
                continue  # "[REDACTED:kind]": no id in it
            start, end = mark.start() + tilde + 1, mark.end() - 1
        pieces.append(text[cursor:start])
        pieces.append(" " * (end - start))
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)


def _sibling_label(text: str, key_at: int) -> str | None:
    """For a ``"value"`` key at ``key_at`` of JSON written in ``text``: what its
    object's other members say it is (`value_label`), read from the object's text
    before the key (``{"type": {"text": "MRN"}, "value": …``)."""
    start = _object_start(text, key_at)
    if start is None:
        return None
    head = text[start:key_at].rstrip().rstrip(",")
    try:
        members = loads_json(head + "}")
    except ValueError:
        return None
    return value_label(members) if isinstance(members, dict) else None


def _object_start(text: str, at: int, reach: int = 2000) -> int | None:
    """Where the innermost JSON object open at ``at`` starts (within ``reach``)."""
    opened: list[int] = []
    in_string = escaped = False
    for i in range(max(0, at - reach), at):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            opened.append(i if ch == "{" else -1)
        elif ch in "}]" and opened:
            opened.pop()
    return opened[-1] if opened and opened[-1] >= 0 else None


def _next_key_end(text: str, start: int) -> int:
    """Where the next JSON key's closing quote is (``"key":`` or ``"key" :``), or -1."""
    tight, spaced = text.find('":', start), text.find('" :', start)
    if tight == -1 or (spaced != -1 and spaced < tight):
        return spaced
    return tight


# What a key that names a kind looks like; a JSON value after its colon.
_KEYISH = re.compile(r"[A-Za-z][A-Za-z0-9 _.-]{0,39}")
_JSON_VALUE = re.compile(r'\s*(?:"((?:[^"\\\n]|\\.){1,256})"|(-?[0-9][0-9.eE+-]{3,40}))')
# A value with a letter or digit in it: not a mask ("********") or an empty one.
_MAY_HOLD_VALUE = re.compile(r"[^\W_]")
_LEVEL_LABEL = {level: level.label for level in Level}
_ACTION_VALUE = {action: action.value for action in Action}
_PATH_KEY = re.compile(r"\.([^.\[\]]*)")
_SAFE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,63}")


def _safe_path(path: str) -> str:
    """A field path fit for an event: keys an answer chose that do not look like field
    names (they could hold a value) become ``*``. A streamed event's path starts with
    its type (``response.output_text.done:$.text``)."""
    event, sep, rest = path.partition(":$")
    if not sep:
        event, rest = "", path
    elif not _EVENT_TYPE.fullmatch(event):
        event = "*"
    rest = _PATH_KEY.sub(lambda m: m.group(0) if _SAFE_KEY.fullmatch(m.group(1)) else ".*", rest)
    return f"{event}:${rest}" if sep else rest


#: A span of text a whole-document pass found: (start, end, kind, ...).
_Span = tuple[Any, ...]


def _written_to_value(value: str, at: int) -> Callable[[int, int], tuple[int, int]]:
    """For a string ``value`` written as JSON (quotes, escapes) at offset ``at`` of some
    text: the span of ``value`` that a span of that text covers."""
    # Where each character of the value ends in its written form, past the quote.
    ends = list(itertools.accumulate(len(json.dumps(ch, ensure_ascii=False)) - 2 for ch in value))

    def span(start: int, end: int) -> tuple[int, int]:
        lo = bisect.bisect_right(ends, start - at - 1)
        return lo, bisect.bisect_left(ends, end - at - 1) + 1

    return span


def redact(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def mask(kind: str, value: str) -> str:
    """Keep the last four characters of numbers and the domain of e-mails; star the rest."""
    if kind == "email" and "@" in value:
        local, _, domain = value.rpartition("@")
        return local[:1] + "***@" + domain
    alnum = [i for i, ch in enumerate(value) if ch.isalnum()]
    keep = set(alnum[-4:]) if len(alnum) > 8 else set()
    return "".join(ch if (i in keep or not ch.isalnum()) else "*" for i, ch in enumerate(value))


def parse_json_body(raw: bytes, what: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload(
            f"the {what} body is not UTF-8; aiguard cannot inspect it, so it was not sent"
        ) from None
    try:
        return loads_json(text)
    except RecursionError:
        raise MalformedPayload(
            f"the {what} body nests too deeply for aiguard to inspect it; it was not sent"
        ) from None
    except json.JSONDecodeError as exc:
        raise MalformedPayload(
            f"the {what} body is not valid JSON (line {exc.lineno}, column {exc.colno}); "
            "it was not sent"
        ) from None
    except ValueError:
        # Valid JSON that Python will not read: an integer longer than its limit on
        # integer digits (CVE-2020-10735's guard), which nothing else raises here.
        raise MalformedPayload(
            f"the {what} body holds an integer longer than Python reads "
            f"({sys.get_int_max_str_digits()} digits, sys.set_int_max_str_digits); "
            "aiguard cannot inspect it, so it was not sent"
        ) from None


def dump_json(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def usage_of(body: Mapping[str, Any]) -> dict[str, Any]:
    usage = body.get("usage")
    out: dict[str, Any] = {}
    if isinstance(body.get("model"), str):
        out["gen_ai.response.model"] = body["model"]
    if isinstance(usage, Mapping):
        for source, target in (
            ("prompt_tokens", "gen_ai.usage.input_tokens"),
            ("completion_tokens", "gen_ai.usage.output_tokens"),
            ("input_tokens", "gen_ai.usage.input_tokens"),
            ("output_tokens", "gen_ai.usage.output_tokens"),
        ):
            value = usage.get(source)
            if isinstance(value, int) and not isinstance(value, bool):
                out[target] = value
    return out


TextTransform = Callable[[str, str], str]


def _fault_text(exc: BaseException) -> str:
    """What a store's failure says: its own typed message (written to name paths, DSNs and
    policy keys, never values), else only the class of an untyped one (a driver's text
    can quote values)."""
    if isinstance(exc, AIGuardError):
        return exc.message
    return type(exc).__name__

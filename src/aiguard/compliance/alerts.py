"""Alert rules over the provenance stream, live (as events are written) or over a stored log.

The rules are configured under ``[alerts]`` in the policy (a rule is on when its table
is present) and see only what events hold: digests, counts, kinds, destinations,
principals. `AlertEngine.observe` takes one event and returns the alerts it fires;
the guard appends each as an ``alert`` event to the same chain, so every sink (and the
SIEM behind it) sees it. ``aiguard report`` replays the same engine over a stored log.

Rules:

* ``reidentification``: a principal re-identifies more than ``max_values`` values within
  ``window_seconds`` (``detokenize`` events, and the ``restored`` count of call events);
* ``regulated_burst``: more than ``max_findings`` REGULATED findings go toward one
  destination within ``window_seconds``;
* ``training_consent_change``: a training-purpose call for a subject whose consent record
  (id or terms) differs from its previous training call's, or follows a consent event;
* ``denial_spike``: more than ``max_denials`` calls are refused within ``window_seconds``;
* ``after_kill_switch``: a call goes out to a destination after its kill switch was
  thrown (and before it was reinstated);
* ``unknown_tokens`` (on by default): a principal's calls hold more than ``max_tokens``
  token-shaped strings within ``window_seconds`` that restore to nothing it may see
  (the ``unknown_tokens`` count of call events): guessing or replaying tokens;
* ``links_kept`` (on by default): a model wrote a principal's own tokens into links of
  an answer (the ``links_kept`` count of call events), which aiguard left unrestored:
  a prompt injection trying to send values out through a URL.

Each windowed rule fires at most once per window and key, so a sustained burst gives
one alert per window, not one per event.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..policy.model import Policy

if TYPE_CHECKING:
    from ..pipeline.host import GuardHost
    from ..provenance.chain import Receipt

__all__ = ["Alert", "AlertEngine", "append_observed", "event_time"]

_OUTGOING = {"call", "protect"}
#: Consent changed for the event's subject (an erasure withdraws every consent).
_CONSENT_EVENTS = {"consent", "consent_change", "consent_withdrawn", "consent_granted", "erasure"}
#: Tokens turned back into values for a person (``guard.dsr.detokenize``).
_REIDENTIFY_EVENTS = {"reidentify", "detokenize"}


@dataclass(frozen=True, slots=True)
class Alert:
    """One fired rule: when (epoch seconds), what, and the counts behind it."""

    rule: str
    at: float
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def event(self) -> dict[str, Any]:
        """The provenance event recording this alert (no raw values: ids, digests, counts)."""
        details = dict(self.details)
        return {
            "type": "alert",
            "alert": {"rule": self.rule, **details},
            "destination": details.get("destination"),
            "principal": details.get("principal"),
            "subject": details.get("subject"),
            "reasons": [self.message],
            "status": "ok",
        }

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "at": self.at, "message": self.message, **self.details}


class _Window:
    """A sliding sum per key, with at most one firing per window per key."""

    __slots__ = ("fired", "items", "seconds", "sums")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.items: dict[str, deque[tuple[float, int]]] = {}
        self.sums: dict[str, int] = {}
        self.fired: dict[str, float] = {}

    def add(self, key: str, at: float, amount: int) -> int:
        items = self.items.setdefault(key, deque())
        items.append((at, amount))
        total = self.sums.get(key, 0) + amount
        horizon = at - self.seconds
        while items and items[0][0] <= horizon:
            total -= items.popleft()[1]
        self.sums[key] = total
        return total

    def may_fire(self, key: str, at: float) -> bool:
        last = self.fired.get(key)
        if last is not None and at - last < self.seconds:
            return False
        self.fired[key] = at
        return True


class AlertEngine:
    """Evaluates the policy's alert rules over events, in the order they are written.

    ``revoked`` (live use) is asked whether a destination is currently revoked, so a
    call that went out after a revocation is caught even though the revocation event
    was written elsewhere; over a stored log the ``kill_switch`` events are used.
    """

    def __init__(self, policy: Policy, *, revoked: Callable[[str], bool] | None = None) -> None:
        self.policy = policy
        rules = policy.alerts
        self._rules = rules
        self._revoked_fn = revoked
        self._lock = threading.Lock()
        self._reid = (
            _Window(rules.reidentification.window_seconds) if rules.reidentification else None
        )
        self._burst = (
            _Window(rules.regulated_burst.window_seconds) if rules.regulated_burst else None
        )
        self._denials = _Window(rules.denial_spike.window_seconds) if rules.denial_spike else None
        unknown = rules.unknown_tokens
        self._unknown = (
            _Window(unknown.window_seconds) if unknown is not None and unknown.enabled else None
        )
        links = rules.links_kept
        self._links = _Window(links.window_seconds) if links is not None and links.enabled else None
        self._consent_seen: dict[str, tuple[Any, Any]] = {}
        self._consent_changed: set[str] = set()
        self._revoked: set[str] = set()

    @classmethod
    def for_policy(cls, policy: Policy, **options: Any) -> AlertEngine | None:
        """An engine when the policy configures any rule, else None (nothing to evaluate)."""
        return cls(policy, **options) if policy.alerts.any else None

    def observe(self, event: Mapping[str, Any], at: float | None = None) -> list[Alert]:
        """Feed one event (a record or the fields about to be written); return alerts fired."""
        kind = event.get("type")
        if kind == "alert":
            return []
        when = at if at is not None else event_time(event)
        with self._lock:
            fired: list[Alert] = []
            self._kill_switch(event, kind, when, fired)
            self._reidentification(event, kind, when, fired)
            self._regulated(event, when, fired)
            self._training(event, kind, when, fired)
            self._denial_spike(event, kind, when, fired)
            self._unknown_tokens(event, when, fired)
            self._links_kept(event, when, fired)
            return fired

    # -- rules ------------------------------------------------------------------------

    def _kill_switch(
        self, event: Mapping[str, Any], kind: Any, when: float, fired: list[Alert]
    ) -> None:
        destination = event.get("destination")
        if not isinstance(destination, str):
            return
        if kind == "kill_switch":
            reasons = event.get("reasons") or [""]
            first = str(reasons[0]) if isinstance(reasons, list) and reasons else ""
            if first.startswith("revoked"):
                self._revoked.add(destination)
            elif first.startswith("reinstated"):
                self._revoked.discard(destination)
            return
        rule = self._rules.after_kill_switch
        if rule is None or not rule.enabled or not _went_out(event):
            return
        revoked = destination in self._revoked
        if not revoked and self._revoked_fn is not None:
            try:
                revoked = self._revoked_fn(destination)
            except Exception:  # an unreadable kill switch is reported by decide, not here
                revoked = False
        if revoked:
            fired.append(
                Alert(
                    "after_kill_switch",
                    when,
                    f"a call went out to {destination!r} after its kill switch was thrown",
                    {"destination": destination, "request_id": event.get("request_id")},
                )
            )

    def _reidentification(
        self, event: Mapping[str, Any], kind: Any, when: float, fired: list[Alert]
    ) -> None:
        rule = self._rules.reidentification
        if rule is None or self._reid is None:
            return
        amount = 0
        if kind in _REIDENTIFY_EVENTS and event.get("decision") != "deny":
            count = event.get("count")
            tokens = event.get("tokens")
            amount = (
                count
                if isinstance(count, int) and not isinstance(count, bool)
                else len(tokens)
                if isinstance(tokens, list) and tokens
                else 1
            )
        restored = event.get("restored")
        if isinstance(restored, int) and not isinstance(restored, bool):
            amount += restored
        if amount <= 0:
            return
        principal = str(event.get("principal") or "(none)")
        total = self._reid.add(principal, when, amount)
        if total > rule.max_values and self._reid.may_fire(principal, when):
            fired.append(
                Alert(
                    "reidentification",
                    when,
                    f"principal {principal!r} re-identified {total} values in "
                    f"{rule.window_seconds} s (threshold {rule.max_values})",
                    {
                        "principal": principal,
                        "count": total,
                        "threshold": rule.max_values,
                        "window_seconds": rule.window_seconds,
                    },
                )
            )

    def _regulated(self, event: Mapping[str, Any], when: float, fired: list[Alert]) -> None:
        rule = self._rules.regulated_burst
        levels = event.get("levels")
        destination = event.get("destination")
        if rule is None or self._burst is None or not isinstance(levels, Mapping):
            return
        count = levels.get("regulated")
        if not isinstance(count, int) or count <= 0 or not isinstance(destination, str):
            return
        total = self._burst.add(destination, when, count)
        if total > rule.max_findings and self._burst.may_fire(destination, when):
            fired.append(
                Alert(
                    "regulated_burst",
                    when,
                    f"{total} REGULATED findings toward {destination!r} in "
                    f"{rule.window_seconds} s (threshold {rule.max_findings})",
                    {
                        "destination": destination,
                        "count": total,
                        "threshold": rule.max_findings,
                        "window_seconds": rule.window_seconds,
                    },
                )
            )

    def _training(
        self, event: Mapping[str, Any], kind: Any, when: float, fired: list[Alert]
    ) -> None:
        rule = self._rules.training_consent_change
        subject = event.get("subject")
        if rule is None or not rule.enabled or not isinstance(subject, str):
            return
        if kind in _CONSENT_EVENTS or (isinstance(kind, str) and kind.startswith("dsr")):
            self._consent_changed.add(subject)
            return
        purpose = event.get("purpose")
        spec = self.policy.purpose(purpose if isinstance(purpose, str) else None)
        training = purpose == "model_training" or (spec is not None and spec.requires_training_flag)
        if not training or not _went_out(event):
            return
        consent = event.get("consent")
        consent = consent if isinstance(consent, Mapping) else {}
        current = (consent.get("record_id"), consent.get("terms_version"))
        previous = self._consent_seen.get(subject)
        self._consent_seen[subject] = current
        changed = subject in self._consent_changed or (previous is not None and previous != current)
        self._consent_changed.discard(subject)
        if changed:
            fired.append(
                Alert(
                    "training_consent_change",
                    when,
                    f"a {purpose} call for a subject whose consent changed since its previous "
                    "training call; check the data already collected for training",
                    {
                        "subject": subject,
                        "purpose": purpose,
                        "destination": event.get("destination"),
                        "consent_record": current[0],
                    },
                )
            )

    def _denial_spike(
        self, event: Mapping[str, Any], kind: Any, when: float, fired: list[Alert]
    ) -> None:
        rule = self._rules.denial_spike
        if rule is None or self._denials is None:
            return
        if not (event.get("decision") == "deny" or kind == "refusal"):
            return
        total = self._denials.add("*", when, 1)
        if total > rule.max_denials and self._denials.may_fire("*", when):
            fired.append(
                Alert(
                    "denial_spike",
                    when,
                    f"{total} calls refused in {rule.window_seconds} s "
                    f"(threshold {rule.max_denials})",
                    {
                        "count": total,
                        "threshold": rule.max_denials,
                        "window_seconds": rule.window_seconds,
                    },
                )
            )

    def _unknown_tokens(self, event: Mapping[str, Any], when: float, fired: list[Alert]) -> None:
        rule = self._rules.unknown_tokens
        count = event.get("unknown_tokens")
        if rule is None or self._unknown is None or not isinstance(count, int) or count <= 0:
            return
        principal = str(event.get("principal") or "(none)")
        total = self._unknown.add(principal, when, count)
        if total > rule.max_tokens and self._unknown.may_fire(principal, when):
            fired.append(
                Alert(
                    "unknown_tokens",
                    when,
                    f"principal {principal!r} sent or received {total} token-shaped strings "
                    f"that restore to nothing it may see in {rule.window_seconds} s "
                    f"(threshold {rule.max_tokens}): tokens are being guessed or replayed",
                    {
                        "principal": principal,
                        "destination": event.get("destination"),
                        "count": total,
                        "threshold": rule.max_tokens,
                        "window_seconds": rule.window_seconds,
                    },
                )
            )

    def _links_kept(self, event: Mapping[str, Any], when: float, fired: list[Alert]) -> None:
        count = event.get("links_kept")
        if self._links is None or not isinstance(count, int) or count <= 0:
            return
        principal = str(event.get("principal") or "(none)")
        total = self._links.add(principal, when, count)
        if self._links.may_fire(principal, when):
            destination = event.get("destination")
            fired.append(
                Alert(
                    "links_kept",
                    when,
                    f"the answer of {destination!r} to principal {principal!r} put {count} "
                    "of the caller's values into links (left as tokens): a prompt injection "
                    "may be trying to send them out through a URL",
                    {
                        "principal": principal,
                        "destination": destination,
                        "count": total,
                        "window_seconds": self._links.seconds,
                    },
                )
            )


def append_observed(guard: GuardHost, fields: Mapping[str, Any]) -> Receipt:
    """Append an event to the guard's log, then any alert it fires.

    For doors that write their own events (data-subject requests, re-identification):
    `Guard.finish` does the same for calls.
    """
    receipt = guard.log.append(fields)
    if guard.alerts is not None:
        for alert in guard.alerts.observe(fields):
            guard.log.append(alert.event())
    return receipt


def _went_out(event: Mapping[str, Any]) -> bool:
    return event.get("type") in _OUTGOING and event.get("decision") == "allow"


def event_time(event: Mapping[str, Any]) -> float:
    """Seconds since the epoch of an event's RFC 3339 ``time``; now when it has none."""
    value = event.get("time")
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()

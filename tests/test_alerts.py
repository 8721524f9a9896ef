"""Alert rules: each with a generated stream that must fire it and one that must not."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

import aiguard
from aiguard.compliance.alerts import Alert, AlertEngine
from aiguard.errors import PolicyDenied
from aiguard.policy import parse_policy
from aiguard.provenance.verify import verify_records
from aiguard.testing import InMemorySink

RULES = """
[destinations.openai]
base_url = "https://api.openai.com/v1"
approved = true
purposes = ["inference", "model_training"]

[destinations.shadow]
base_url = "https://llm.example.net/v1"
purposes = ["inference"]

[alerts.reidentification]
max_values = 10
window_seconds = 60

[alerts.regulated_burst]
max_findings = 5
window_seconds = 10

[alerts.training_consent_change]

[alerts.denial_spike]
max_denials = 3
window_seconds = 10

[alerts.after_kill_switch]
"""


def call(t: float, **fields: Any) -> tuple[float, dict[str, Any]]:
    event = {"type": "call", "decision": "allow", "destination": "openai", "purpose": "inference"}
    event.update(fields)
    return t, event


def run(stream: Iterable[tuple[float, dict[str, Any]]]) -> list[Alert]:
    engine = AlertEngine(parse_policy(RULES))
    fired: list[Alert] = []
    for at, event in stream:
        fired.extend(engine.observe(event, at))
    return fired


def rules(stream: Iterable[tuple[float, dict[str, Any]]]) -> list[str]:
    return [a.rule for a in run(stream)]


class TestReidentification:
    def test_fires_past_the_threshold_once_per_window(self) -> None:
        stream = [
            (float(i), {"type": "reidentify", "principal": "ops:1", "tokens": ["A", "B", "C"]})
            for i in range(8)
        ]
        fired = run(stream)
        assert [a.rule for a in fired] == ["reidentification"]
        assert fired[0].details["count"] == 12 and fired[0].details["principal"] == "ops:1"

    def test_quiet_below_threshold_spread_out_or_denied(self) -> None:
        spread = [
            (i * 30.0, {"type": "reidentify", "principal": "ops:1", "tokens": ["A"] * 4})
            for i in range(10)
        ]
        split = [
            (float(i), {"type": "reidentify", "principal": f"ops:{i % 3}", "tokens": ["A"] * 3})
            for i in range(9)
        ]
        denied = [
            (
                float(i),
                {"type": "reidentify", "principal": "x", "decision": "deny", "tokens": ["A"] * 9},
            )
            for i in range(3)
        ]
        assert rules(spread) == rules(split) == rules(denied) == []


class TestRegulatedBurst:
    def test_fires_for_one_destination(self) -> None:
        stream = [call(i * 0.5, levels={"regulated": 2}) for i in range(4)]
        fired = run(stream)
        assert [a.rule for a in fired] == ["regulated_burst"]
        assert fired[0].details["destination"] == "openai"

    def test_quiet_when_spread_over_time_or_destinations(self) -> None:
        spread = [call(i * 11.0, levels={"regulated": 3}) for i in range(10)]
        two = [
            call(float(i), destination=("openai", "shadow")[i % 2], levels={"regulated": 1})
            for i in range(10)
        ]
        sensitive = [call(float(i), levels={"sensitive": 9}) for i in range(10)]
        assert rules(spread) == rules(two) == rules(sensitive) == []


class TestTrainingConsentChange:
    def training(self, t: float, subject: str, record: str) -> tuple[float, dict[str, Any]]:
        return call(
            t,
            purpose="model_training",
            subject=subject,
            consent={"record_id": record, "terms_version": "v1", "use_for_training": True},
        )

    def test_fires_when_the_consent_record_changes(self) -> None:
        stream = [self.training(0, "hmac:s1", "r1"), self.training(1, "hmac:s1", "r2")]
        assert rules(stream) == ["training_consent_change"]

    def test_fires_after_a_consent_event_for_the_subject(self) -> None:
        stream = [
            self.training(0, "hmac:s1", "r1"),
            (1.0, {"type": "erasure", "subject": "hmac:s1"}),
            self.training(2, "hmac:s1", "r1"),
        ]
        assert rules(stream) == ["training_consent_change"]

    def test_quiet_for_stable_consent_and_inference(self) -> None:
        stable = [self.training(float(i), "hmac:s1", "r1") for i in range(5)]
        others = [self.training(0, "hmac:s1", "r1"), self.training(1, "hmac:s2", "r9")]
        inference = [
            call(0, subject="hmac:s1", consent={"record_id": "r1"}),
            call(1, subject="hmac:s1", consent={"record_id": "r2"}),
        ]
        assert rules(stable) == rules(others) == rules(inference) == []


class TestDenialSpike:
    def test_fires_on_a_spike(self) -> None:
        stream = [(i * 0.1, {"type": "refusal", "decision": "deny"}) for i in range(10)]
        fired = run(stream)
        assert [a.rule for a in fired] == ["denial_spike"]
        assert fired[0].details["count"] == 4

    def test_fires_again_in_a_later_window(self) -> None:
        burst = [(i * 0.1, {"type": "refusal", "decision": "deny"}) for i in range(5)]
        later = [(100 + t, e) for t, e in burst]
        assert rules(burst + later) == ["denial_spike", "denial_spike"]

    def test_quiet_for_a_steady_trickle(self) -> None:
        stream = [(i * 4.0, {"type": "refusal", "decision": "deny"}) for i in range(50)]
        assert rules(stream) == []


class TestAfterKillSwitch:
    def kill(self, t: float, what: str) -> tuple[float, dict[str, Any]]:
        return t, {"type": "kill_switch", "destination": "openai", "reasons": [f"{what}: drill"]}

    def test_fires_for_a_call_after_revocation(self) -> None:
        assert rules([self.kill(0, "revoked"), call(1)]) == ["after_kill_switch"]

    def test_quiet_for_refusals_other_destinations_and_after_reinstatement(self) -> None:
        stream = [
            call(0),
            self.kill(1, "revoked"),
            (2.0, {"type": "refusal", "decision": "deny", "destination": "openai"}),
            call(3, destination="shadow"),
            self.kill(4, "reinstated"),
            call(5),
        ]
        assert rules(stream) == []


def test_no_rules_no_engine() -> None:
    base = RULES.split("[alerts", maxsplit=1)[0]
    off = parse_policy(
        base + "\n[alerts.unknown_tokens]\nenabled = false\n[alerts.links_kept]\nenabled = false\n"
    )
    assert AlertEngine.for_policy(off) is None
    # The unknown-tokens and links-kept rules are the ones on by default.
    assert AlertEngine.for_policy(parse_policy(base)) is not None
    for rule in ("unknown_tokens", "links_kept"):
        one_on = parse_policy(base + f"\n[alerts.{rule}]\nenabled = false\n")
        assert AlertEngine.for_policy(one_on) is not None


class TestLive:
    def test_denial_spike_alert_goes_into_the_chain_and_sinks(self) -> None:
        sink = InMemorySink()
        guard = aiguard.Guard(parse_policy(RULES), sinks=[sink])
        with guard.context(purpose="inference"):
            for _ in range(5):
                with pytest.raises(PolicyDenied):
                    guard.protect("hi", destination="shadow")
        alerts = [e for e in sink.events if e["type"] == "alert"]
        assert len(alerts) == 1
        assert alerts[0]["alert"]["rule"] == "denial_spike"
        assert alerts[0]["reasons"] == ["4 calls refused in 10 s (threshold 3)"]
        assert verify_records(sink.records).ok

    def test_call_after_kill_switch_seen_through_the_live_kill_switch(self) -> None:
        sink = InMemorySink()
        policy = parse_policy(
            RULES.replace("[destinations.openai]", 'mode = "monitor"\n[destinations.openai]')
        )
        guard = aiguard.Guard(policy, sinks=[sink])
        guard.revoke("openai", "incident 12")
        with guard.context(purpose="inference"):
            guard.protect("hi", destination="openai")  # monitor mode lets it through
        assert [e["alert"]["rule"] for e in sink.events if e["type"] == "alert"] == [
            "after_kill_switch"
        ]


def test_reidentification_alert_fires_on_live_detokenize_calls() -> None:
    """Audited detokenization feeds the alert rules like calls do."""
    import aiguard
    from aiguard.policy import parse_policy
    from aiguard.testing import InMemorySink, assert_chain_valid

    policy = parse_policy(
        '[destinations.openai]\nbase_url = "https://api.openai.com/v1"\napproved = true\n'
        'purposes = ["inference"]\n[alerts.reidentification]\nmax_values = 3\n'
        "window_seconds = 3600\n"
    )
    sink = InMemorySink()
    guard = aiguard.Guard(policy, sinks=[sink])
    ctx = aiguard.CallContext(subject="s", tenant="acme", purpose="inference", destination="openai")
    protected = guard.protect("a@example.com b@example.com c@example.com d@example.com", ctx)
    analyst = aiguard.Principal("analyst-1", frozenset({"aiguard:detokenize"}))
    restored = guard.detokenize(
        protected.payload, principal=analyst, reason="ticket 9", tenant="acme"
    )
    assert "d@example.com" in restored
    alerts = [e for e in sink.events if e["type"] == "alert"]
    assert len(alerts) == 1 and "analyst-1" in str(alerts[0])
    assert_chain_valid(sink)

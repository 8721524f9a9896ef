"""Rollout stages and per-destination monitor mode, enforced by the guard's decision."""

from __future__ import annotations

import pytest

import aiguard
from aiguard.errors import ConsentRequired, PolicyDenied
from aiguard.policy import parse_policy
from aiguard.testing import InMemorySink

POLICY = """
[rollout]
internal_principals = ["staff:*"]

[destinations.beta]
base_url = "https://beta.example/v1"
approved = true
purposes = ["inference"]
stage = "internal"

[destinations.pilot]
base_url = "https://pilot.example/v1"
approved = true
purposes = ["inference"]
stage = "opt_in"

[destinations.ga]
base_url = "https://ga.example/v1"
approved = true
purposes = ["inference"]

[destinations.watched]
base_url = "https://watched.example/v1"
approved = false
purposes = ["inference"]
mode = "monitor"
"""


@pytest.fixture
def sink() -> InMemorySink:
    return InMemorySink()


@pytest.fixture
def guard(sink: InMemorySink) -> aiguard.Guard:
    return aiguard.Guard(parse_policy(POLICY), sinks=[sink])


def protect(guard: aiguard.Guard, destination: str, **context: object) -> aiguard.Protected:
    with guard.context(purpose="inference", **context):  # type: ignore[arg-type]
        return guard.protect("hello", destination=destination)


class TestInternal:
    def test_internal_principal_passes(self, guard: aiguard.Guard) -> None:
        assert protect(guard, "beta", principal="staff:ana").decision.allowed

    @pytest.mark.parametrize("principal", ["customer:1", None])
    def test_others_are_refused(self, guard: aiguard.Guard, principal: str | None) -> None:
        with pytest.raises(PolicyDenied, match="stage 'internal'"):
            protect(guard, "beta", principal=principal, subject="s1")


class TestOptIn:
    def test_consenting_subject_passes_and_the_record_is_kept(self, guard: aiguard.Guard) -> None:
        guard.consent.grant("s1", "inference", terms_version="v1")
        decision = protect(guard, "pilot", subject="s1").decision
        assert decision.allowed and decision.consent is not None

    def test_subject_without_consent_is_refused(
        self, guard: aiguard.Guard, sink: InMemorySink
    ) -> None:
        with pytest.raises(ConsentRequired, match="stage 'opt_in'"):
            protect(guard, "pilot", subject="s2")
        assert sink.events[-1]["error"] == "consent_required"

    def test_call_without_subject_is_refused(self, guard: aiguard.Guard) -> None:
        with pytest.raises(ConsentRequired, match="names no subject"):
            protect(guard, "pilot")


def test_general_is_open_to_everyone(guard: aiguard.Guard) -> None:
    assert protect(guard, "ga").decision.allowed


def test_per_destination_monitor_records_what_would_be_refused(
    guard: aiguard.Guard, sink: InMemorySink
) -> None:
    """Only the monitored destination lets a refusal through; the event says why."""
    decision = protect(guard, "watched").decision
    assert decision.allowed
    assert decision.reasons[0].startswith("monitor: destination 'watched' is not approved")
    assert sink.events[-1]["reasons"][0].startswith("monitor: ")
    with pytest.raises(PolicyDenied, match="stage 'internal'"):
        protect(guard, "beta")


def test_global_monitor_with_an_enforced_destination() -> None:
    policy = parse_policy(
        POLICY.replace("[rollout]", 'mode = "monitor"\n[rollout]').replace(
            'stage = "internal"', 'stage = "internal"\nmode = "enforce"'
        )
    )
    guard = aiguard.Guard(policy)
    with pytest.raises(PolicyDenied):
        protect(guard, "beta")
    assert protect(guard, "pilot", subject="nobody").decision.reasons[0].startswith("monitor:")

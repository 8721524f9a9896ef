"""Fault matrix, in-process dependencies: vault, consent store and provenance sink x
unreachable / slow past its timeout / failing midway / garbage / restarting x the
sync client, the async client and the ``@guard.endpoint`` decorator.

Every row asserts the documented outcome (docs/storage.md "Failure", docs/architecture.md
"Provenance"): a typed error and nothing sent, or exactly what the policy allows
(``fail_open``, best-effort sinks); no raw value upstream (`assert_no_raw_values`) or in
a log (the session's leak scan, tests/_leakscan.py); every event of every attempt in the
chain, which verifies; and a working call once the dependency is back.
"""

from __future__ import annotations

from typing import Any

import pytest
from faultkit import (
    MESSAGE,
    RAW,
    DoorCall,
    Fault,
    FaultyConsent,
    FaultySink,
    FaultyVault,
    call_events,
    fault_policy,
)

import aiguard
from aiguard.testing import FakeModel, InMemorySink, assert_chain_valid, assert_no_raw_values

VAULT_FAULTS = ("down", "slow", "midway", "garbage")


def _guard(
    *,
    vault: Any = None,
    consent: Any = None,
    sink: InMemorySink | None = None,
    **destination: Any,
) -> tuple[aiguard.Guard, InMemorySink]:
    sink = sink if sink is not None else InMemorySink()
    guard = aiguard.Guard(fault_policy(**destination), vault=vault, consent=consent, sinks=[sink])
    return guard, sink


def _recovers(call: DoorCall, fake: FakeModel, sent_before: int) -> None:
    """Once the dependency is back, the call goes out tokenized and comes back whole."""
    assert call() == "Echo: " + MESSAGE
    assert len(fake.requests) == sent_before + 1
    assert_no_raw_values(fake, RAW.values())


@pytest.mark.parametrize("fault", VAULT_FAULTS)
def test_vault_fault_fails_closed(door: str, fault: str, leak_values: Any) -> None:
    leak_values(RAW.values())
    state = Fault()
    vault = FaultyVault(state)
    guard, sink = _guard(vault=vault)
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport)
    # midway: the first value gets its token, the second one finds the vault gone.
    state.set(fault, budget=1, delay=0.05)
    if fault == "garbage":
        # A vault answering garbage is indistinguishable from a token to the pipeline;
        # what must hold is that the raw values never go out.
        call()
        assert_no_raw_values(fake, RAW.values())
        assert call_events(sink)[-1]["type"] == "call"
    else:
        with pytest.raises(aiguard.VaultError, match="not sent") as caught:
            call()
        for value in RAW.values():
            assert value not in str(caught.value)
        assert fake.requests == [], "nothing may leave the process when the vault fails"
        event = call_events(sink)[-1]
        assert (event["type"], event["error"]) == ("refusal", "vault_error")
    state.set("ok")
    _recovers(call, fake, len(fake.requests))
    assert_chain_valid(sink)


def test_vault_down_fail_open_sends_redacted_and_says_so(door: str, leak_values: Any) -> None:
    leak_values(RAW.values())
    state = Fault()
    guard, sink = _guard(vault=FaultyVault(state), fail_open=True)
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport)
    state.set("down")
    answer = call()
    assert_no_raw_values(fake, RAW.values())
    assert "[REDACTED:email]" in fake.requests[-1].text
    assert "[REDACTED:email]" in answer  # nothing to restore: the caller sees the redaction
    event = call_events(sink)[-1]
    assert event["type"] == "call"
    assert any("fail_open" in reason for reason in event["reasons"])
    state.set("ok")
    _recovers(call, fake, len(fake.requests))
    assert_chain_valid(sink)


def test_vault_down_while_restoring_an_earlier_token(door: str, leak_values: Any) -> None:
    """The answer holds a token of the scope issued by an earlier call; the vault that
    would restore it is down. The caller gets a typed error, and the attempt is still
    recorded (one event per attempt)."""
    leak_values(RAW.values())
    state = Fault()
    vault = FaultyVault(state)
    guard, sink = _guard(vault=vault)
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport)
    call()
    token = fake.requests[-1].json["messages"][0]["content"].split()[1].rstrip(",")
    assert token.startswith("[EMAIL_")
    fake2 = FakeModel(reply=f"You wrote from {token}.")
    call2 = DoorCall(door, guard, transport=fake2.transport)
    state.set("down")
    with pytest.raises(aiguard.VaultError, match="could not restore"):
        call2("hello")
    assert len(fake2.requests) == 1
    state.set("ok")
    assert call2("hello") == f"You wrote from {RAW['email']}."
    assert_chain_valid(sink)


def test_vault_down_while_restoring_still_records_the_attempt(door: str) -> None:
    state = Fault()
    guard, sink = _guard(vault=FaultyVault(state))
    fake = FakeModel()
    DoorCall(door, guard, transport=fake.transport)()
    token = fake.requests[-1].json["messages"][0]["content"].split()[1].rstrip(",")
    fake2 = FakeModel(reply=f"You wrote from {token}.")
    before = len(call_events(sink))
    state.set("down")
    with pytest.raises(aiguard.VaultError):
        DoorCall(door, guard, transport=fake2.transport)("hello")
    # The attempt reached the model, so it must be accounted for.
    assert len(call_events(sink)) == before + 1


@pytest.mark.parametrize("fault", ("down", "slow", "midway"))
def test_consent_store_fault_refuses(door: str, fault: str, leak_values: Any) -> None:
    leak_values(RAW.values())
    state = Fault()
    consent = FaultyConsent(state)
    consent.inner.grant("cust-7", "third_party_sharing", terms_version="t1")
    guard, sink = _guard(consent=consent)
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport, purpose="third_party_sharing")
    state.set(fault, budget=0, delay=0.05)
    with pytest.raises(aiguard.ConsentRequired) as caught:
        call()
    assert "cust-7" not in str(caught.value)
    assert fake.requests == []
    event = call_events(sink)[-1]
    assert (event["type"], event["error"]) == ("refusal", "consent_required")
    state.set("ok")
    _recovers(call, fake, 0)
    assert call_events(sink)[-1]["consent"]["terms_version"] == "t1"
    assert_chain_valid(sink)


@pytest.mark.parametrize("fault", ("down", "slow", "midway"))
def test_required_sink_fault_stops_new_calls_and_loses_nothing(
    door: str, fault: str, leak_values: Any
) -> None:
    leak_values(RAW.values())
    state = Fault()
    sink = FaultySink(state)
    guard, _ = _guard(sink=sink)
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport)
    call()
    state.set(fault, budget=0, delay=0.05)
    # The call in flight went out tokenized but its event could not be written: the
    # caller is told (typed), and the event waits in the backlog.
    with pytest.raises(aiguard.ProvenanceError):
        call()
    assert len(fake.requests) == 2
    assert_no_raw_values(fake, RAW.values())
    # While the required sink is down, nothing more leaves the process.
    with pytest.raises(aiguard.ProvenanceError, match="refused until it recovers"):
        call()
    assert len(fake.requests) == 2
    state.set("ok")
    _recovers(call, fake, 2)
    events = call_events(sink)
    # Every attempt that reached the model is recorded, in order, and the chain verifies.
    assert [e["type"] for e in events if e["type"] == "call"] == ["call"] * 3
    assert_chain_valid(sink)


def test_best_effort_sink_down_lets_calls_through_and_catches_up(
    door: str, leak_values: Any
) -> None:
    leak_values(RAW.values())
    state = Fault()
    flaky = FaultySink(state, required=False)
    solid = InMemorySink()
    guard = aiguard.Guard(fault_policy(), sinks=[solid, flaky])
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport)
    state.set("down")
    for _ in range(2):
        assert call() == "Echo: " + MESSAGE
    assert len(solid.calls()) == 2 and flaky.calls() == []
    state.set("ok")
    call()
    # The best-effort sink's backlog was replayed in order before the newer event.
    assert [r.seq for r in flaky.records] == [r.seq for r in solid.records]
    assert_chain_valid(flaky)
    assert_no_raw_values(fake, RAW.values())


def test_garbage_consent_record_is_not_a_grant(door: str) -> None:
    """A store answering something that is not a `ConsentRecord` must not count as consent
    nor crash with an untyped error."""
    state = Fault()
    consent = FaultyConsent(state)
    guard, _sink = _guard(consent=consent)
    fake = FakeModel()
    call = DoorCall(door, guard, transport=fake.transport, purpose="third_party_sharing")
    state.set("garbage")
    with pytest.raises(aiguard.ConsentRequired):
        call()
    assert fake.requests == []

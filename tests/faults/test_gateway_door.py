"""Fault matrix, the gateway door: the same dependency faults, seen as HTTP answers.

The gateway maps aiguard's typed errors to statuses in OpenAI's error format: a vault
or provenance failure is 503 (``vault_error`` / ``provenance_error``), missing consent
403 (``consent_required``). In every row nothing raw reaches the upstream, every
attempt that reached it is recorded, and the gateway works again once the dependency
is back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from faultkit import MESSAGE, RAW, Fault, FaultyConsent, FaultySink, FaultyVault, call_events

import aiguard
from _servers import serve
from aiguard.testing import FakeModel, assert_chain_valid, assert_no_raw_values

uvicorn = pytest.importorskip("uvicorn")
gateway = pytest.importorskip("aiguard.doors.gateway")


@contextlib.contextmanager
def _gateway(**stores: Any) -> Iterator[tuple[httpx.Client, FakeModel, aiguard.Guard]]:
    model = FakeModel()
    with model.serve() as base:
        upstream = base + "/v1"
        policy = gateway.default_policy(upstream)
        guard = aiguard.Guard(policy, **stores)
        app = gateway.create_app(guard, gateway.GatewayConfig(upstream=upstream))
        with serve(app) as (url, _server), httpx.Client(base_url=url, timeout=10) as client:
            yield client, model, guard


def _chat(client: httpx.Client, purpose: str = "inference") -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": MESSAGE}]},
        headers={"X-AIGuard-Subject": "cust-7", "X-AIGuard-Purpose": purpose},
    )


@pytest.mark.parametrize("fault", ["down", "slow", "midway", "garbage"])
def test_vault_fault_is_503_and_nothing_goes_up(fault: str) -> None:
    state = Fault()
    sink = aiguard.InMemorySink()
    with _gateway(vault=FaultyVault(state), sinks=[sink]) as (client, model, _guard):
        state.set(fault, budget=1, delay=0.05)
        answer = _chat(client)
        if fault == "garbage":
            # A vault answering garbage still never lets a raw value out.
            assert_no_raw_values(model, RAW.values())
        else:
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "vault_error"
            assert model.requests == []
            assert not any(v in answer.text for v in RAW.values())
        state.set("ok")
        again = _chat(client)
        assert again.status_code == 200
        assert again.json()["choices"][0]["message"]["content"] == "Echo: " + MESSAGE
    assert_no_raw_values(model, RAW.values())
    assert_chain_valid(sink)


@pytest.mark.parametrize("fault", ["down", "slow", "midway"])
def test_consent_store_fault_is_403(fault: str) -> None:
    state = Fault()
    consent = FaultyConsent(state)
    consent.inner.grant("cust-7", "third_party_sharing", terms_version="t1")
    sink = aiguard.InMemorySink()
    with _gateway(consent=consent, sinks=[sink]) as (client, model, guard):
        # The default policy serves inference only; allow the consent purpose here.
        target = guard.policy.destinations["upstream"]
        guard.policy.destinations["upstream"] = target.model_copy(
            update={"purposes": ["inference", "third_party_sharing"]}
        )
        state.set(fault, delay=0.05)
        answer = _chat(client, "third_party_sharing")
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "consent_required"
        assert model.requests == []
        state.set("ok")
        assert _chat(client, "third_party_sharing").status_code == 200
    assert_chain_valid(sink)


def test_required_sink_down_refuses_before_sending_and_catches_up() -> None:
    state = Fault()
    sink = FaultySink(state)
    with _gateway(sinks=[sink]) as (client, model, _guard):
        assert _chat(client).status_code == 200
        state.set("down")
        first = _chat(client)  # went out; its event could not be written
        assert first.status_code == 503
        assert _chat(client).status_code == 503  # refused before sending
        assert len(model.requests) == 2
        state.set("ok")
        assert _chat(client).status_code == 200
    assert len([e for e in call_events(sink) if e["type"] == "call"]) == 3
    assert_no_raw_values(model, RAW.values())
    assert_chain_valid(sink)
